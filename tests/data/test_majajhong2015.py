"""Tests for pipeline.data.majajhong2015: the Brain-Score Majaj-Hong 2015 files served from
127.0.0.1, downloaded, assembled and scored by the unchanged consistency engine."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from pipeline.cli import main as cli
from pipeline.compare.consistency import interanimal
from pipeline.config import validate_config
from pipeline.data.assembly import read_assembly
from pipeline.data.majajhong2015 import neural_assembly, read_brainscore_assembly, remotes
from pipeline.io import read_zarr
from tests.data.http_server import FixtureServer
from tests.data.majajhong2015_fixtures import (GAINS, REPS, image, neuroid_table,
                                               serve_macaque, stimulus_table,
                                               write_brainscore_assembly)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
ASSEMBLY = "assy_dicarlo_MajajHong2015_public.nc"


def _settings(download: dict, **assemble) -> dict:
    """The dataset block with its schema defaults: `download` and `assemble` (n_boot 20) given,
    16-px stimuli."""
    block = {"download": download, "assemble": {"n_boot": 20, **assemble},
             "stimuli": {"stimulus_size": 16}}
    return validate_config({"datasets": {"majajhong2015": block}},
                           SCHEMA)["datasets"]["majajhong2015"]


def _default_remotes() -> dict:
    """`remotes` of the schema's default catalog entries."""
    download = _settings({})["download"]
    return remotes(download["base_url"], download["assembly"], download["stimulus_set"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("majajhong2015")
    with FixtureServer() as server:
        settings = _settings(serve_macaque(server, root / "upstream"))
        assert cli(["download_majajhong2015", str(root / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
        yield server, settings, root


@pytest.fixture(scope="module")
def assembled(served, tmp_path_factory):
    _, settings, root = served
    out = tmp_path_factory.mktemp("neural") / "majajhong2015.zarr"
    assert cli(["assemble_majajhong2015", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["assemble"])]) == 0
    return read_assembly(out)


def test_published_urls_follow_the_brainio_naming():
    urls = {role: r.url for role, r in _default_remotes().items()}
    base = "https://brainscore-storage.s3.amazonaws.com/brainio-brainscore"
    assert urls == {"assembly": f"{base}/{ASSEMBLY}",
                    "stimulus_csv": f"{base}/stimulus_hvm-public.csv",
                    "stimulus_zip": f"{base}/stimulus_hvm-public.zip"}


def test_download_verifies_each_file_by_sha1(served):
    _, _, root = served
    manifest = json.loads((root / "raw/manifest.json").read_text())
    assert {f["role"]: f["path"] for f in manifest["files"]} == {
        "assembly": ASSEMBLY, "stimulus_csv": "stimulus_hvm-public.csv",
        "stimulus_zip": "stimulus_hvm-public.zip"}
    assert all(f["verified_by"] == ["sha1"] for f in manifest["files"])


def test_assembled_neuroids_stimuli_trials_and_coords(served, assembled):
    _, _, root = served
    neuroids, stimuli = neuroid_table(), stimulus_table()
    assert assembled.dims == ("stimulus", "trial", "neuroid")
    assert assembled.sizes == {"stimulus": 24, "trial": 4, "neuroid": 12}
    assert list(assembled.neuroid_id.values) == list(neuroids["neuroid_id"])   # V4, then IT
    assert list(assembled.area.values) == list(neuroids["region"])
    assert list(assembled.animal.values) == list(neuroids["animal"])
    assert list(assembled.stimulus_id.values) == sorted(stimuli["stimulus_id"])
    by_id = stimuli.set_index("stimulus_id").loc[assembled.stimulus_id.values]
    np.testing.assert_array_equal(assembled.variation.values, by_id["variation"].values)
    np.testing.assert_array_equal(assembled.object_name.values, by_id["object_name"].values)
    assert "repetition" not in assembled.coords and "subregion" in assembled.coords
    # Every presentation lands at (its image, its repetition), as the mean of the 70-170 ms bins.
    raw = xr.open_dataset(root / "upstream" / ASSEMBLY, engine="h5netcdf")["data"].load()
    position = {s: i for i, s in enumerate(assembled.stimulus_id.values)}
    for p in range(raw.sizes["presentation"]):
        row = raw.isel(presentation=p)
        expected = row.isel(time_bin=[1, 2]).mean("time_bin").transpose("neuroid").values
        got = assembled.values[position[str(row.stimulus_id.values)], int(row.repetition)]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Variation-0 images have 3 repetitions: their 4th trial is missing, and nothing else is.
    missing = np.isnan(assembled.values).all(axis=2)
    np.testing.assert_array_equal(missing[:, 3], by_id["variation"].values == 0)
    assert not np.isnan(assembled.values[:, :3]).any()
    assert (assembled.reliability > 0.9).all()


def test_time_bins_kept_and_areas_chosen(served):
    _, settings, root = served
    raw = read_brainscore_assembly(root / "raw" / ASSEMBLY)
    kept = neural_assembly(raw, areas=["IT"], time_bins="keep", n_boot=10)
    assert kept.dims == ("stimulus", "trial", "neuroid", "time_bin")
    np.testing.assert_allclose(kept.time_bin.values, [0.07, 0.12])
    np.testing.assert_allclose(kept.time_bin_end.values, [0.12, 0.17])
    assert set(kept.area.values) == {"IT"} and kept.sizes["neuroid"] == 6
    assert kept.bin_reliability.dims == ("neuroid", "time_bin")
    # The fixture's per-bin gains: bin 70-120 ms carries GAINS[1] of the signal, 120-170 GAINS[2].
    centred = kept.mean("trial") - kept.mean("trial").mean("stimulus")
    ratio = (centred.isel(time_bin=1) / centred.isel(time_bin=0)).median()
    assert float(ratio) == pytest.approx(GAINS[2] / GAINS[1], rel=0.05)
    mean = neural_assembly(raw, areas=["IT"], n_boot=10)
    np.testing.assert_allclose(kept.mean("time_bin").values, mean.values, rtol=1e-6)


def test_legacy_file_with_image_id_reads_the_same(tmp_path):
    modern = read_brainscore_assembly(write_brainscore_assembly(tmp_path / "a.nc"))
    legacy = read_brainscore_assembly(write_brainscore_assembly(tmp_path / "b.nc", legacy=True))
    assert legacy.name == "dicarlo.MajajHong2015.public" and "image_id" not in legacy.coords
    xr.testing.assert_equal(neural_assembly(legacy, areas=["V4"], n_boot=5),
                            neural_assembly(modern, areas=["V4"], n_boot=5))


def test_window_without_bins_and_unknown_area_are_named(tmp_path):
    raw = read_brainscore_assembly(write_brainscore_assembly(tmp_path / "a.nc"))
    with pytest.raises(ValueError, match=r"no time bin lies inside window \[0.2, 0.3\] s; the "
                                         r"file's bins are \[0.05, 0.07\)"):
        neural_assembly(raw, areas=["V4"], window=(0.2, 0.3))
    with pytest.raises(ValueError, match=r"areas \['V1'\] not in the assembly's regions"):
        neural_assembly(raw, areas=["V1"])


def test_variations_select_presentations(served):
    _, _, root = served
    raw = read_brainscore_assembly(root / "raw" / ASSEMBLY)
    high = neural_assembly(raw, areas=["V4"], variations=[3], n_boot=5)
    assert set(high.variation.values) == {3} and high.sizes == {"stimulus": 18, "trial": REPS[3],
                                                                "neuroid": 6}


def test_checksum_mismatch_is_named_and_leaves_no_file(served, tmp_path):
    _, settings, _ = served
    download = settings["download"]
    bad = {**download, "stimulus_set": {**download["stimulus_set"], "zip_sha1": "0" * 40}}
    with pytest.raises(SystemExit, match="majajhong2015: stimulus_hvm-public.zip from .* failed "
                                         "verification: sha1 expected 0{40}"):
        cli(["download_majajhong2015", str(tmp_path), "--settings", json.dumps(bad)])
    assert not list(tmp_path.glob("stimulus_hvm-public.zip*"))
    assert not (tmp_path / "manifest.json").exists()


def test_stimulus_set_from_csv_and_zip(served, assembled, tmp_path):
    _, settings, root = served
    out = tmp_path / "majajhong2015_hvm.zarr"
    assert cli(["majajhong2015_stimuli", str(root / "raw/manifest.json"), str(out),
                "--settings", json.dumps(settings["stimuli"])]) == 0
    stimuli = read_zarr(out).load()
    assert stimuli.image.shape == (24, 16, 16, 3) and stimuli.attrs["name"] == "majajhong2015_hvm"
    np.testing.assert_array_equal(stimuli.stimulus_id.values, assembled.stimulus_id.values)
    table = stimulus_table().set_index("stimulus_id").loc[stimuli.stimulus_id.values]
    np.testing.assert_array_equal(stimuli.superordinate.values, table["category_name"].values)
    np.testing.assert_array_equal(stimuli.basic.values, table["object_name"].values)
    first = int(table["id"].iloc[0])
    reference = Image.fromarray(image(first)).convert("RGB").resize((16, 16), Image.BILINEAR)
    np.testing.assert_array_equal(stimuli.image.values[0], np.asarray(reference))


@pytest.mark.parametrize("shared", [True, False])
def test_interanimal_engine_runs_unchanged(tmp_path, shared):
    """Animals reading the same latent predict each other up to noise (noise-corrected score
    near 1); animals with independent latents do not."""
    path = write_brainscore_assembly(tmp_path / "a.nc", shared=shared)
    assembly = neural_assembly(read_brainscore_assembly(path), areas=["V4", "IT"], n_boot=10)
    scores = interanimal(assembly, mappings=("ridge", "pls"), n_halves=5, n_splits=3,
                         n_components=2)
    median = scores.groupby(["area", "mapping"])["score"].median()
    assert set(median.index.get_level_values("area")) == {"V4", "IT"}
    if shared:
        assert median.between(0.85, 1.1).all(), median
    else:
        assert (median < 0.5).all(), median


def test_configs_resolve(repo):
    import yaml

    config = validate_config(yaml.safe_load((repo / "configs/macaque.yaml").read_text()), SCHEMA)
    assert config["datasets"]["synthetic_mouse"] is None
    assert config["datasets"]["majajhong2015"]["download"]["assembly"]["sha1"] == \
        "13d28ca0ce88ee550b54db3004374ae19096e9b9"


# ---------------------------------------------------------------------------- network

@pytest.mark.network
def test_real_stimulus_csv_matches_its_published_sha1(tmp_path):
    """The real Brain-Score bucket: the HvM CSV (small) against the catalog's sha1."""
    from pipeline.data.fetch.download import fetch
    from pipeline.data.majajhong2015 import read_stimulus_table

    result = fetch(_default_remotes()["stimulus_csv"], tmp_path, dataset="majajhong2015")
    table = read_stimulus_table(result.path)
    assert len(table) == 3200 and {"object_name", "category_name"} <= set(table.columns)


@pytest.mark.network
@pytest.mark.slow
def test_real_download_and_assembly(tmp_path):
    """Whole public set (hundreds of MB): download, assemble; 256 neuroids in V4 and IT."""
    settings = _settings({}, n_boot=10)
    assert cli(["download_majajhong2015", str(tmp_path), "--settings",
                json.dumps(settings["download"])]) == 0
    out = tmp_path / "neural.zarr"
    assert cli(["assemble_majajhong2015", str(tmp_path / "manifest.json"), str(out),
                "--settings", json.dumps(settings["assemble"])]) == 0
    assembly = read_assembly(out)
    assert assembly.sizes["neuroid"] == 256 and assembly.sizes["stimulus"] == 3200
    assert set(assembly.area.values) == {"V4", "IT"}
    assert set(assembly.animal.values) == {"Chabo", "Tito"}


def test_kept_bins_are_stored_for_the_temporal_stage_and_read_as_the_mean(served, tmp_path):
    from pipeline.compare.temporal import temporal_interanimal
    from pipeline.data.assembly import write_assembly

    _, _, root = served
    raw = read_brainscore_assembly(root / "raw" / ASSEMBLY)
    kept = neural_assembly(raw, areas=["IT"], time_bins="keep", n_boot=10)
    write_assembly(kept, tmp_path / "kept.zarr")
    mean = neural_assembly(raw, areas=["IT"], n_boot=10)
    averaged = read_assembly(tmp_path / "kept.zarr")                  # what time-averaged rules read
    assert averaged.dims == ("stimulus", "trial", "neuroid")
    np.testing.assert_allclose(averaged.values, mean.values, rtol=1e-6)
    np.testing.assert_array_equal(averaged["reliability"].values, mean["reliability"].values)
    scores = temporal_interanimal(read_assembly(tmp_path / "kept.zarr", time_bins="keep"), maps=("per_bin",),
                                  n_halves=2, n_splits=2)
    np.testing.assert_allclose(sorted(set(scores["time_bin"])), [0.07, 0.12])
    assert set(scores["animal"]) == set(kept["animal"].values)
