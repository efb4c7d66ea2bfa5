"""Atomic output writing and the Zarr/Parquet I/O every stage shares.

Every file or store is written under a temporary name in the destination folder and renamed
into place only when complete, so an interrupted job never leaves a store a rerun would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import xarray as xr


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


def write_zarr(obj: xr.DataArray | xr.Dataset, path, *, name: str | None = None) -> None:
    """Write a DataArray (stored as variable `name`, default its own name) or Dataset to Zarr atomically."""
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


def read_zarr(path) -> xr.Dataset:
    """Open a Zarr store written by `write_zarr`; raises FileNotFoundError naming the path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    return xr.open_zarr(path, consolidated=True)


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
    """A write-only file that feeds every byte written through it to a sha256."""

    def __init__(self, file):
        super().__init__()
        self._file = file
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        return self._file.write(data)


def _digest_sidecar(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def save_torch(obj, path) -> None:
    """`torch.save` atomically, recording the file's sha256 as it is written.

    The digest goes to `<path>.sha256` with the file's size and mtime, so `file_sha256` can
    skip re-reading a large checkpoint that has not changed since.
    """
    import torch

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _HashingWriter(file)
        torch.save(obj, writer)
    stat = path.stat()
    write_json({"sha256": writer.sha256.hexdigest(), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}, _digest_sidecar(path))


def file_sha256(path) -> str:
    """sha256 of a file's bytes; taken from its `save_torch` record while the file's size and
    mtime still match it, else computed by reading the file."""
    path = Path(path)
    try:
        record = json.loads(_digest_sidecar(path).read_text())
        stat = path.stat()
        if (record["size"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass                                          # no usable record: read the file
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
