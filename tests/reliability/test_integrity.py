"""Zarr store integrity: every fault on stores written by the real writers.

Each store the pipeline writes ends with `manifest.json` (size and crc32c of every file; see
`pipeline.io.seal_store`). `read_zarr` checks on open that every listed file exists with its
size, and checks each file's checksum as it is read. Stores written before manifests existed are
read with a warning, which names any chunk of an array's chunk grid that has no file.
"""

import json
import logging
import re
import shutil

import numpy as np
import pytest
import xarray as xr

from pipeline import cli
from pipeline.activations import content_key, extract, read_layer
from pipeline.data.assembly import ALLEN_AREAS, read_assembly, write_assembly
from pipeline.data.stimuli import make_stimulus_sets, read_stimuli
from pipeline.io import MANIFEST, CorruptStoreError, read_zarr
from pipeline.train import TrainSettings, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STIMULUS_SETTINGS = {"size": 16, "train_per_class": 1, "test_per_class": 1, "probe": 12, "seed": 0}
REBUILD = "snakemake --cores all --force"
KINDS = ["neural", "stimuli", "activations"]
# the data array each kind's reader returns, and the chunk damaged in it
ARRAY = {"neural": "response", "stimuli": "image", "activations": "area1"}


def make_assembly():
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.normal(size=(20, 4, 6)).astype(np.float32), dims=("stimulus", "trial", "neuroid"),
        name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(20)]),
                "neuroid_id": ("neuroid", [f"n{i}" for i in range(6)]),
                "animal": ("neuroid", ["a", "a", "a", "b", "b", "b"]),
                "area": ("neuroid", [ALLEN_AREAS[0]] * 6),
                "reliability": ("neuroid", rng.random(6))})
    da.encoding["chunks"] = (10, 4, 6)             # two chunks along stimulus
    return da


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One clean store of each kind, written by the pipeline's own writers."""
    root = tmp_path_factory.mktemp("integrity")
    write_assembly(make_assembly(), root / "neural.zarr")
    assert cli.main(["stimuli", "--out-dir", str(root / "stimuli"),
                     "--settings", json.dumps(STIMULUS_SETTINGS)]) == 0
    stimuli = root / "stimuli"
    train("ventral_cnn-supervised-bp-s0", stimuli / "shapes_train.zarr",
          stimuli / "shapes_test.zarr", root / "model", TrainSettings(epochs=1, batch_size=8),
          device="cpu")
    checkpoints = sorted((root / "model").glob("epoch_*.pt"))
    extract(checkpoints, stimuli / "shapes_probe.zarr", root / "activations.zarr", device="cpu")
    return {"neural": root / "neural.zarr", "stimuli": stimuli / "shapes_probe.zarr",
            "activations": root / "activations.zarr", "checkpoints": checkpoints}


def copy(written, kind, tmp_path):
    """A private copy of the clean store of `kind`, to damage."""
    path = tmp_path / f"{kind}.zarr"
    shutil.copytree(written[kind], path)
    return path


def read(kind, path) -> np.ndarray:
    """The values each consumer reads: the assembly, the images, one layer's activations."""
    if kind == "neural":
        return read_assembly(path).values
    if kind == "stimuli":
        return read_stimuli(path)["image"].values
    return read_layer(path, "area1").values


def first_chunk(path, kind) -> str:
    """Key of the first data chunk of the store's main array."""
    array = path / ARRAY[kind]
    chunks = sorted(f.name for f in array.iterdir() if not f.name.startswith("."))
    return f"{ARRAY[kind]}/{chunks[0]}"


def flip_bit(file, offset=None):
    data = bytearray(file.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x10
    file.write_bytes(bytes(data))


def truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])


def named(path, key, problem):
    """`match=` for an error naming the store, the array and chunk, the problem, and the
    command that rebuilds the store."""
    array, _, chunk = key.rpartition("/")
    return (f"^{re.escape(str(path))}: array '{array}' chunk '{chunk}' {problem}"
            f".*{re.escape(REBUILD)} {re.escape(str(path))}")


# ---- clean stores ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_clean_store_reads_back_bit_identical(written, kind, caplog):
    path = written[kind]
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["checksum"] == "crc32c" and f"{first_chunk(path, kind)}" in manifest["files"]
    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        values = read(kind, path)
    assert caplog.records == []
    plain = xr.open_zarr(path, consolidated=True)[ARRAY[kind]].values   # zarr alone, no checks
    assert values.dtype == plain.dtype and values.tobytes() == plain.tobytes()
    if kind == "neural":
        xr.testing.assert_identical(read_assembly(path).drop_attrs(),
                                    make_assembly().drop_attrs())
    if kind == "stimuli":
        expected = make_stimulus_sets(**STIMULUS_SETTINGS)["probe"]["image"].values
        assert values.tobytes() == expected.tobytes()


# ---- sealed stores: every damage is one error ------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_deleted_chunk_is_named_on_open(written, kind, tmp_path):
    path = copy(written, kind, tmp_path)
    key = first_chunk(path, kind)
    (path / key).unlink()
    with pytest.raises(CorruptStoreError, match=named(path, key, "is missing")):
        read(kind, path)


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_chunk_is_named_on_open(written, kind, tmp_path):
    path = copy(written, kind, tmp_path)
    key = first_chunk(path, kind)
    truncate(path / key)
    with pytest.raises(CorruptStoreError, match=named(path, key, "has .*truncated")):
        read(kind, path)


@pytest.mark.parametrize("kind", KINDS)
def test_bit_flipped_chunk_is_named_when_read(written, kind, tmp_path):
    path = copy(written, kind, tmp_path)
    key = first_chunk(path, kind)
    flip_bit(path / key)
    read_zarr(path)                                 # sizes match: opening is cheap and passes
    with pytest.raises(CorruptStoreError, match=named(path, key, "is corrupt: its crc32c")):
        read(kind, path)


def test_bit_flipped_activations_are_caught_in_lazy_reads(written, tmp_path):
    """predictivity reads the activation store lazily (read_zarr, then dask): still checked."""
    path = copy(written, "activations", tmp_path)
    key = first_chunk(path, "activations")
    flip_bit(path / key)
    with pytest.raises(CorruptStoreError, match=named(path, key, "is corrupt")):
        read_zarr(path)["area1"].sum().compute()


def test_deleted_coordinate_chunk_is_named(written, tmp_path):
    path = copy(written, "neural", tmp_path)
    (path / "stimulus_id" / "0").unlink()
    with pytest.raises(CorruptStoreError, match=named(path, "stimulus_id/0", "is missing")):
        read_assembly(path)


def test_bit_flipped_metadata_is_named(written, tmp_path):
    path = copy(written, "stimuli", tmp_path)
    flip_bit(path / ".zmetadata")
    with pytest.raises(CorruptStoreError,
                       match=f"^{re.escape(str(path))}: metadata file '.zmetadata' is corrupt"):
        read_stimuli(path)


def test_unreadable_manifest_is_named(written, tmp_path):
    path = copy(written, "neural", tmp_path)
    (path / MANIFEST).write_text('{"files": ')
    with pytest.raises(CorruptStoreError, match=f"^{re.escape(str(path / MANIFEST))}: not a "
                       f"readable integrity manifest.*{re.escape(REBUILD)} {re.escape(str(path))}"):
        read_assembly(path)


def test_damaged_stimulus_store_fails_the_content_key(written, tmp_path):
    """The key reads the set's sha256 from attrs; a damaged set no longer passes as unchanged."""
    path = copy(written, "stimuli", tmp_path)
    key = first_chunk(path, "stimuli")
    (path / key).unlink()
    with pytest.raises(CorruptStoreError, match=named(path, key, "is missing")):
        content_key(written["checkpoints"], path)


def test_damaged_activation_store_is_recomputed_by_extract(written, tmp_path, caplog):
    """extract treats a damaged store like a stale one: it rewrites it (and seals it again)."""
    path = copy(written, "activations", tmp_path)
    clean = read_layer(path, "area1").values
    (path / first_chunk(path, "activations")).unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.activations"):
        extract(written["checkpoints"], written["stimuli"], path, device="cpu")
    assert "recomputing" in caplog.text and "is missing" in caplog.text
    assert (path / MANIFEST).is_file()
    assert read_layer(path, "area1").values.tobytes() == clean.tobytes()


# ---- stores without a manifest (written before this check) ----------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_store_without_manifest_reads_with_a_warning(written, kind, tmp_path, caplog):
    path = copy(written, kind, tmp_path)
    (path / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        values = read(kind, path)
    assert values.tobytes() == read(kind, written[kind]).tobytes()
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.io"] == [
        f"{path}: no integrity manifest (written before manifests, or manifest.json was "
        f"deleted), so its files cannot be checked; rebuild it with `{REBUILD} {path}` "
        "(reruns the rule that makes it) to add one"]


FILL = {"neural": np.nan, "stimuli": 0, "activations": np.nan}


@pytest.mark.parametrize("kind", KINDS)
def test_store_without_manifest_and_a_deleted_chunk_warns_and_reads_the_fill_value(
        written, kind, tmp_path, caplog):
    """Documented: without a manifest, an absent chunk may be a chunk zarr skipped because it
    held only the fill value, so it is not an error; the warning names it (from the chunk grid
    in the metadata) and it reads as the fill value."""
    path = copy(written, kind, tmp_path)
    key = first_chunk(path, kind)
    (path / MANIFEST).unlink()
    (path / key).unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        values = read(kind, path)
    message = caplog.records[0].getMessage()
    assert message.startswith(f"{path}: no integrity manifest") and f"(first: {key})" in message
    clean = read(kind, written[kind])
    changed = values != clean if kind == "stimuli" else np.isnan(values) & ~np.isnan(clean)
    assert changed.any()
    fill = values[changed]
    assert (fill == 0).all() if kind == "stimuli" else np.isnan(fill).all()


@pytest.mark.parametrize("kind", ["neural", "stimuli"])
def test_store_without_manifest_and_an_emptied_chunk_names_the_array(
        written, kind, tmp_path):
    """Documented: without a manifest only what the codec itself detects is caught, here an
    emptied chunk (blosc error); a chunk cut inside a block blosc stored uncompressed can
    decode without error, which only the manifest catches."""
    path = copy(written, kind, tmp_path)
    key = first_chunk(path, kind)
    (path / MANIFEST).unlink()
    (path / key).write_bytes(b"")
    with pytest.raises(CorruptStoreError, match=f"^{re.escape(str(path))}: array '{ARRAY[kind]}' "
                       f"cannot be decoded .*{re.escape(REBUILD)} {re.escape(str(path))}"):
        read(kind, path)
