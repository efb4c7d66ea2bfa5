"""Tests for pipeline.data.horikawa2017: BData subject files listed by a figshare-like API on
127.0.0.1, downloaded, assembled as voxel neuroids, and compared between subjects by RSA."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr

from pipeline.cli import main as cli
from pipeline.compare.consistency import interanimal
from pipeline.config import validate_config
from pipeline.data.assembly import read_assembly, write_assembly
from pipeline.data.horikawa2017 import (fmri_assembly, imagenet_name, read_bdata,
                                        subject_responses)
from pipeline.io import read_zarr
from tests.data.horikawa2017_fixtures import (ARTICLE, ROI_COLUMNS, RUNS, TEST_IDS,
                                              serve_figshare, write_bdata)
from tests.data.http_server import FixtureServer

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
ROIS = list(ROI_COLUMNS)


def _settings(download: dict) -> dict:
    """The dataset block with its schema defaults: `download` given, the fixture's ROIs,
    n_boot 20, 16-px stimuli."""
    block = {"download": download, "assemble": {"rois": ROIS, "n_boot": 20},
             "stimuli": {"stimulus_size": 16}}
    return validate_config({"datasets": {"horikawa2017": block}},
                           SCHEMA)["datasets"]["horikawa2017"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("horikawa2017")
    with FixtureServer() as server:
        settings = _settings(serve_figshare(server, root / "upstream"))
        assert cli(["download_horikawa2017", str(root / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
        yield server, settings, root


@pytest.fixture(scope="module")
def assembled(served, tmp_path_factory):
    _, settings, root = served
    out = tmp_path_factory.mktemp("neural") / "horikawa2017.zarr"
    assert cli(["assemble_horikawa2017", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["assemble"])]) == 0
    return read_assembly(out)


def test_download_verifies_md5_and_size_from_the_listing(served):
    server, _, root = served
    manifest = json.loads((root / "raw/manifest.json").read_text())
    assert [(f["path"], f["subject"]) for f in manifest["files"]] == [
        (f"Subject{s}.h5", f"Subject{s}") for s in (1, 2, 3)]
    assert all(f["verified_by"] == ["size", "md5"] for f in manifest["files"])
    assert not server.gets("/files/15015971")           # ImageFeatures.h5 is not wanted
    listing = [r for r in server.requests if r.path == f"/v2/articles/{ARTICLE}/files"]
    assert listing and listing[0].query == {"page": "1", "page_size": "100"}


def test_assembled_voxels_stimuli_and_trials(served, assembled):
    _, _, root = served
    expected = [f"Subject{s}_{roi}_{c}" for s in (1, 2, 3) for roi in ROIS
                for c in ROI_COLUMNS[roi]]
    assert list(assembled.neuroid_id.values) == expected      # FFA voxels also counted in LOC
    assert assembled.sizes == {"stimulus": len(TEST_IDS), "trial": RUNS, "neuroid": 210}
    assert list(assembled.stimulus_id.values) == sorted(f"{i:.6f}" for i in TEST_IDS)
    assert set(assembled.animal.values) == {"Subject1", "Subject2", "Subject3"}
    # Independent reading of Subject1 with h5py: trial t of an image is its presentation in run t+1.
    with h5py.File(root / "upstream/Subject1.h5") as f:
        data = f["dataSet"][()]
    voxels, kind, run, ids = data[:, :60], data[:, 60], data[:, 61], data[:, 62]
    subject1 = assembled.isel(neuroid=assembled.animal.values == "Subject1")
    columns = subject1.column.values
    for s, stimulus_id in enumerate(assembled.stimulus_id.values):
        for t in range(RUNS):
            row = np.flatnonzero((kind == 2) & (run == t + 1)
                                 & (np.abs(ids - float(stimulus_id)) < 1e-9))
            assert row.size == 1
            np.testing.assert_allclose(subject1.values[s, t], voxels[row[0], columns], rtol=1e-6)
    # Subject2 lacks the last run of the first image; nothing else is missing.
    missing = np.isnan(assembled.values)
    subject2 = assembled.animal.values == "Subject2"
    first = list(assembled.stimulus_id.values).index(f"{TEST_IDS[0]:.6f}")
    assert missing[first, RUNS - 1, subject2].all()
    assert missing.sum() == subject2.sum()
    np.testing.assert_array_equal(assembled.voxel_x.values[:4], [0.0, 3.0, 6.0, 9.0])


def test_both_bdata_capitalisations_and_the_label_key(tmp_path):
    upper = write_bdata(tmp_path / "a.h5", 1)
    lower = write_bdata(tmp_path / "b.h5", 1, lower_case=True, label_key="Label")
    np.testing.assert_array_equal(read_bdata(upper)[0], read_bdata(lower)[0])
    a = subject_responses(upper, subject="S", rois=["V1"])
    b = subject_responses(lower, subject="S", rois=["V1"])
    np.testing.assert_array_equal(a.values, b.values)


def test_other_data_types_and_missing_roi(tmp_path):
    path = write_bdata(tmp_path / "a.h5", 1)
    training = subject_responses(path, subject="S", rois=["V1"], data_type=1)
    assert training.sizes["trial"] == 1 and training.sizes["stimulus"] == 3
    with pytest.raises(ValueError, match=r"a.h5: BData has no ROI key 'ROI_PPA'; ROI keys are "
                                         r"\['ROI_FFA', 'ROI_LOC', 'ROI_V1', 'ROI_V4'\]"):
        subject_responses(path, subject="S", rois=["PPA"])


def test_checksum_mismatch_is_named_and_leaves_no_file(served, tmp_path):
    server, settings, _ = served
    route = server.routes[f"/v2/articles/{ARTICLE}/files"]
    listing = route.json
    route.json = [{**r, "computed_md5": "f" * 32} if r["name"] == "Subject2.h5" else r
                  for r in listing]
    try:
        with pytest.raises(SystemExit, match="horikawa2017: Subject2.h5 from .* failed "
                                             "verification: md5 expected f{32}"):
            cli(["download_horikawa2017", str(tmp_path), "--settings",
                 json.dumps(settings["download"])])
    finally:
        route.json = listing
    assert not list(tmp_path.glob("Subject2.h5*"))
    assert not (tmp_path / "manifest.json").exists()


def _pooled_rsa(assembly, area, target):
    """rsatoolbox-free reference: 1 - Pearson RDMs of the trial means (scipy), target against the
    other subjects' voxels concatenated, compared by Pearson r."""
    means = assembly.isel(neuroid=assembly.area.values == area).mean("trial")
    is_target = means.animal.values == target
    rdm = [pdist(means.values[:, mask].astype(np.float64), "correlation")
           for mask in (is_target, ~is_target)]
    return pearsonr(*rdm)[0]


@pytest.mark.parametrize("shared", [True, False])
def test_intersubject_rsa_runs_unchanged(tmp_path, shared):
    """Subjects whose voxels read one image latent agree (RSA r > 0.5); independent ones do not;
    the engine's raw RSA equals a scipy computation of the same pooled comparison."""
    paths = {f"Subject{s}": write_bdata(tmp_path / f"{s}.h5", s, shared=shared) for s in (1, 2, 3)}
    assembly = fmri_assembly(paths, rois=ROIS, n_boot=10)
    scores = interanimal(assembly, mappings=("rsa",), n_halves=5, n_splits=1)
    assert len(scores) == 3 * len(ROIS)
    for row in scores.itertuples():
        assert row.r_full == pytest.approx(_pooled_rsa(assembly, row.area, row.animal), abs=1e-6)
    if shared:
        assert (scores["r_full"] > 0.5).all()
    else:
        assert scores["r_full"].abs().mean() < 0.3


def test_stimulus_set_needs_the_imagenet_folder(assembled, tmp_path):
    neural = tmp_path / "neural.zarr"
    write_assembly(assembled, neural)
    out = tmp_path / "horikawa2017_images.zarr"
    settings = _settings({})["stimuli"]
    with pytest.raises(ValueError, match="`images` is null; the ImageNet stimuli are not "
                                         "distributed"):
        cli(["horikawa2017_stimuli", str(neural), str(out), "--settings", json.dumps(settings)])
    folder = tmp_path / "imagenet"
    (folder / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [imagenet_name(i) for i in assembled.stimulus_id.values]
    assert names[0] == "n01443537_22563"
    for name in names[:-1]:
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
            folder / "test" / f"{name}.JPEG")
    settings = {**settings, "images": str(folder)}
    with pytest.raises(FileNotFoundError, match=f"1 of 10 stimulus images are missing \\(first: "
                                                f"{names[-1]}.JPEG\\)"):
        cli(["horikawa2017_stimuli", str(neural), str(out), "--settings", json.dumps(settings)])
    Image.fromarray(rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)).save(
        folder / f"{names[-1]}.JPEG")
    assert cli(["horikawa2017_stimuli", str(neural), str(out), "--settings",
                json.dumps(settings)]) == 0
    stimuli = read_zarr(out).load()
    assert stimuli.image.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(stimuli.stimulus_id.values, assembled.stimulus_id.values)
    assert stimuli.basic.values[0] == "n01443537"


@pytest.mark.slow
@pytest.mark.parametrize("config, jobs, exact", [
    ("configs/fmri.yaml", {"download_horikawa2017", "assemble_horikawa2017", "interanimal",
                           "all"}, True),
    ("configs/macaque.yaml", {"download_majajhong2015", "assemble_majajhong2015",
                              "majajhong2015_stimuli", "predictivity", "plot_rdms"}, False),
])
def test_dry_run_dags(repo, config, jobs, exact):
    """Without images the fMRI DAG holds the inter-subject RSA only; the macaque DAG scores
    models on the HvM stimulus set."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", config],
                            cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split("Job stats:")[-1].strip().split("\n\n")[0].splitlines()[2:]
    found = {line.split()[0] for line in table} - {"total"}
    assert (found == jobs) if exact else (jobs <= found), found


# ---------------------------------------------------------------------------- network

@pytest.mark.network
def test_real_figshare_listing_has_every_subject():
    """The real figshare article lists Subject1-5.h5 with an md5 and a size."""
    from pipeline.data.horikawa2017 import figshare_files, subject_remotes

    settings = _settings({})["download"]
    records = figshare_files(settings["api_url"], settings["article"], dataset="horikawa2017")
    remotes = subject_remotes(records, settings["subjects"], dataset="horikawa2017")
    assert [r.path for r in remotes] == [f"Subject{s}.h5" for s in range(1, 6)]
    assert all(r.size and "md5" in r.digests for r in remotes)
