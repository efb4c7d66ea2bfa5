"""Shard stores: images decoded and resized once, kept as raw uint8 on disk, read by offset.

Training at scale reads random batches from sets too large for memory (ImageNet at 64 px is
15.7 GB of uint8). A compressed Zarr set cannot serve them (a random batch touches one chunk
per image), and decoding JPEGs every epoch costs more than the forward pass at 64 px. A shard
store is a folder `<cache>/<key>/` with

- `images.u8`: N images (channel, y, x) uint8 back to back, the layout the networks read;
- `meta.json`: the key, N, the image shape and what the store was made from.

Images are read with `os.pread`, never memory-mapped, so their pages sit in the OS page cache
and not in the reading process's resident memory: a training job's memory stays flat however
large the set. The key is a content hash of the source (`folder_key`: names, sizes and mtimes
of the image files plus the resize; `stimulus_key`: the stimulus set's sha256), so an edited
file or another size gives a new store and an unchanged source reuses the old one. A store is
written under a temporary name and renamed into place when complete; a store whose file
size disagrees with its meta.json (truncated, partly copied) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CACHE", "ShardStore", "build_shards", "cache_dir", "folder_key",
           "open_or_build", "stimulus_key"]

# Where stores go unless a caller names a folder: beside the pipeline's other results, or
# $PIPELINE_SHARD_CACHE (a fast local or scratch disk on a cluster).
DEFAULT_CACHE = Path("results") / "cache" / "shards"
IMAGES, META = "images.u8", "meta.json"
# Bumped when the bytes a key stands for change (decoding, resizing or layout).
LAYOUT = "uint8 (image, channel, y, x); v1"


def cache_dir(path=None) -> Path:
    """The shard cache folder: `path`, else $PIPELINE_SHARD_CACHE, else results/cache/shards."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("PIPELINE_SHARD_CACHE", DEFAULT_CACHE))


def _digest(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def folder_key(root, files, size: int, resize: str) -> str:
    """Content key of images read from an image folder: every file's path relative to `root`,
    size in bytes and mtime (ns), in order, plus the output side and the resize method.

    A changed, added, removed or reordered file, or another size, gives another key.
    """
    root = Path(root)
    lines = [LAYOUT, f"folder size={size} resize={resize}"]
    for file in files:
        stat = Path(file).stat()
        lines.append(f"{Path(file).relative_to(root).as_posix()}\t{stat.st_size}\t"
                     f"{stat.st_mtime_ns}")
    return _digest(lines)


def stimulus_key(sha256: str) -> str:
    """Content key of a stimulus set's images, from the set's own sha256."""
    return _digest([LAYOUT, f"stimulus_set sha256={sha256}"])


class ShardStore:
    """A finished shard store, read by offset (`read`, `__getitem__`).

    Picklable without its open file, so DataLoader workers each open their own.

    Attributes
    ----------
    path : Path
    shape : tuple
        (image, channel, y, x).
    meta : dict
        The store's meta.json.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / META).read_text())
            self.shape = tuple(int(n) for n in self.meta["shape"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path}: not a shard store ({META} unreadable: {err})") from err
        self.item_bytes = int(np.prod(self.shape[1:]))
        expected = self.shape[0] * self.item_bytes
        found = (self.path / IMAGES).stat().st_size if (self.path / IMAGES).exists() else -1
        if found != expected:
            raise ValueError(f"{self.path / IMAGES}: {found} bytes, expected {expected} "
                             f"({self.shape[0]} images of {self.shape[1:]} uint8); truncated or "
                             f"partly copied")
        self._fd = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path / IMAGES, os.O_RDONLY)
        return self._fd

    def read(self, index) -> np.ndarray:
        """Images `index` (ints, any order, repeats allowed) as uint8 (len(index), channel, y, x).

        Runs of consecutive indices are read with one call each, so a sequential batch costs
        one read.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"{self.path}: index out of range 0…{len(self) - 1}")
        out = np.empty((index.size, *self.shape[1:]), dtype=np.uint8)
        if not index.size:
            return out
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        starts = np.flatnonzero(np.diff(ordered, prepend=ordered[0] - 2) != 1)
        ends = np.append(starts[1:], index.size)
        flat = out.reshape(index.size, -1)
        for start, end in zip(starts.tolist(), ends.tolist()):
            first, count = int(ordered[start]), end - start
            data = os.pread(self._file(), count * self.item_bytes, first * self.item_bytes)
            if len(data) != count * self.item_bytes:
                raise OSError(f"{self.path / IMAGES}: short read at image {first} (file changed "
                              f"while in use)")
            flat[order[start:end]] = np.frombuffer(data, dtype=np.uint8).reshape(count, -1)
        return out

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        return self.read(index)


def build_shards(path, shape, chunks: Iterable[np.ndarray], source: dict) -> ShardStore:
    """Write a shard store at `path` from `chunks` of uint8 (n, channel, y, x), atomically.

    Written into a temporary sibling and renamed into place when every image is in; if
    another process finished the same store first, its store is kept and ours discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        written = 0
        with open(tmp / IMAGES, "wb") as file:
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=np.uint8)
                if chunk.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"{path}: chunk of shape {chunk.shape[1:]}, expected "
                                     f"{tuple(shape[1:])}")
                file.write(chunk.tobytes())
                written += len(chunk)
            file.flush()
            os.fsync(file.fileno())
        if written != shape[0]:
            raise ValueError(f"{path}: {written} images written, expected {shape[0]}")
        (tmp / META).write_text(json.dumps({"key": path.name, "shape": list(shape),
                                            "layout": LAYOUT, "source": source},
                                           indent=1, sort_keys=True))
        try:
            os.rename(tmp, path)
        except OSError:                              # another job finished it first
            if not (path / META).exists():
                raise
            log.info("%s was written by another process meanwhile; using it", path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ShardStore(path)


def open_or_build(cache, key: str, shape, chunks_fn, source: dict) -> ShardStore:
    """The store `<cache>/<key>`: reused when complete, else (re)built from `chunks_fn()`.

    A store left incomplete or damaged (size differs from its meta.json) is removed, with a
    warning, and rebuilt.
    """
    path = cache_dir(cache) / key
    if path.exists():
        try:
            store = ShardStore(path)
            if store.shape == tuple(shape):
                log.info("shard store %s reused (%d images)", path, len(store))
                return store
            problem = f"shape {store.shape}, expected {tuple(shape)}"
        except (ValueError, OSError) as err:
            problem = str(err)
        log.warning("shard store %s is unusable (%s); rebuilding it", path, problem)
        shutil.rmtree(path, ignore_errors=True)
    log.info("building shard store %s: %d images of %s", path, shape[0], tuple(shape[1:]))
    return build_shards(path, shape, chunks_fn(), source)
