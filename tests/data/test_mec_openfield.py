"""Tests for pipeline.data.mec_openfield: DANDI download (127.0.0.1) → rate-map NeuralAssembly →
inter-animal scores."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main as cli
from pipeline.config import validate_config
from pipeline.data.assembly import read_assembly
from pipeline.data.mec_openfield import (rate_map_assembly, assemble_mec_openfield,
                                         download_mec_openfield, parse_arena_cm)
from pipeline.mec.ratemaps import BinGrid, rate_maps
from tests.data.http_server import FixtureServer
from tests.data.mec_openfield_fixtures import (SESSIONS, Cell, expected_neuroids,
                                               rate_field, sargolini_path, serve_mec,
                                               write_session)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _settings(download: dict, **assemble) -> dict:
    """The dataset block with its schema defaults: `download` and `assemble` given."""
    block = {"download": download, "assemble": assemble}
    return validate_config({"datasets": {"mec_openfield": block}},
                           SCHEMA)["datasets"]["mec_openfield"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Fixture server publishing 000582 and 000053, the settings, and the CLI-downloaded cache."""
    root = tmp_path_factory.mktemp("mec_openfield")
    with FixtureServer() as server:
        settings = _settings(serve_mec(server, root / "upstream"))
        assert cli(["download_mec_openfield", str(root / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
        yield server, settings, root


@pytest.fixture(scope="module")
def assembled(served, tmp_path_factory):
    _, settings, root = served
    out = tmp_path_factory.mktemp("mec_neural") / "mec_openfield.zarr"
    assert cli(["assemble_mec_openfield", str(root / "raw/manifest.json"), str(out), "--settings",
                json.dumps(settings["assemble"])]) == 0
    return out


def _blob_gets(server):
    return [r for r in server.requests if r.method == "GET" and r.path.startswith("/blobs/")]


def test_download_selects_verifies_and_caches(served):
    server, settings, root = served
    manifest = json.loads((root / "raw/manifest.json").read_text())
    paths = sorted(f["path"] for f in manifest["files"])
    assert paths == sorted(f"{d}/{p}" for d, p, *_ in SESSIONS)
    by_set = {f["dandiset"]: tuple(f["verified_by"]) for f in manifest["files"]}
    assert by_set == {"000582": ("size", "dandi-etag", "sha256"), "000053": ("size", "dandi-etag")}
    # The non-NWB file and the 2 GB asset are never requested.
    assert len(_blob_gets(server)) == len(SESSIONS)
    assert cli(["download_mec_openfield", str(root / "raw"), "--settings",
                json.dumps(settings["download"])]) == 0
    assert len(_blob_gets(server)) == len(SESSIONS)          # second run: all from the cache


def test_assembly_units_bins_and_coords(assembled):
    a = read_assembly(assembled)
    assert set(a.neuroid_id.values) == expected_neuroids(100)  # 75-cm session and silent units out
    assert a.sizes == {"stimulus": 400, "trial": 2, "neuroid": 8}
    assert a.stimulus_id.values[0] == "x0_y0" and a.stimulus_id.values[21] == "x1_y1"
    assert a.x.values[21] == 7.5 and a.y.values[399] == 97.5
    assert set(a.animal.values) == {"11084", "11265", "npI1"}
    assert set(a.area.values) == {"MEC"} and set(a.dandiset.values) == {"000582", "000053"}
    assert not np.isnan(a.values).any() and (a.reliability > 0.8).all()
    assert a.attrs["units"] == "Hz" and a.attrs["arena_width_cm"] == a.attrs["arena_height_cm"] == 100.0


@pytest.mark.parametrize("unit", ["sub-11084_ses-03020501_behavior+ecephys_T2C1",
                                  "sub-npI1_ses-20190413_behavior+ecephys_c1"])
def test_rate_maps_recover_the_generating_field(assembled, unit):
    """Both layouts (m, centred, two LEDs; cm, offset) land on the right bins."""
    a = read_assembly(assembled).set_index(neuroid="neuroid_id")
    cell = {f"{Path(p).stem}_{c.label}": c for _, p, _, _, cells in SESSIONS for c in cells}[unit]
    truth = rate_field(cell, np.stack([a.x.values, a.y.values], axis=1), 100)
    measured = a.sel(neuroid=unit).mean("trial").values
    assert np.corrcoef(measured, truth)[0, 1] > 0.9
    assert measured.mean() == pytest.approx(truth.mean(), rel=0.1)


def test_interanimal_runs_unchanged_on_rate_maps(assembled, tmp_path):
    out = tmp_path / "mec_openfield.parquet"
    compare = {"mappings": ["ridge", "one_to_one"], "n_halves": 2, "n_splits": 3,
               "train_frac": 0.2}
    assert cli(["interanimal", str(assembled), str(out), "--dataset", "mec_openfield",
                "--settings", json.dumps(compare)]) == 0
    scores = pd.read_parquet(out)
    assert set(scores.animal) == {"11084", "11265", "npI1"} and set(scores.area) == {"MEC"}
    assert set(scores.neuroid_id) == expected_neuroids(100)
    assert len(scores) == 8 * 2 * 3 and scores[["r", "r_full", "r_target"]].notna().all().all()


def test_corrupt_cache_is_refetched(served, tmp_path):
    server, settings, root = served
    raw = tmp_path / "raw"
    download_mec_openfield(raw, **settings["download"])
    victim = raw / "000053" / SESSIONS[2][1]
    victim.write_bytes(victim.read_bytes()[:1000])             # truncated on disk
    with pytest.raises(ValueError, match="missing or changed"):
        assemble_mec_openfield(raw / "manifest.json", **settings["assemble"])
    before = len(_blob_gets(server))
    download_mec_openfield(raw, **settings["download"])
    assert len(_blob_gets(server)) == before + 1               # only the damaged file again
    assert victim.read_bytes() == (root / "upstream/000053" / SESSIONS[2][1]).read_bytes()


def test_cut_transfer_resumes_into_a_verified_file(tmp_path):
    with FixtureServer() as server:
        settings = _settings(serve_mec(server, tmp_path / "upstream", duration=240.0))
        asset = next(a for a in server.routes if a.startswith("/blobs/"))
        server.cut(asset, 50_000)
        download_mec_openfield(tmp_path / "raw", **settings["download"])
        ranges = [r.range for r in server.gets(asset)]
    assert ranges[0] is None and ranges[1].startswith("bytes=50000-")
    assert not list((tmp_path / "raw").rglob("*.part"))


def test_mixed_arenas_need_arena_cm(served):
    _, _, root = served
    paths = sorted((root / "upstream").rglob("*.nwb"))
    with pytest.raises(ValueError, match="arena_cm"):
        rate_map_assembly(paths, arena_cm=None)
    with pytest.raises(ValueError, match="no session of a 60 cm arena"):
        rate_map_assembly(paths, arena_cm=60)


def test_arena_text_of_both_layouts():
    assert parse_arena_cm("arena size (cm): [75.]") == (75.0, 75.0)
    assert parse_arena_cm("", "a rat running in a 1 x 1 meter enclosure.") == (100.0, 100.0)
    assert parse_arena_cm("free exploration.") is None


def test_real_sargolini_trajectory_recovers_a_grid_field(tmp_path):
    trajectory = sargolini_path()
    if trajectory is None:
        pytest.skip("../shared/data/real/ratinabox_sargolini2006 not present")
    t, xy = trajectory
    cell = Cell("T2C1", "grid", 1)
    path = tmp_path / "sub-11084/sub-11084_ses-03020501.nwb"
    write_session(path, "000582", [cell], subject="11084", arena_cm=100, trajectory=(t, xy))
    # Alternate minutes of this 10-min path cover 78% of the bins each, 60% both (>= 0.1 s).
    a = rate_map_assembly([path], arena_cm=100, min_coverage=0.7)
    assert 230 <= a.sizes["stimulus"] <= 250
    truth = rate_field(cell, np.stack([a.x.values, a.y.values], axis=1), 100)
    assert np.corrcoef(a.isel(neuroid=0).mean("trial").values, truth)[0, 1] > 0.8
    whole = rate_maps(t, xy, [], BinGrid(100, 100), half_block=None)
    assert float((whole.occupancy >= 0.1).mean()) > 0.9          # the whole session covers it


@pytest.mark.network
def test_real_mec_session_downloads_and_assembles():
    """One small real session of DANDI 000582, verified and turned into rate maps."""
    settings = _settings({"dandisets": [{"dandiset": "000582", "version": "draft",
                                         "max_sessions": 1}]}, min_coverage=0.5)
    root = REPO / "data/raw/mec_openfield"
    manifest = download_mec_openfield(root, **settings["download"],
                                      manifest_name="manifest_one_session.json")
    assembly = assemble_mec_openfield(manifest, **settings["assemble"])
    print(f"{assembly.sizes['neuroid']} units, {assembly.sizes['stimulus']} bins")
    assert assembly.sizes["trial"] == 2 and assembly.sizes["stimulus"] > 200
    assert not np.isnan(assembly.values).any()
