"""Tests for pipeline.data.allen_neuropixels: download, spike counting, selection filters,
ground truth, stimulus set."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pynwb import NWBHDF5IO
from scipy import stats

from pipeline.cli import main as cli
from pipeline.config import validate_config
from pipeline.data.allen_neuropixels import (ALLEN_UNIT_QC, assemble_allen_neuropixels,
                                             neuropixels_assembly, download_allen_neuropixels,
                                             largest_run, select_window, session_spike_counts)
from pipeline.data.assembly import ALLEN_AREAS, read_assembly, time_average, write_assembly
from pipeline.data.natural_scenes import natural_scene_ids
from pipeline.data.running import running_pvalue
from pipeline.io import read_zarr
from tests.data.allen_fixtures import (N_IMAGES, N_TRIALS, SESSIONS, Unit, expected_neuropixels,
                                       image_ranking, serve_neuropixels)
from tests.data.http_server import FixtureServer


def _independent_counts(path):
    """(frame, trial, bin, unit) counts from pynwb + np.histogram, one presentation at a time."""
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        electrodes = nwb.electrodes.to_dataframe()
        table = nwb.intervals["natural_scenes_presentations"].to_dataframe()
        session = nwb.session_id
    units["area"] = electrodes.location.loc[units.peak_channel_id].values
    good = units[(units.quality == "good") & units.area.isin(ALLEN_AREAS)]
    table = table[table.frame >= 0].sort_values("start_time")
    trial = table.groupby("frame").cumcount().values
    frame, start = table.frame.values.astype(int), table.start_time.values
    out = np.zeros((frame.max() + 1, trial.max() + 1, 25, len(good)))
    for j, spikes in enumerate(good.spike_times):
        for f, t, s in zip(frame, trial, start):
            out[f, t, :, j] = np.histogram(spikes, s + 0.01 * np.arange(26))[0]
    return out, [f"{session}_{u}" for u in good.index]


def test_counts_round_trip(sessions):
    _, paths = sessions
    counts = session_spike_counts(paths[0])
    expected, neuroid_id = _independent_counts(paths[0])
    assert counts.dims == ("stimulus", "trial", "time_bin", "neuroid")
    assert sorted(counts.neuroid_id.values) == sorted(neuroid_id)
    assert len(neuroid_id) == 6 * 10
    np.testing.assert_allclose(counts.time_bin.values, 0.01 * np.arange(25))
    np.testing.assert_array_equal(counts.frame.values, np.arange(40))   # blank dropped
    order = [list(counts.neuroid_id.values).index(n) for n in neuroid_id]
    np.testing.assert_array_equal(counts.values[..., order], expected)
    assert expected.sum() > 1000


def test_noise_and_other_area_units_dropped(sessions):
    _, paths = sessions
    counts = session_spike_counts(paths[0], areas=("VISp", "VISam"))
    assert set(counts.area.values) == {"VISp", "VISam"}
    assert counts.sizes["neuroid"] == 20
    with h5py.File(paths[0]) as f:
        subject = f["general/subject/subject_id"][()].decode()
        quality = f["units/quality"][:].astype(str)
        unit_ids = f["units/id"][:]
    assert (counts.animal.values == subject).all()
    noise = {f"{paths[0].stem.split('ses-')[1]}_{u}" for u in unit_ids[quality != "good"]}
    assert noise and not noise & set(counts.neuroid_id.values)


def test_missing_trials_are_nan_padded(sessions, tmp_path):
    _, paths = sessions
    path = tmp_path / "copy.nwb"
    path.write_bytes(paths[0].read_bytes())
    with h5py.File(path, "r+") as f:
        frame = f["intervals/natural_scenes_presentations/frame"]
        values = frame[:]
        values[np.flatnonzero(values == 3)[-2:]] = -1      # image 3 loses its last two trials
        frame[:] = values
    counts = session_spike_counts(path)
    assert counts.sizes["trial"] == 20
    assert np.isnan(counts.isel(stimulus=3, trial=[18, 19])).all()
    assert not np.isnan(counts.isel(stimulus=3, trial=slice(0, 18))).any()


def test_missing_field_names_file_and_field(sessions, tmp_path):
    _, paths = sessions
    path = tmp_path / "broken.nwb"
    path.write_bytes(paths[0].read_bytes())
    with h5py.File(path, "r+") as f:
        del f["intervals/natural_scenes_presentations/frame"]
    with pytest.raises(ValueError, match="broken.nwb.*natural_scenes_presentations/frame"):
        session_spike_counts(path)


@pytest.mark.parametrize("mask, run", [
    ([0, 1, 1, 0, 1, 1, 1, 0], (4, 7)),
    ([1, 1, 0, 1, 1], (0, 2)),          # ties: the earliest
    ([0, 0, 0], None),
    ([1, 1, 1], (0, 3)),
    ([0, 0, 1], (2, 3)),
])
def test_largest_run(mask, run):
    assert largest_run(np.array(mask, dtype=bool)) == run


def _tiny_rates(seed=0, n_reliable=4, n_noise=4, reliable_bins=slice(5, 10)):
    """Units with a strong stimulus signal in `reliable_bins` only, and pure-noise units."""
    rng = np.random.default_rng(seed)
    n_stim, n_trial, n_bin = 30, 20, 12
    values = rng.normal(size=(n_stim, n_trial, n_bin, n_reliable + n_noise))
    values[:, :, reliable_bins, :n_reliable] += 3 * rng.normal(size=(n_stim, 1, 1, n_reliable))
    return xr.DataArray(values, dims=("stimulus", "trial", "time_bin", "neuroid"),
                        coords={"time_bin": 0.01 * np.arange(n_bin),
                                "neuroid_id": ("neuroid",
                                               [f"u{i}" for i in range(values.shape[-1])])})


def test_reliability_filter_keeps_reliable_units_and_window():
    response, window = select_window(_tiny_rates(), n_boot=20)
    assert list(response.neuroid_id.values) == ["u0", "u1", "u2", "u3"]
    assert window == pytest.approx((0.05, 0.10))
    assert response.dims == ("stimulus", "trial", "neuroid")


def test_median_filter_drops_specimen():
    # One reliable unit out of nine: it passes the unit filter, and it alone is the median.
    assert select_window(_tiny_rates(n_reliable=1, n_noise=8), n_boot=20) is not None
    # No reliable unit at all: nothing is kept.
    assert select_window(_tiny_rates(n_reliable=0, n_noise=8), n_boot=20) is None
    # A threshold no median reaches drops the specimen.
    assert select_window(_tiny_rates(), median_threshold=0.999, n_boot=20) is None


@pytest.fixture(scope="module")
def assembled(sessions, probe_small):
    _, paths = sessions
    return neuropixels_assembly(paths, probe_small.stimulus_id.values, n_boot=20)


def test_assembly_schema_and_truth_ids(assembled, sessions, probe_small):
    out, _ = sessions
    assert assembled.dims == ("stimulus", "trial", "neuroid")
    assert assembled.name == "response"
    np.testing.assert_array_equal(assembled.stimulus_id.values, probe_small.stimulus_id.values)
    truth = read_zarr(out / "truth.zarr")
    assert set(assembled.neuroid_id.values) <= set(truth.neuroid_id.values)
    kept = truth.set_index(neuroid="neuroid_id").sel(neuroid=assembled.neuroid_id.values)
    np.testing.assert_array_equal(kept.area.values, assembled.area.values)
    np.testing.assert_array_equal(kept.animal.values, assembled.animal.values)
    assert (assembled.window_stop > assembled.window_start).all()
    assert set(assembled.area.values) == set(ALLEN_AREAS)
    assert 0 < assembled.sizes["neuroid"] < truth.sizes["neuroid"]   # the filter drops some


def test_assembly_recovers_truth(assembled, sessions):
    out, _ = sessions
    truth = read_zarr(out / "truth.zarr").load().set_index(neuroid="neuroid_id")
    truth = truth.sel(neuroid=assembled.neuroid_id.values)
    mean = assembled.mean("trial").values
    r = np.array([np.corrcoef(m, t)[0, 1] for m, t in zip(mean.T, truth.rate_mean.values.T)])
    reliable = assembled.reliability.values > 0.8
    assert reliable.sum() >= 20
    assert np.median(r[reliable]) > 0.9
    # Unbiased: correlation with the truth tracks the square root of the reliability.
    assert np.corrcoef(r, np.sqrt(np.clip(assembled.reliability.values, 0, 1)))[0, 1] > 0.5


def test_specimen_quantile_rule(assembled, sessions, probe_small):
    _, paths = sessions
    strict = neuropixels_assembly(paths, probe_small.stimulus_id.values, n_boot=20,
                                  specimen_quantile=0.75)
    for area in ALLEN_AREAS:
        animals = assembled.animal.values[assembled.area.values == area]
        names, counts = np.unique(animals, return_counts=True)
        threshold = math.ceil(np.quantile(counts, 0.75))
        kept = set(strict.animal.values[strict.area.values == area])
        assert kept == set(names[counts >= threshold])
        assert len(kept) < len(names) or len(set(counts)) == 1


def test_unknown_frame_raises(sessions):
    _, paths = sessions
    with pytest.raises(ValueError, match="stimulus_ids"):
        neuropixels_assembly(paths[:1], ["a", "b"], n_boot=2)


def test_assembly_round_trips_through_zarr(assembled, tmp_path):
    write_assembly(assembled, tmp_path / "neural.zarr")
    back = read_assembly(tmp_path / "neural.zarr")
    xr.testing.assert_equal(back, assembled)
    assert back.attrs["units"] == "Hz"


# ---------------------------------------------------------------------------- real-data path
# Allen-format fixtures served as DANDI 000021 and the Allen warehouse on 127.0.0.1, run through
# the same CLI verbs the Snakemake rules call (tests/data/allen_fixtures.py fixes the expected
# selection by construction).

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _settings(download: dict, **assemble) -> dict:
    """The dataset block with its schema defaults: `download` and `assemble` (n_boot 20) given."""
    block = {"download": download, "assemble": {"n_boot": 20, **assemble}}
    return validate_config({"datasets": {"allen_neuropixels": block}}, SCHEMA)["datasets"][
        "allen_neuropixels"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The fixture server, the dataset settings and the CLI-downloaded cache."""
    root = tmp_path_factory.mktemp("allen_np")
    with FixtureServer() as server:
        settings = _settings(serve_neuropixels(server, root / "upstream"))
        assert cli(["download_allen_neuropixels", str(root / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
        yield server, settings, root


def test_download_lists_sessions_verifies_and_skips_probe_files(served):
    server, _, root = served
    manifest = json.loads((root / "raw/manifest.json").read_text())
    sessions = [f for f in manifest["files"] if f["role"] == "session"]
    assert sorted(f["session_id"] for f in sessions) == ["800001", "800002"]
    assert {tuple(f["verified_by"]) for f in sessions} == {("size", "dandi-etag", "sha256"),
                                                           ("size", "dandi-etag")}
    assert len([f for f in manifest["files"] if f["role"] == "template"]) == N_IMAGES
    assert not list((root / "raw").rglob("*_probe-*"))
    assert not [r for r in server.requests if "probe" in r.path]


def test_second_download_fetches_nothing(served):
    server, settings, root = served
    before = [r for r in server.requests if r.path.startswith(("/blobs/", "/api/v2/well_known"))]
    assert cli(["download_allen_neuropixels", str(root / "raw"), "--settings",
                json.dumps(settings["download"])]) == 0
    after = [r for r in server.requests if r.path.startswith(("/blobs/", "/api/v2/well_known"))]
    assert len(after) == len(before) == 2 + N_IMAGES


def test_assembled_units_trials_bins_and_coords(served, tmp_path):
    _, settings, root = served
    out = tmp_path / "neural.zarr"
    assert cli(["assemble_allen_neuropixels", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["assemble"])]) == 0
    assembly = read_assembly(out)
    assert set(assembly.neuroid_id.values) == expected_neuropixels()
    assert assembly.sizes == {"stimulus": N_IMAGES, "trial": N_TRIALS, "neuroid": 7}
    np.testing.assert_array_equal(assembly.stimulus_id, natural_scene_ids(N_IMAGES))
    by_id = assembly.set_index(neuroid="neuroid_id")
    assert list(by_id.sel(neuroid=["800001_900", "800002_901"]).area.values) == ["VISp", "VISl"]
    assert set(assembly.animal.values) == {"700001", "700002"}
    assert set(assembly.area.values[assembly.animal.values == "700002"]) == {"VISl"}
    # The response window is the run of reliable bins, 50-80 ms, and the rate is counts / 10 ms.
    assert (assembly.window_start == 0.05).all() and (assembly.window_stop == 0.08).all()
    assert not np.isnan(assembly.values).any()
    # Unit a1 fires base+1 spikes in each of bins 5-7 and one more in bin 6 on odd trials.
    a1 = by_id.sel(neuroid="800001_900").transpose("stimulus", "trial").values
    expected = 100 * ((image_ranking(Unit("a1", "VISp", "reliable")) + 1)[:, None]
                      + (np.arange(N_TRIALS) % 2)[None, :] / 3)
    np.testing.assert_allclose(a1, expected, rtol=1e-5)
    assert ((assembly.run_pval > 0.05) | assembly.run_pval.isnull()).all()
    assert (assembly.reliability > 0.9).all()


def test_stimulus_set_from_the_manifest(served, tmp_path):
    _, settings, root = served
    out = tmp_path / "allen_neuropixels_scenes.zarr"
    assert cli(["allen_neuropixels_stimuli", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["stimuli"])]) == 0
    stimuli = read_zarr(out).load()
    assert stimuli.image.shape == (N_IMAGES, 64, 64, 3) and stimuli.image.dtype == np.uint8
    np.testing.assert_array_equal(stimuli.stimulus_id, natural_scene_ids(N_IMAGES))
    assert stimuli.attrs["name"] == "allen_neuropixels_scenes"
    assert len(stimuli.attrs["sha256"]) == 64
    assert (stimuli.image[..., 0] == stimuli.image[..., 2]).all()


def test_running_filter_drops_exactly_the_running_unit(served):
    _, settings, root = served
    loose = assemble_allen_neuropixels(root / "raw/manifest.json",
                                       **{**settings["assemble"], "run_pval_threshold": None})
    assert set(loose.neuroid_id.values) - expected_neuropixels() == {"800001_903"}
    pval = loose.set_index(neuroid="neuroid_id").run_pval
    assert pval.sel(neuroid="800001_903") < 1e-6
    assert (pval.drop_sel(neuroid="800001_903") > 0.5).all()


def _reference_run_pvalues(path):
    """AllenSDK's get_running_modulation re-done with pandas + scipy on pynwb tables."""
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        table = nwb.intervals["natural_scenes_presentations"].to_dataframe()
        running = nwb.processing["running"]["running_speed"]
        speed = pd.DataFrame({"start_time": running.timestamps[:], "velocity": running.data[:]})
    table = table[table.frame >= 0]
    table["speed"] = [speed.velocity[(speed.start_time >= a) & (speed.start_time < b)].mean()
                      for a, b in zip(table.start_time, table.stop_time)]
    out = {}
    for unit_id, spikes in units.spike_times.items():
        table["count"] = [((spikes >= a) & (spikes < a + 0.25)).sum() for a in table.start_time]
        preferred = table.groupby("frame")["count"].mean().idxmax()
        sub = table[table.frame == preferred]
        run = sub["count"][sub.speed >= 1].values
        stat = sub["count"][~(sub.speed >= 1)].values
        if 1 < len(run) < len(sub) - 1:
            out[unit_id] = stats.ttest_ind(run, stat, equal_var=False).pvalue
        else:
            out[unit_id] = np.nan
    return out


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_running_pvalue_matches_an_allensdk_style_reference(served):
    _, _, root = served
    path = root / "upstream/sub-700001/sub-700001_ses-800001.nwb"
    counts = session_spike_counts(path)
    ours = running_pvalue(counts.sum("time_bin"), counts.running_speed)
    reference = _reference_run_pvalues(path)
    for unit_id, p in zip(counts.unit_id.values, ours.values):
        np.testing.assert_allclose(p, reference[unit_id], rtol=1e-9, equal_nan=True)
    assert np.nanmin(ours.values) < 1e-6                       # the running unit is in there


def test_unit_quality_filters(served):
    _, _, root = served
    path = root / "upstream/sub-700001/sub-700001_ses-800001.nwb"
    roles = {f"800001_{900 + i}": u.role for i, u in enumerate(SESSIONS[("700001", "800001")])}
    strict = set(session_spike_counts(path, unit_qc=ALLEN_UNIT_QC).neuroid_id.values)
    loose = set(session_spike_counts(path).neuroid_id.values)
    assert {roles[n] for n in loose - strict} == {"qc"}
    assert not {"noise", "invalid"} & {roles[n] for n in loose}


def test_fixture_counts_land_in_the_designed_bins(served):
    _, _, root = served
    counts = session_spike_counts(root / "upstream/sub-700002/sub-700002_ses-800002.nwb")
    assert counts.sizes == {"stimulus": N_IMAGES, "trial": N_TRIALS, "time_bin": 25,
                            "neuroid": 4}
    b1 = counts.set_index(neuroid="neuroid_id").sel(neuroid="800002_900")
    ranking = image_ranking(Unit("b1", "VISp", "reliable"))
    np.testing.assert_array_equal(b1.isel(time_bin=[5, 7]).values,
                                  np.broadcast_to((ranking + 1)[:, None, None], (N_IMAGES,
                                                                                 N_TRIALS, 2)))
    assert b1.isel(time_bin=[0, 1, 2, 3, 4, 8, 9, 24]).sum() == 0
    np.testing.assert_array_equal(counts.running_speed.values,
                                  np.where(np.arange(N_TRIALS) < 6, 20.0, 0.0)[None].repeat(
                                      N_IMAGES, 0))


def test_other_session_types_are_skipped(served):
    _, settings, root = served
    with pytest.raises(ValueError, match="no unit"):
        assemble_allen_neuropixels(root / "raw/manifest.json",
                                   **{**settings["assemble"],
                                      "session_type": "functional_connectivity"})


def test_unreachable_dandi_is_a_one_line_cli_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = _settings({"api_url": f"http://127.0.0.1:{port}/api", "retries": 1,
                          "backoff": 0.01, "timeout": 2})
    done = subprocess.run([sys.executable, "-m", "pipeline", "download_allen_neuropixels",
                           str(tmp_path / "raw"), "--settings",
                           json.dumps(settings["download"])],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: allen_neuropixels: cannot reach 127.0.0.1:{port} "
                           "(connection refused)")
    assert "snakemake --cores all" in last and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- network
# Table 3.1 of the thesis (spec §2.1.5): Neuropixels units (specimens) after selection.
TABLE_3_1_NEUROPIXELS = {"VISp": (442, 8), "VISl": (162, 6), "VISal": (396, 6),
                         "VISrl": (299, 7), "VISam": (257, 7), "VISpm": (175, 5)}
ONE_SESSION = "715093703"        # sub-699733573 (notes/data-sources.md §1)


@pytest.mark.network
def test_real_neuropixels_session_downloads_and_assembles(tmp_path):
    """One real session from DANDI 000021: verified download, then the spec's selection."""
    settings = _settings({"sessions": [ONE_SESSION]}, n_boot=100, specimen_quantile=None)
    root = REPO / "data/raw/allen_neuropixels"   # the pipeline's own cache, so reruns are free
    manifest = download_allen_neuropixels(root, **settings["download"],
                                          manifest_name="manifest_one_session.json")
    assembly = assemble_allen_neuropixels(manifest, **settings["assemble"])
    assert assembly.sizes["stimulus"] == 118 and assembly.sizes["trial"] == 50
    assert set(assembly.area.values) <= set(TABLE_3_1_NEUROPIXELS)
    per_area = pd.Series(assembly.area.values).value_counts().to_dict()
    print(f"session {ONE_SESSION}: selected units per area {per_area}")
    assert sum(per_area.values()) > 0
    assert ((assembly.run_pval > 0.05) | assembly.run_pval.isnull()).all()
    assert (assembly.window_stop > assembly.window_start).all()


@pytest.mark.network
def test_full_neuropixels_counts_match_table_3_1():
    """Target of the documented full run: `snakemake --cores all --configfile
    configs/allen_neuropixels.yaml results/neural/allen_neuropixels.zarr` (downloads ~32
    sessions); then `pytest -m network -k table_3_1`."""
    path = REPO / "results/neural/allen_neuropixels.zarr"
    if not path.exists():
        pytest.skip(f"{path} not built; run the full Allen Neuropixels pipeline first")
    assembly = read_assembly(path)
    found = {area: (int((assembly.area == area).sum()),
                    len(set(assembly.animal.values[assembly.area.values == area])))
             for area in TABLE_3_1_NEUROPIXELS}
    assert found == TABLE_3_1_NEUROPIXELS


def test_kept_time_bins_are_the_mean_assembly_bin_by_bin(assembled, sessions, probe_small):
    _, paths = sessions
    kept = neuropixels_assembly(paths, probe_small.stimulus_id.values, n_boot=20, time_bins="keep")
    assert kept.dims == ("stimulus", "trial", "time_bin", "neuroid")
    np.testing.assert_allclose(kept["time_bin"].values, 0.01 * np.arange(25), atol=1e-12)
    np.testing.assert_allclose(kept["time_bin_end"].values - kept["time_bin"].values, 0.01, atol=1e-12)
    assert kept["bin_reliability"].dims == ("neuroid", "time_bin")
    # The same units, and their window mean is the time-averaged assembly.
    np.testing.assert_array_equal(kept["neuroid_id"].values, assembled["neuroid_id"].values)
    mean = time_average(kept)
    np.testing.assert_allclose(mean.values, assembled.values, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(mean["reliability"].values, assembled["reliability"].values, rtol=1e-6)
    # Per-bin reliability: low before the areas' onset (40-66 ms), high at the transient peak.
    early = kept["bin_reliability"].sel(time_bin=slice(0, 0.025)).median().item()
    peak = kept["bin_reliability"].sel(time_bin=slice(0.07, 0.1)).median().item()
    assert early < 0.2 < peak
    with pytest.raises(ValueError, match="time_bins"):
        neuropixels_assembly(paths, probe_small.stimulus_id.values, n_boot=2, time_bins="all")
