"""Atomic output writing and the Zarr/Parquet I/O every stage shares.

Every file or store is written under a temporary name in the destination folder and renamed
into place only when complete, so an interrupted job never leaves a store a rerun would trust.
A Zarr store is sealed before that rename with `manifest.json` (size and crc32c of each of its
files, `seal_store`); `read_zarr` checks the sizes on open and each file's checksum as it is read,
so a missing, truncated or changed chunk raises `CorruptStoreError` instead of reading as the
fill value or as wrong numbers.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import uuid
import zlib
from pathlib import Path

import google_crc32c
import numpy as np
import pandas as pd
import xarray as xr
from zarr.storage import LocalStore, WrapperStore

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling of `path`; rename it onto `path` if the block succeeds.

    Works for files and for directory stores (Zarr). On error the temporary is removed and
    any previous `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporaries `atomic_path` left beside `path` when a writer was killed.

    Every `.<name>.tmp-*` sibling of `path` is removed (logged); call it only where no other
    process writes `path` at the same time (one Snakemake job per output). Returns the paths
    removed.
    """
    path = Path(path)
    removed = sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp-*"))
    for tmp in removed:
        log.warning("removing %s, a temporary left by an interrupted write of %s", tmp, path)
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return removed


def write_zarr(obj: xr.DataArray | xr.Dataset, path, *, name: str | None = None) -> None:
    """Write a DataArray (stored as variable `name`, default its own name) or Dataset to Zarr atomically.

    The store is sealed (`seal_store`) before it is renamed into place, so `read_zarr` can
    check it.
    """
    if isinstance(obj, xr.DataArray):
        attrs = obj.attrs
        obj = obj.to_dataset(name=name or obj.name or "data")
        obj.attrs = attrs
    obj = obj.copy()
    # Zarr attrs must be JSON; store nested provenance as JSON strings.
    obj.attrs = {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v)
                 for k, v in obj.attrs.items()}
    with atomic_path(path) as tmp:
        obj.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        seal_store(tmp)


def read_zarr(path) -> xr.Dataset:
    """Open a Zarr store written by `write_zarr` (or sealed by `seal_store`), lazily.

    A sealed store is checked on open: every file its manifest lists must exist with its
    recorded size (one stat per file, nothing read). Each file is then checked against its
    recorded checksum when it is read, so a changed chunk raises instead of decoding to wrong
    values. A store without a manifest (written before manifests existed) is read with a
    logged warning.

    Raises
    ------
    FileNotFoundError
        No store at `path`.
    CorruptStoreError
        A file of the store is missing, truncated or changed, or its metadata cannot be
        decoded; the message names the store, the array and chunk, and the command that
        rebuilds the store.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    manifest = check_store(path)
    store = path
    if manifest is not None:
        store = _VerifiedStore(LocalStore(path, read_only=True), *manifest, path)
    with _undecodable(path, "not a readable Zarr store; its metadata or coordinate arrays cannot be "
                            "read or decoded"):
        return xr.open_zarr(store, consolidated=True)


def load_zarr(path) -> xr.Dataset:
    """`read_zarr`, then every variable loaded into memory.

    A chunk that cannot be decoded (a blosc/zstd error of a store without a manifest, whose
    files cannot be checked before decoding) raises CorruptStoreError naming the store and
    the array.
    """
    ds = read_zarr(path)
    for name, variable in ds.variables.items():
        with _undecodable(path, f"array {name!r} cannot be decoded"):
            variable.load()
    return ds


@contextlib.contextmanager
def _undecodable(path, what: str):
    """Re-raise a codec or metadata error as CorruptStoreError naming the store and `what`."""
    try:
        yield
    except CorruptStoreError:
        raise
    except DECODE_ERRORS as err:
        raise CorruptStoreError(f"{path}: {what} ({type(err).__name__}: {err}); the store is "
                                f"corrupt; {rebuild_hint(path)}") from err


# ---- Zarr store integrity -------------------------------------------------------------------
#
# A sealed store holds `manifest.json` at its root: the size and checksum of every other file
# (metadata and chunks), written last, before the store is renamed into place. Zarr does not
# write a chunk that holds only the fill value, so a chunk absent from the manifest is a chunk
# that was never written and legitimately reads as the fill value; a file the manifest lists
# and the store lacks is damage.

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pipeline-zarr-manifest/1"
_SLICE = 1 << 18                # bytes: fits a core's L2 cache


def _crc32c(data, value: int = 0) -> int:
    """crc32c (Castagnoli) of a bytes-like object, continuing from `value` (zlib.crc32's
    signature). google-crc32c's C code takes only `bytes`, so other buffers are copied to it a
    cache-sized slice at a time: the copy and the hardware crc32c together run about 2.5× faster
    than zlib's crc32 (benchmarks/README.md)."""
    if isinstance(data, bytes):
        return google_crc32c.extend(value, data)
    view = memoryview(data).cast("B")
    for begin in range(0, len(view), _SLICE):
        value = google_crc32c.extend(value, bytes(view[begin:begin + _SLICE]))
    return value


# The manifest names its checksum; stores sealed before crc32c stay readable with crc32. New
# stores use crc32c where google-crc32c has its C code (a pure-Python fallback would be slow).
CHECKSUMS = {"crc32": zlib.crc32, "crc32c": _crc32c}
CHECKSUM = "crc32c" if google_crc32c.implementation == "c" else "crc32"


class CorruptStoreError(OSError):
    """A Zarr store whose files are missing, truncated or changed since it was written."""


# What a damaged chunk raises inside zarr/numcodecs: blosc and zstd raise RuntimeError, a
# chunk that decompresses to the wrong length ValueError (reshape).
DECODE_ERRORS = (RuntimeError, ValueError, CorruptStoreError)


def rebuild_hint(path) -> str:
    """The sentence that tells how to rebuild the output at `path`."""
    return (f"rebuild it with `snakemake --cores all --force {path}` "
            "(reruns the rule that makes it)")


def _describe(key: str) -> str:
    array, _, name = key.rpartition("/")
    if name.startswith(".") or not array:
        return f"metadata file {key!r}"
    return f"array {array!r} chunk {name!r}"


def _store_files(path: Path):
    """(key, file) of every file of the store at `path` but its manifest, in key order."""
    for file in sorted(path.rglob("*")):
        key = file.relative_to(path).as_posix()
        if file.is_file() and key != MANIFEST and not key.startswith(f".{MANIFEST}"):
            yield key, file


def seal_store(path, written: dict[str, tuple[int, int]] | None = None) -> None:
    """Record the size and checksum (`CHECKSUM`) of every file of a completely written Zarr
    store.

    Writes `<path>/manifest.json` atomically; call it when nothing more will be written, before
    the store is renamed into place. `read_zarr` then checks the store on open and every file
    as it is read.

    Parameters
    ----------
    path : path-like
        The store.
    written : dict, optional
        {key: (size, checksum)} of files the caller wrote itself and checksummed as it wrote
        them (`write_chunk`); a file whose size on disk matches its record is not read
        again. Every other file is read and checksummed here.
    """
    path = Path(path)
    written = written or {}
    checksum = CHECKSUMS[CHECKSUM]
    files = {}
    for key, file in _store_files(path):
        record = written.get(key)
        if record is not None and file.stat().st_size == record[0]:
            files[key] = list(record)
            continue
        data = file.read_bytes()
        files[key] = [len(data), checksum(data)]
    manifest = {"format": MANIFEST_FORMAT, "checksum": CHECKSUM, "files": files}
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    os.replace(tmp, path / MANIFEST)


def write_chunk(path, array, index: tuple[int, ...], parts) -> tuple[str, int, int]:
    """Write one whole chunk of an uncompressed Zarr v2 array straight to its file.

    Zarr's own write path costs several passes over the data (fill-value check, copies,
    encoding) where an uncompressed chunk is only its bytes: here they go from the caller's
    arrays to the file in one write each, and their checksum (`CHECKSUM`) is taken from the same
    memory, so `seal_store` need not read the file back.

    Parameters
    ----------
    path : path-like
        The store's root.
    array : zarr.Array
        The array, opened from the store at `path`: Zarr format 2, no compressor or filters,
        C order.
    index : tuple of int
        The chunk's position in the chunk grid.
    parts : sequence of numpy.ndarray
        C-contiguous arrays of the array's dtype whose bytes, in order, are the chunk's
        (a partial edge chunk padded with the fill value by the caller).

    Returns
    -------
    tuple
        (key, size, checksum) of the file, for `seal_store(path, written)`.
    """
    meta = array.metadata
    if (meta.zarr_format != 2 or meta.compressor is not None or meta.filters
            or meta.order != "C"):
        raise ValueError(f"{path}/{array.path}: write_chunk needs an uncompressed Zarr v2 array "
                         f"in C order without filters; found format {meta.zarr_format}, "
                         f"compressor {meta.compressor!r}, filters {meta.filters!r}, "
                         f"order {meta.order!r}")
    dtype = array.dtype
    expected = int(np.prod(array.chunks)) * dtype.itemsize
    size = sum(part.nbytes for part in parts)
    if size != expected or any(part.dtype != dtype or not part.flags.c_contiguous
                               for part in parts):
        raise ValueError(f"{path}/{array.path}: chunk {index} needs {expected} bytes of "
                         f"C-contiguous {dtype}; got {size} bytes of "
                         f"{[(part.dtype.str, part.flags.c_contiguous) for part in parts]}")
    key = f"{array.path}/{meta.encode_chunk_key(index)}"
    target = Path(path) / key
    target.parent.mkdir(parents=True, exist_ok=True)    # "/"-separated chunk keys nest
    checksum, crc = CHECKSUMS[CHECKSUM], 0
    with open(target, "wb", buffering=0) as file:
        for part in parts:
            view = memoryview(part).cast("B")
            # a slice at a time, checksummed first, so the write copies it from cache
            for begin in range(0, len(view), _SLICE):
                piece = view[begin:begin + _SLICE]
                crc = checksum(piece, crc)
                while piece:
                    piece = piece[file.write(piece):]
    return key, size, crc


def _read_manifest(path: Path) -> tuple[str, dict] | None:
    """The manifest's checksum name and {key: (size, checksum)} table, or None for a store
    without one."""
    file = path / MANIFEST
    try:
        text = file.read_text()
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        checksum = manifest.get("checksum", "crc32")
        if checksum not in CHECKSUMS:
            raise ValueError(f"checksum {checksum!r}, expected one of {sorted(CHECKSUMS)}")
        return checksum, {key: (int(size), int(crc)) for key, (size, crc) in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptStoreError(
            f"{file}: not a readable integrity manifest (expected JSON with a 'files' table "
            f"of [size, checksum]; {type(err).__name__}: {err}); {rebuild_hint(path)}") from err


def check_store(path) -> tuple[str, dict] | None:
    """Check that every file the manifest of the store at `path` lists exists with its size.

    Returns the manifest's checksum name ("crc32c", or "crc32" for stores sealed before it) and
    {key: (size, checksum)} table, or None (after a logged warning) for a store without a
    manifest. Raises CorruptStoreError naming the first missing or truncated file.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    if manifest is None:
        _warn_unsealed(path)
        return None
    for key, (size, _) in manifest[1].items():
        try:
            found = (path / key).stat().st_size
        except FileNotFoundError as err:
            raise CorruptStoreError(
                f"{path}: {_describe(key)} is missing (the store's manifest lists it with "
                f"{size} bytes); {rebuild_hint(path)}") from err
        if found != size:
            raise CorruptStoreError(
                f"{path}: {_describe(key)} has {found} bytes, the store's manifest records "
                f"{size} (truncated or overwritten); {rebuild_hint(path)}")
    return manifest


def _absent_grid_chunks(path: Path) -> list[str]:
    """Keys of the chunks of every array's chunk grid (from .zmetadata) that have no file."""
    try:
        metadata = json.loads((path / ".zmetadata").read_text())["metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    absent = []
    for key, array in sorted(metadata.items()):
        if not key.endswith(".zarray"):
            continue
        prefix = key[:-len(".zarray")]
        separator = array.get("dimension_separator") or "."
        grid = [range(-(-size // chunk)) for size, chunk in zip(array["shape"], array["chunks"])]
        for index in itertools.product(*grid):
            chunk = prefix + (separator.join(map(str, index)) or "0")
            if not (path / chunk).is_file():
                absent.append(chunk)
    return absent


_warned_unsealed: set[str] = set()


def _warn_unsealed(path: Path) -> None:
    """Warn (once per store and process) that a store has no manifest, naming absent chunks."""
    if str(path.resolve()) in _warned_unsealed:
        return
    _warned_unsealed.add(str(path.resolve()))
    absent = _absent_grid_chunks(path)
    if absent:
        log.warning(
            "%s: no integrity manifest (written before manifests, or manifest.json was "
            "deleted), and %d chunk(s) of its arrays' chunk grids have no file (first: %s); "
            "they read as the array's fill value (NaN for float, 0 for integer), which is right "
            "only if the writer skipped an all-fill chunk; if not, %s", path, len(absent),
            absent[0], rebuild_hint(path))
    else:
        log.warning(
            "%s: no integrity manifest (written before manifests, or manifest.json was "
            "deleted), so its files cannot be checked; %s to add one", path, rebuild_hint(path))


class _VerifiedStore(WrapperStore):
    """A read-only store that checks each whole file it reads against the store's manifest."""

    def __init__(self, store, checksum, files, path):
        super().__init__(store)
        self._checksum, self._files, self._path = checksum, files, path

    def _with_store(self, store):
        return type(self)(store, self._checksum, self._files, self._path)

    async def get(self, key, prototype, byte_range=None):
        buffer = await self._store.get(key, prototype, byte_range)
        if byte_range is None and key in self._files:
            self._verify(key, buffer)
        return buffer

    async def _get_many(self, requests):
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    def _verify(self, key, buffer) -> None:
        size, crc = self._files[key]
        hint = rebuild_hint(self._path)
        if buffer is None:
            raise CorruptStoreError(
                f"{self._path}: {_describe(key)} is missing (the store's manifest lists it "
                f"with {size} bytes); {hint}")
        data = buffer.as_numpy_array()
        if data.nbytes != size:
            raise CorruptStoreError(
                f"{self._path}: {_describe(key)} has {data.nbytes} bytes, the store's "
                f"manifest records {size} (truncated or overwritten); {hint}")
        found = CHECKSUMS[self._checksum](data)
        if found != crc:
            raise CorruptStoreError(
                f"{self._path}: {_describe(key)} is corrupt: its {self._checksum} is "
                f"{found:08x}, the store's manifest records {crc:08x}; {hint}")


def write_parquet(df: pd.DataFrame, path) -> None:
    """Write a tidy table to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df: pd.DataFrame, path) -> None:
    """Write a table to CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj, path) -> None:
    """Write JSON atomically (sorted keys, so equal content gives equal bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))


class _HashingWriter(io.RawIOBase):
    """A write-only file that feeds every byte written through it to a sha256 and to the
    fast checksum (`CHECKSUM`)."""

    def __init__(self, file):
        super().__init__()
        self._file = file
        self.sha256 = hashlib.sha256()
        self.checksum = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.checksum = CHECKSUMS[CHECKSUM](data, self.checksum)
        return self._file.write(data)


def digest_sidecar(path) -> Path:
    """Where `save_torch` records a file's digests: `<path>.sha256`."""
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


def save_torch(obj, path) -> None:
    """`torch.save` atomically, recording the file's digests as it is written.

    `<path>.sha256` holds the file's sha256 (its identity, e.g. in content keys), its size,
    mtime and its fast checksum under the checksum's name (`"crc32c": int`), so a reader can
    check the bytes at the checksum's speed (several times sha256's) and take the recorded
    sha256.
    """
    import torch

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _HashingWriter(file)
        torch.save(obj, writer)
    stat = path.stat()
    write_json({"sha256": writer.sha256.hexdigest(), CHECKSUM: writer.checksum,
                "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, digest_sidecar(path))


def file_checksum(path, name: str = CHECKSUM) -> int:
    """Checksum `name` (a key of `CHECKSUMS`) of a file's bytes, read a MiB at a time."""
    checksum, value = CHECKSUMS[name], 0
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            value = checksum(block, value)
    return value
