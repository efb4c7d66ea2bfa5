"""Virtual MEC animals: the real loader reads them, planted cell types score as their type, and
the inter-animal ceiling estimated from the noisy sessions equals the noise-free one."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline.cli import main as cli
from pipeline.compare.consistency import interanimal
from pipeline.config import validate_config
from pipeline.data.assembly import read_assembly
from pipeline.data.mec_openfield import read_session, session_grid
from pipeline.data.synthetic_mec import (cell_rates, read_head_direction, read_truth,
                                         synthesize_mec)
from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.scores import (SpatialSampler, border_score, grid_score,
                                 head_direction_score, spike_counts)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SARGOLINI = REPO.parent / "shared/data/real/ratinabox_sargolini2006/sargolini.npz"


def _block(**simulate) -> dict:
    return validate_config({"datasets": {"synthetic_mec": {"simulate": simulate}}},
                           SCHEMA)["datasets"]["synthetic_mec"]


@pytest.fixture(scope="module")
def virtual(tmp_path_factory):
    """4 animals x 10 cells, 20 simulated minutes each, through the CLI verbs of both rules."""
    root = tmp_path_factory.mktemp("synthetic_mec")
    block = _block(cells_per_animal=10)
    raw, out = root / "raw", root / "synthetic_mec.zarr"
    assert cli(["synthesize_mec", str(raw), "--settings", json.dumps(block["simulate"])]) == 0
    assert cli(["assemble_synthetic_mec", str(raw), str(out), "--settings",
                json.dumps(block["assemble"])]) == 0
    return raw, read_assembly(out).load(), read_truth(raw)


def _sessions(raw):
    return sorted(Path(raw).glob("sub-*/sub-*_ses-*.nwb"))


def test_the_real_loader_reads_positions_head_direction_and_units(virtual):
    raw, assembly, truth = virtual
    sessions = _sessions(raw)
    assert len(sessions) == 4 and (raw / "truth.zarr").exists()
    for k, path in enumerate(sessions):
        s = read_session(path)
        assert s["arena"] == (100.0, 100.0) and s["subject"] == truth.animal_id.values[k]
        # LEDs averaged by the loader give back the simulated path (centred, in cm) ...
        np.testing.assert_allclose(s["xy"] + 50.0, truth.position.values[k], atol=1e-9)
        # ... and their difference the head direction.
        t, hd = read_head_direction(path)
        np.testing.assert_allclose(np.angle(np.exp(1j * (hd - truth.head_direction.values[k]))),
                                   0.0, atol=1e-9)
        assert len(s["spikes"]) == 10
    assert set(assembly.neuroid_id.values) <= set(truth.neuroid_id.values)
    assert assembly.sizes["neuroid"] == 40 and assembly.sizes["trial"] == 2
    assert set(assembly.animal.values) == set(truth.animal_id.values)


def test_spike_counts_follow_the_generator(virtual):
    """Each cell's spike count is Poisson with mean Σ rate·dt along its animal's path."""
    raw, _, truth = virtual
    for k, path in enumerate(_sessions(raw)):
        s = read_session(path)
        cells = truth.isel(neuroid=truth.animal.values == s["subject"])
        t, xy, hd = truth.time.values[k], truth.position.values[k], truth.head_direction.values[k]
        speed = np.hypot(*np.gradient(xy, t, axis=0).T)
        expected = (cell_rates(cells, xy, hd, speed) * 0.02).sum(axis=0)
        observed = np.array([len(x) for x in s["spikes"]])
        assert (np.abs(observed - expected) < 5 * np.sqrt(expected)).all()


def test_module_spacings_grow_by_the_ratio(virtual):
    _, _, truth = virtual
    spacing = truth.module_spacing_cm.values
    np.testing.assert_allclose(spacing[1:] / spacing[:-1], 1.42)
    grid = truth.isel(neuroid=truth.cell_type.values == "grid")
    ratio = grid.spacing_cm.values / spacing[grid.module.values]
    assert np.abs(ratio - 1).max() < 0.1


def test_planted_cell_types_score_as_their_type(virtual):
    raw, _, truth = virtual
    rows = []
    for k, path in enumerate(_sessions(raw)):
        s = read_session(path)
        grid = session_grid(s, (100.0, 100.0), 5.0)
        sampler = SpatialSampler(s["t"], s["xy"], grid)
        counts = spike_counts(s["t"], s["spikes"])
        maps = sampler.maps(counts)
        _, hd = read_head_direction(path)
        hd_score = head_direction_score(hd, counts, np.where(sampler.used, sampler.dt, 0.0))
        cells = truth.isel(neuroid=truth.animal.values == s["subject"])
        rows += list(zip(cells.cell_type.values, grid_score(maps).score, border_score(maps),
                         hd_score.preferred, cells.hd_preferred.values))
    kind = np.array([r[0] for r in rows])
    gs, bs = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    assert (gs[kind == "grid"] > 0.3).mean() >= 0.8
    assert (bs[kind == "border"] > 0.5).mean() >= 0.75
    assert (bs[kind == "grid"] < 0.5).mean() >= 0.8
    error = [np.degrees(np.angle(np.exp(1j * (r[3] - r[4])))) for r in rows
             if r[0] == "head_direction"]
    assert error and np.abs(error).max() < 5.0


def test_interanimal_ceiling_equals_the_noise_free_one(virtual):
    """The noise-corrected ridge ceiling of the noisy sessions is within 0.05 of the ceiling of
    the same analysis on noise-free maps (expected spikes through the same binning)."""
    raw, assembly, truth = virtual
    clean = []
    for k, path in enumerate(_sessions(raw)):
        s = read_session(path)
        cells = truth.isel(neuroid=truth.animal.values == s["subject"])
        t, xy, hd = truth.time.values[k], truth.position.values[k], truth.head_direction.values[k]
        rates = cell_rates(cells, xy, hd, np.hypot(*np.gradient(xy, t, axis=0).T))
        sampler = SpatialSampler(s["t"], s["xy"], session_grid(s, (100.0, 100.0), 5.0))
        maps = sampler.maps(rates * sampler.dt[:, None]).reshape(rates.shape[1], -1)
        clean.append(xr.DataArray(maps.T, dims=("stimulus", "neuroid"), coords={
            "stimulus": sampler.grid.coords()["stimulus_id"][1],
            "neuroid": cells.neuroid_id.values}))
    clean = xr.concat(clean, "neuroid").sel(stimulus=assembly.stimulus_id.values,
                                            neuroid=assembly.neuroid_id.values)
    noise_free = assembly.copy(data=np.repeat(clean.values[:, None, :], 2, axis=1))
    settings = {"mappings": ("ridge",), "n_halves": 1, "n_splits": 10, "train_frac": 0.2}
    noisy = interanimal(assembly, **settings).groupby("neuroid_id")[["score", "r"]].mean()
    truth_ceiling = interanimal(noise_free, **settings).groupby("neuroid_id").score.mean()
    assert abs(noisy.score.median() - truth_ceiling.median()) < 0.05
    # Without the noise correction the half-session estimate reads low.
    assert noisy.r.median() < truth_ceiling.median() - 0.03


def test_truth_rate_maps_are_the_noise_free_maps(virtual):
    """truth.rate_map: expected rates per bin along the animal's own path, on the full grid."""
    raw, _, truth = virtual
    assert truth.rate_map.shape == (40, 400)
    grid = BinGrid(100, 100, 5.0)
    k = 2
    cells = truth.isel(neuroid=truth.animal.values == truth.animal_id.values[k])
    t, xy = truth.time.values[k], truth.position.values[k]
    rates = cell_rates(cells, xy, truth.head_direction.values[k],
                       np.hypot(*np.gradient(xy, t, axis=0).T))
    bins = grid.locate(xy)
    for c in (0, 5):
        direct = np.bincount(bins, rates[:, c], 400) / np.bincount(bins, minlength=400)
        measured = cells.rate_map.values[c]
        ok = np.isfinite(measured)
        assert ok.mean() > 0.95
        assert np.corrcoef(direct[ok], measured[ok])[0, 1] > 0.99


def test_bad_settings_name_the_field(tmp_path):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="datasets.synthetic_mec.assemble.sigmaa"):
        validate_config({"datasets": {"synthetic_mec": {"assemble": {"sigmaa": 1}}}}, SCHEMA)
    with pytest.raises(ConfigError, match="datasets.synthetic_mec.simulate.spacing_ratio"):
        validate_config({"datasets": {"synthetic_mec": {"simulate": {"spacing_ratio": 0.5}}}},
                        SCHEMA)
    simulate = _block()["simulate"]
    with pytest.raises(ValueError, match="cell_types"):
        synthesize_mec(tmp_path, **{**simulate, "cell_types": {"place": 1.0}})
    with pytest.raises(ValueError, match="peak_rate_hz"):
        synthesize_mec(tmp_path, **{**simulate, "peak_rate_hz": [5.0, 1.0]})
    with pytest.raises(ValueError, match="trajectory_file"):
        synthesize_mec(tmp_path, **{**simulate, "trajectory_file": str(tmp_path / "none.npz"),
                                    "animals": 2, "duration_s": 10.0})


def test_real_trajectory_is_replayed_under_symmetries(tmp_path):
    if not SARGOLINI.exists():
        pytest.skip("../shared/data/real/ratinabox_sargolini2006 not present")
    simulate = {**_block()["simulate"], "animals": 2, "cells_per_animal": 3,
                "duration_s": 60.0, "trajectory_file": str(SARGOLINI)}
    synthesize_mec(tmp_path, **simulate)
    truth = read_truth(tmp_path)
    real = np.load(SARGOLINI)
    n = truth.sizes["sample"]
    np.testing.assert_allclose(truth.time.values[0], real["t"][:n] - real["t"][0])
    np.testing.assert_allclose(truth.position.values[0], np.clip(real["pos"][:n] * 100, 0, 100))
    # Animal 1 runs the mirror image (x -> 100 - x).
    np.testing.assert_allclose(truth.position.values[1][:, 0],
                               100 - truth.position.values[0][:, 0])


def test_assembly_scores_of_the_virtual_animals(virtual):
    """Scores from the assembled rate maps (trial mean, dropped bins NaN) find the planted
    grid and border cells."""
    from pipeline.mec.scores import assembly_scores

    _, assembly, truth = virtual
    table = assembly_scores(assembly)
    assert table.neuroid_id.tolist() == assembly.neuroid_id.values.tolist()
    kind = truth.cell_type.to_series().set_axis(truth.neuroid_id.values)[table.neuroid_id].values
    assert (table.grid_score[kind == "grid"] > 0.3).mean() >= 0.8
    assert (table.border_score[kind == "border"] > 0.5).mean() >= 0.75
    assert set(table.animal) == set(truth.animal_id.values)


def test_session_scores_classify_the_planted_cells(virtual):
    """Raw sessions -> scores with shuffle thresholds; ids match the assembly's."""
    from pipeline.mec.scores import session_scores

    raw, assembly, truth = virtual
    table = session_scores(_sessions(raw), n_shuffles=20, random_state=0)
    assert set(assembly.neuroid_id.values) <= set(table.neuroid_id)
    kind = truth.cell_type.to_series().set_axis(truth.neuroid_id.values)[table.neuroid_id].values
    grid_called = (table.grid_score > 0.3) & table.grid_significant
    assert grid_called[kind == "grid"].mean() >= 0.8
    assert ((table.border_score > 0.5) & table.border_significant)[kind == "border"].mean() >= 0.75
    assert table.hd_significant[kind == "head_direction"].all()
    assert (table.hd_score[kind == "head_direction"] > table.hd_score[kind == "grid"].max()).all()


def test_assembly_errors_name_the_folder_and_the_arena(tmp_path):
    from pipeline.data.synthetic_mec import assemble_synthetic_mec

    with pytest.raises(FileNotFoundError, match="synthesize_mec"):
        assemble_synthetic_mec(tmp_path)
    simulate = {**_block()["simulate"], "animals": 2, "cells_per_animal": 2, "duration_s": 30.0,
                "arena_cm": 50.0}
    synthesize_mec(tmp_path, **simulate)
    # The assemble block's arena_cm (100 by default) must match the simulated arena.
    with pytest.raises(ValueError, match=r"no session of a 100 cm arena; found arenas \[\(50"):
        assemble_synthetic_mec(tmp_path, arena_cm=100)
