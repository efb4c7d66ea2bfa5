"""Atomic writes, file digests, and Zarr stores sealed with a manifest."""

import hashlib
import json
import os
import pickle
import zlib

import dask.array
import google_crc32c
import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from numcodecs import Blosc

from pipeline.io import (CHECKSUM, CHECKSUMS, MANIFEST, CorruptStoreError, file_checksum,
                         load_zarr, read_zarr, save_torch, seal_store, write_chunk, write_zarr)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_torch_records_the_digests_of_the_bytes_written(tmp_path):
    path = tmp_path / "epoch_001.pt"
    save_torch({"w": torch.arange(10.0), "big": torch.rand(300_000), "epoch": 1}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    record = json.loads((tmp_path / "epoch_001.pt.sha256").read_text())
    data = path.read_bytes()
    assert record["sha256"] == sha256_of(path) and record["size"] == len(data)
    assert record[CHECKSUM] == file_checksum(path) == CHECKSUMS[CHECKSUM](data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporaries


@pytest.mark.parametrize("name", sorted(CHECKSUMS))
def test_file_checksum_matches_the_reference_over_blocks(tmp_path, name):
    """Read a MiB at a time, continued across blocks: equal to zlib / google-crc32c at once."""
    path = tmp_path / "f.bin"
    data = os.urandom(3 * (1 << 20) + 12345)
    path.write_bytes(data)
    reference = {"crc32": zlib.crc32, "crc32c": google_crc32c.value}[name]
    assert file_checksum(path, name) == reference(data)


# ---- Zarr stores ----------------------------------------------------------------------------

def small_dataset(seed=0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset({"a": (("x", "y"), rng.normal(size=(30, 4)).astype(np.float32)),
                     "b": (("x",), rng.integers(0, 255, 30, dtype=np.uint8))},
                    coords={"x": np.arange(30), "name": ("x", [f"s{i}" for i in range(30)])},
                    attrs={"note": "x", "nested": {"k": [1, 2]}})
    ds["a"].encoding["chunks"] = (10, 4)
    return ds


def store_files(path):
    return {f.relative_to(path).as_posix(): f.read_bytes()
            for f in sorted(path.rglob("*")) if f.is_file() and f.name != MANIFEST}


def crc32c(data: bytes) -> int:
    """google-crc32c's own one-call checksum of the whole file, beside ours in slices."""
    return int.from_bytes(google_crc32c.Checksum(data).digest(), "big")


def test_crc32c_matches_the_standard_check_value_and_the_library_across_slices():
    assert CHECKSUMS["crc32c"](b"123456789") == 0xE3069283      # RFC 3720 check value
    data = np.random.default_rng(0).integers(0, 255, 3 * (1 << 18) + 5, dtype=np.uint8)
    assert CHECKSUMS["crc32c"](data) == crc32c(data.tobytes())
    assert CHECKSUMS["crc32c"](data[7:], CHECKSUMS["crc32c"](data[:7])) == crc32c(data.tobytes())


def test_write_zarr_seals_the_store_with_size_and_crc32c_of_every_file(tmp_path):
    path = tmp_path / "s.zarr"
    write_zarr(small_dataset(), path)
    manifest = json.loads((path / MANIFEST).read_text())
    files = store_files(path)
    assert {"a/0.0", "a/2.0", ".zmetadata", "name/0"} <= set(files)
    assert manifest == {"format": "pipeline-zarr-manifest/1", "checksum": "crc32c",
                        "files": {key: [len(data), crc32c(data)]
                                  for key, data in files.items()}}
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]                 # no temporaries
    assert not list(path.glob(f".{MANIFEST}*"))


def test_sealed_store_holds_the_bytes_of_a_plain_write_and_reads_back_identical(tmp_path):
    """The manifest is added beside the data: every chunk and metadata file is unchanged."""
    ds = small_dataset()
    write_zarr(ds, tmp_path / "sealed.zarr")
    plain = ds.copy()
    plain.attrs = {"note": "x", "nested": json.dumps({"k": [1, 2]})}
    plain.to_zarr(tmp_path / "plain.zarr", mode="w", consolidated=True, zarr_format=2)
    assert store_files(tmp_path / "sealed.zarr") == store_files(tmp_path / "plain.zarr")
    back = load_zarr(tmp_path / "sealed.zarr")
    xr.testing.assert_identical(back, xr.open_zarr(tmp_path / "plain.zarr").load())
    for name in ("a", "b"):
        assert back[name].values.tobytes() == ds[name].values.tobytes()
        assert isinstance(back[name].variable._data, np.ndarray)              # loaded


def empty_store(path, compressors=None):
    """A (30, 4) float32 array `a` in chunks of (10, 4), metadata only; uncompressed by default."""
    ds = xr.Dataset({"a": (("x", "y"), dask.array.zeros((30, 4), chunks=(10, 4),
                                                        dtype=np.float32))})
    ds.to_zarr(path, mode="w", compute=False, consolidated=True, zarr_format=2,
               encoding={"a": {"compressors": compressors}})
    return zarr.open_group(path, mode="r+", zarr_format=2)["a"]


def test_write_chunk_writes_what_zarr_reads_and_the_crc32c_of_the_file(tmp_path):
    path = tmp_path / "s.zarr"
    array = empty_store(path)
    values = np.arange(120, dtype=np.float32).reshape(30, 4)
    written = {}
    for block in range(3):
        part = values[10 * block:10 * block + 10]
        halves = [part[:4], part[4:]]                  # a chunk may come in several parts
        key, size, crc = write_chunk(path, array, (block, 0), halves)
        data = (path / key).read_bytes()
        assert (key, size, crc) == (f"a/{block}.0", len(data), crc32c(data))
        written[key] = (size, crc)
    seal_store(path, written)
    assert read_zarr(path)["a"].values.tobytes() == values.tobytes()
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert files == {key: [len(data), crc32c(data)] for key, data in store_files(path).items()}


def test_seal_store_reads_a_file_whose_size_differs_from_its_record(tmp_path):
    path = tmp_path / "s.zarr"
    array = empty_store(path)
    key, size, crc = write_chunk(path, array, (0, 0), [np.ones((10, 4), np.float32)])
    (path / key).write_bytes(b"rewritten")
    seal_store(path, {key: (size, crc)})
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert files[key] == [9, crc32c(b"rewritten")]


def test_write_chunk_refuses_compressed_arrays_and_wrong_sizes(tmp_path):
    compressed = empty_store(tmp_path / "c.zarr", [Blosc()])
    with pytest.raises(ValueError, match="needs an uncompressed Zarr v2 array"):
        write_chunk(tmp_path / "c.zarr", compressed, (0, 0), [np.ones((10, 4), np.float32)])
    array = empty_store(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match=r"chunk \(0, 0\) needs 160 bytes of C-contiguous float32"):
        write_chunk(tmp_path / "s.zarr", array, (0, 0), [np.ones((9, 4), np.float32)])
    with pytest.raises(ValueError, match="C-contiguous"):
        write_chunk(tmp_path / "s.zarr", array, (0, 0), [np.ones((4, 10), np.float32).T])


def test_chunks_zarr_skips_as_all_fill_are_not_damage(tmp_path, caplog):
    ds = small_dataset()
    ds["a"][10:20] = np.nan                    # chunk 1.0 holds only the fill value: not written
    write_zarr(ds, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr" / "a" / "1.0").exists()
    with caplog.at_level("WARNING", logger="pipeline.io"):
        back = read_zarr(tmp_path / "s.zarr")["a"].values
    assert caplog.records == []
    assert back.tobytes() == ds["a"].values.tobytes()


def flip_last_bit(file):
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.write_bytes(bytes(data))


def test_stores_sealed_with_crc32_are_still_checked(tmp_path):
    """Stores sealed before crc32c name crc32 in their manifest; they read and are checked."""
    path = tmp_path / "s.zarr"
    write_zarr(small_dataset(), path)
    (path / MANIFEST).write_text(json.dumps({
        "format": "pipeline-zarr-manifest/1", "checksum": "crc32",
        "files": {key: [len(data), zlib.crc32(data)] for key, data in store_files(path).items()}}))
    assert load_zarr(path)["a"].values.tobytes() == small_dataset()["a"].values.tobytes()
    flip_last_bit(path / "a" / "0.0")
    with pytest.raises(CorruptStoreError, match="chunk '0.0' is corrupt: its crc32 is "):
        load_zarr(path)


def test_a_manifest_with_an_unknown_checksum_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    write_zarr(small_dataset(), path)
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "checksum": "md5"}))
    with pytest.raises(CorruptStoreError, match=r"checksum 'md5', expected one of \['crc32', "):
        read_zarr(path)


def test_a_read_store_pickles_with_its_checks(tmp_path):
    """Process and distributed schedulers pickle the lazy arrays; the checks travel along."""
    path = tmp_path / "s.zarr"
    write_zarr(small_dataset(), path)
    lazy = pickle.loads(pickle.dumps(read_zarr(path)["a"].data))
    assert lazy.compute().tobytes() == small_dataset()["a"].values.tobytes()
    flip_last_bit(path / "a" / "0.0")
    with pytest.raises(CorruptStoreError, match=f"^{path}: array 'a' chunk '0.0' is corrupt"):
        lazy.compute()


def test_read_zarr_names_a_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'none.zarr'}: no such Zarr store"):
        read_zarr(tmp_path / "none.zarr")
