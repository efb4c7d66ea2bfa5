"""Tests for pipeline.data.allen_ophys: mean_sweep_response, the spec's filters, the S3 download
and the stimulus set of the NWB template stack."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from pipeline.cli import main as cli
from pipeline.config import validate_config
from pipeline.data.allen_ophys import (assemble_allen_ophys, experiment_responses,
                                       select_experiments)
from pipeline.data.assembly import read_assembly
from pipeline.data.natural_scenes import natural_scene_ids, preprocess
from pipeline.io import read_zarr
from tests.data.allen_fixtures import Cell, expected_ophys, serve_ophys, write_ophys_experiment
from tests.data.http_server import FixtureServer

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _settings(download: dict, **assemble) -> dict:
    """The dataset block with its schema defaults: `download` and `assemble` (n_boot 20) given."""
    block = {"download": download, "assemble": {"n_boot": 20, **assemble}}
    return validate_config({"datasets": {"allen_ophys": block}}, SCHEMA)["datasets"]["allen_ophys"]


def _allensdk_mean_sweep_response(path):
    """AllenSDK's get_sweep_response loop, literally, on the h5py-read file (the peer)."""
    pipe = "processing/brain_observatory_pipeline/Fluorescence"
    with h5py.File(path, "r") as f:
        if f"{pipe}/imaging_plane_1_demixed_signal" in f:          # pipeline version >= 2.0
            traces = f[f"{pipe}/imaging_plane_1_demixed_signal/data"][()]
            neuropil = f[f"{pipe}/imaging_plane_1_neuropil_response/data"][()]
            r = f[f"{pipe}/imaging_plane_1_neuropil_response/r"][()]
        else:
            traces = f[f"{pipe}/imaging_plane_1/data"][()]
            neuropil = f[f"{pipe}/imaging_plane_1/neuropil_traces"][()]
            r = f[f"{pipe}/imaging_plane_1/r"][()]
        frames = f["stimulus/presentation/natural_scenes_stimulus/data"][()]
        duration = f["stimulus/presentation/natural_scenes_stimulus/frame_duration"][()]
    celltraces = traces - neuropil * r[:, None]
    start, end = duration[:, 0].astype(int), duration[:, 1].astype(int)
    sweeplength = end[1] - start[1]
    interlength, extralength = 4 * sweeplength, sweeplength
    out = np.empty((len(start), len(celltraces)))
    for i, s in enumerate(start):
        for nc in range(len(celltraces)):
            temp = celltraces[nc, s - interlength:s + sweeplength + interlength]
            resp = 100 * ((temp / np.mean(temp[:interlength])) - 1)
            out[i, nc] = np.mean(resp[interlength:interlength + sweeplength + extralength])
    return frames, out


@pytest.mark.parametrize("legacy", [False, True])
def test_mean_sweep_response_matches_the_allensdk_loop(tmp_path, legacy):
    cells = [Cell(1, "reliable"), Cell(2, "flat"), Cell(3, "running")]
    path = write_ophys_experiment(tmp_path / "e.nwb", cells, experiment_id=7, container_id=8,
                                  specimen="m1", area="VISp", legacy=legacy, seed=3)
    responses = experiment_responses(path)
    frames, reference = _allensdk_mean_sweep_response(path)
    assert responses.dims == ("stimulus", "trial", "neuroid")
    assert responses.sizes == {"stimulus": 6, "trial": 10, "neuroid": 3}
    shown = frames >= 0
    for stim, frame in enumerate(responses.frame.values):
        expected = reference[frames == frame]                  # trials in time order
        np.testing.assert_allclose(responses.values[stim], expected, rtol=1e-5)
    # The fixture's designed amplitudes: image i evokes 10·(i+1) %, +2 % on odd trials.
    np.testing.assert_allclose(responses.isel(neuroid=0).values,
                               10 * (np.arange(6)[:, None] + 1) + 2 * (np.arange(10) % 2),
                               rtol=1e-5)
    assert shown.sum() == 60
    assert list(responses.neuroid_id.values) == ["1", "2", "3"]
    assert set(responses.animal.values) == {"m1"} and set(responses.area.values) == {"VISp"}
    # Running speed per trial: 15 cm/s on the first half of each image's trials.
    np.testing.assert_array_equal(responses.running_speed.values,
                                  np.where(np.arange(10) < 5, 15.0, 0.0)[None].repeat(6, 0))


def test_missing_field_names_file_and_field(tmp_path):
    path = write_ophys_experiment(tmp_path / "e.nwb", [Cell(1, "reliable")], experiment_id=7,
                                  container_id=8, specimen="m1", area="VISp")
    with h5py.File(path, "r+") as f:
        del f["stimulus/presentation/natural_scenes_stimulus/frame_duration"]
    with pytest.raises(ValueError, match="e.nwb: NWB field 'stimulus/presentation/natural_"
                                         "scenes_stimulus/frame_duration' missing"):
        experiment_responses(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("allen_ophys")
    with FixtureServer() as server:
        settings = _settings(serve_ophys(server, root / "upstream"))
        assert cli(["download_allen_ophys", str(root / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
        yield server, settings, root


def test_download_selects_natural_scene_experiments_and_pages_the_listing(served):
    server, _, root = served
    manifest = json.loads((root / "raw/manifest.json").read_text())
    experiments = sorted(f["id"] for f in manifest["files"] if f["role"] == "experiment")
    assert experiments == [501, 502, 503]           # not session A, failed, or VISrl
    listings = [r.query for r in server.requests if r.path == "/"]
    assert {"continuation-token": "2"}.items() <= listings[-1].items()
    assert all("s3-etag" in f["verified_by"] for f in manifest["files"])


def test_assembled_cells_trials_and_coords(served, tmp_path):
    _, settings, root = served
    out = tmp_path / "neural.zarr"
    assert cli(["assemble_allen_ophys", str(root / "raw/manifest.json"), str(out), "--settings",
                json.dumps(settings["assemble"])]) == 0
    assembly = read_assembly(out)
    assert set(assembly.neuroid_id.values) == expected_ophys()
    assert assembly.sizes == {"stimulus": 6, "trial": 10, "neuroid": 5}
    np.testing.assert_array_equal(assembly.stimulus_id, natural_scene_ids(6))
    by_id = assembly.set_index(neuroid="neuroid_id")
    assert by_id.sel(neuroid="21").area == "VISl" and by_id.sel(neuroid="1").animal == "Cux2-1"
    assert set(assembly.experiment_id.values) == {"501", "503"}
    assert (assembly.reliability >= 0.75).all()
    assert ((assembly.run_pval > 0.05) | assembly.run_pval.isnull()).all()
    assert assembly.attrs["trial_means_only"] is False


def test_running_cell_is_dropped_and_its_pvalue_matches_scipy(served):
    _, settings, root = served
    loose = assemble_allen_ophys(root / "raw/manifest.json",
                                 **{**settings["assemble"], "run_pval_threshold": None})
    assert set(loose.neuroid_id.values) - expected_ophys() == {"5"}
    responses = experiment_responses(root / "upstream/501.nwb")
    cell = responses.set_index(neuroid="neuroid_id").sel(neuroid="5")
    preferred = int(cell.mean("trial").argmax("stimulus"))
    trials = cell.values[preferred].astype(np.float64)
    speed = cell.running_speed.values[preferred]
    reference = stats.ttest_ind(trials[speed >= 1], trials[speed < 1], equal_var=False).pvalue
    np.testing.assert_allclose(loose.set_index(neuroid="neuroid_id").run_pval.sel(neuroid="5"),
                               reference, rtol=1e-9)
    assert reference < 1e-6


def test_visrl_is_a_config_choice(served, tmp_path):
    """download.areas decides what is fetched; assemble.areas what is kept of it."""
    server, settings, root = served
    areas = ["VISp", "VISl", "VISrl"]
    assert cli(["download_allen_ophys", str(tmp_path / "raw"), "--settings",
                json.dumps({**settings["download"], "areas": areas})]) == 0
    assembly = assemble_allen_ophys(tmp_path / "raw/manifest.json",
                                    **{**settings["assemble"], "areas": areas})
    assert set(assembly.neuroid_id.values) == expected_ophys(("VISp", "VISl", "VISrl"))
    assert "31" in assembly.neuroid_id.values
    without = assemble_allen_ophys(tmp_path / "raw/manifest.json",
                                   **{**settings["assemble"], "areas": ["VISp", "VISl"]})
    assert set(without.neuroid_id.values) == expected_ophys()


def test_unlistable_bucket_falls_back_to_head(served, tmp_path):
    server, settings, root = served
    server.routes["/"].status = 403
    try:
        assert cli(["download_allen_ophys", str(tmp_path / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
    finally:
        server.routes["/"].status = 200
    heads = {r.path for r in server.requests if r.method == "HEAD"}
    assert heads == {"/visual-coding-2p/ophys_experiments.json",
                     *(f"/visual-coding-2p/ophys_experiment_data/{e}.nwb" for e in (501, 502, 503))}
    manifest = json.loads((tmp_path / "raw/manifest.json").read_text())
    assert all(f["verified_by"] == ["size", "s3-etag"] for f in manifest["files"])


def test_stimulus_set_comes_from_the_nwb_template_stack(served, tmp_path):
    _, settings, root = served
    out = tmp_path / "allen_ophys_scenes.zarr"
    assert cli(["allen_ophys_stimuli", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["stimuli"])]) == 0
    stimuli = read_zarr(out).load()
    assert stimuli.attrs["name"] == "allen_ophys_scenes"
    assert stimuli.image.shape == (6, 64, 64, 3)
    with h5py.File(root / "upstream/501.nwb") as f:
        stack = f["stimulus/templates/natural_scenes_image_stack/data"][()]
    np.testing.assert_array_equal(stimuli.image.values[2, ..., 1], preprocess(stack[2], 64))


def test_selection_reads_raw_and_simplified_records():
    raw = {"id": 1, "targeted_structure": {"acronym": "VISp"}, "stimulus_name": "three_session_B",
           "experiment_container": {"failed": False}, "specimen": {"name": "m"}}
    simple = {"id": 2, "targeted_structure": "VISl", "session_type": "three_session_B",
              "specimen_name": "n", "failed": False}
    failed = {**raw, "id": 3, "experiment_container": {"failed": True}}
    chosen = select_experiments([raw, simple, failed], areas=["VISp", "VISl"])
    assert [(e["id"], e["area"], e["specimen"]) for e in chosen] == [(1, "VISp", "m"),
                                                                     (2, "VISl", "n")]


def test_center_crop_follows_the_validation_transform():
    """Short side 256, centre 224 crop: a black frame outside the crop must disappear."""
    image = np.full((918, 1174), 255, dtype=np.uint8)
    image[:40], image[-40:], image[:, :150], image[:, -150:] = 0, 0, 0, 0
    assert preprocess(image, 32).min() == 255
    assert preprocess(image, 32, crop=0).min() < 100          # no crop: the frame shows


# ---------------------------------------------------------------------------- network

@pytest.mark.network
def test_real_experiment_table_has_natural_scenes_in_every_area(tmp_path):
    """The real S3 bucket: list and verify the experiment table, select session B."""
    from pipeline.data.allen_ophys import S3_2P_PREFIX, s3_list
    from pipeline.data.fetch.download import Remote, fetch

    settings = _settings({})["download"]
    key = f"{S3_2P_PREFIX}/ophys_experiments.json"
    size, etag = s3_list(settings["s3_url"], key, dataset="allen_ophys")[key]
    table = fetch(Remote(url=f"{settings['s3_url']}/{key}", path="ophys_experiments.json",
                         size=size, digests={"s3-etag": etag}), tmp_path, dataset="allen_ophys")
    chosen = select_experiments(json.loads(table.path.read_text()), areas=settings["areas"])
    assert {e["area"] for e in chosen} == set(settings["areas"])
    print({a: sum(e["area"] == a for e in chosen) for a in settings["areas"]})



# Table 3.1 of the thesis (spec §2.1.5): calcium units (specimens) after selection.
TABLE_3_1_CALCIUM = {"VISp": (7080, 29), "VISl": (4393, 24), "VISal": (2064, 9),
                     "VISrl": (1116, 8), "VISam": (847, 9), "VISpm": (1844, 19)}


@pytest.mark.network
def test_full_ophys_counts_match_table_3_1():
    """Target of the documented full run: `snakemake --cores all --resources downloads=1
    --configfile configs/allen_ophys.yaml results/neural/allen_ophys.zarr` (all six areas), then
    `pytest -m network -k table_3_1`."""
    path = REPO / "results/neural/allen_ophys.zarr"
    if not path.exists():
        pytest.skip(f"{path} not built; run the full Allen two-photon pipeline first")
    assembly = read_assembly(path)
    found = {area: (int((assembly.area == area).sum()),
                    len(set(assembly.animal.values[assembly.area.values == area])))
             for area in TABLE_3_1_CALCIUM}
    assert found == TABLE_3_1_CALCIUM
