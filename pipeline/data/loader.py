"""Training and evaluation batches through `torch.utils.data`: in memory or streamed from disk.

A stimulus set small enough (`LoaderSettings.memory_mb`) is held in memory, on the training
device, as it always was. A larger one is streamed: its images are copied once into a shard
store (`pipeline.data.shards`, raw uint8 read by offset) and each batch is read from it by
DataLoader worker processes, pinned when training on a GPU and moved with non-blocking
copies, so memory stays flat as the set grows.

Batches are index sets drawn in the main process: an epoch's order is one permutation from the
run's data-order generator, cut into consecutive batches (`EpochBatches`); workers only read
the images of the indices they are handed, and the loader returns batches in order. The
batches, and so the trained weights, are therefore the same for any number of workers, in
memory or streamed, and an epoch can restart at any batch (a resumed run).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import dask
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.data.shards import ShardStore, open_or_build, stimulus_key
from pipeline.data.stimuli import stimulus_sha256

log = logging.getLogger(__name__)

__all__ = ["EpochBatches", "LoaderSettings", "StreamedImages", "StreamedSplit", "batch_loader", "images_per_read",
           "read_images", "stream_images"]

# Image bytes per read when a Zarr set is copied into a shard store or scanned for its channel
# statistics: a bound in bytes, not in images, so the reader's memory does not grow with the set.
READ_BYTES = 1 << 20


def images_per_read(image) -> int:
    """How many images of `image` (stimulus, ...) one read of `READ_BYTES` holds (at least 1)."""
    per_image = image.dtype.itemsize * int(np.prod(image.shape[1:]))
    return max(1, READ_BYTES // max(1, per_image))


def read_images(image, start: int, stop: int) -> np.ndarray:
    """Images start:stop of a (lazily opened) set, read in the calling thread: dask's thread
    pool keeps memory per worker thread, which grew the peak with the number of reads."""
    with dask.config.set(scheduler="synchronous"):
        return np.asarray(image[start:stop])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LoaderSettings:
    """How training reads its images (config `models.train.loader`): execution only, never
    what is computed, so editing it retrains nothing.

    Attributes
    ----------
    workers : int
        DataLoader worker processes reading streamed batches (0: the training process reads).
    prefetch : int
        Batches each worker reads ahead.
    pin_memory : bool or None
        Page-locked batches for non-blocking copies to the GPU; None: on when training on CUDA.
    persistent_workers : bool
        Keep the workers alive between epochs (no start-up cost per epoch).
    memory_mb : number
        A stimulus set of at most this many MB of uint8 is held in memory (on the training
        device); a larger one is streamed from a shard store.
    shards : str or None
        Folder of the shard stores; None: $PIPELINE_SHARD_CACHE, else results/cache/shards.
    """

    workers: int = 0
    prefetch: int = 2
    pin_memory: bool | None = None
    persistent_workers: bool = True
    memory_mb: float = 2048
    shards: str | None = None

    @classmethod
    def from_dict(cls, block: dict | None) -> LoaderSettings:
        """Settings from the config block; unknown keys raise ValueError naming them."""
        block = dict(block or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise ValueError(f"models.train.loader has unknown key(s) {unknown}; known keys: "
                             f"{', '.join(known)}")
        return cls(**block)

    def __post_init__(self):
        def need(name, ok, expected):
            if not ok:
                raise ValueError(f"models.train.loader.{name} must be {expected}; got "
                                 f"{getattr(self, name)!r}")

        need("workers", _is_int(self.workers) and self.workers >= 0, "an int ≥ 0")
        need("prefetch", _is_int(self.prefetch) and self.prefetch >= 1, "an int ≥ 1")
        need("pin_memory", self.pin_memory in (None, True, False), "true, false or null")
        need("persistent_workers", isinstance(self.persistent_workers, bool), "true or false")
        need("memory_mb", isinstance(self.memory_mb, (int, float))
             and not isinstance(self.memory_mb, bool) and math.isfinite(self.memory_mb)
             and self.memory_mb >= 0, "a number ≥ 0")
        need("shards", self.shards is None or isinstance(self.shards, str), "a path or null")


class StreamedImages:
    """uint8 images (stimulus, channel, y, x) of a shard store, indexed like a tensor on the CPU
    (`images[index]` reads those images), with `len` and `shape`."""

    device = torch.device("cpu")

    def __init__(self, store: ShardStore):
        self.store = store
        self.shape = torch.Size(store.shape)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return torch.from_numpy(self.store[index])


def stream_images(ds: xr.Dataset, path, shards=None) -> StreamedImages:
    """A stimulus set's images from its shard store, built from the Zarr set on first use
    (chunk by chunk: memory stays bounded); keyed by the set's sha256."""
    image = ds["image"]
    n, size_y, size_x, channels = image.shape
    sha = stimulus_sha256(ds)

    def chunks():
        step = images_per_read(image)
        for start in range(0, n, step):
            yield read_images(image, start, start + step).transpose(0, 3, 1, 2)

    store = open_or_build(shards, stimulus_key(sha), (n, channels, size_y, size_x), chunks,
                          {"stimulus_set": str(path), "sha256": sha})
    return StreamedImages(store)


class _Batches(Dataset):
    """Map one batch of indices to (index, images, labels): what a worker reads."""

    def __init__(self, images, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor):
        return index, self.images[index], self.labels[index]


class EpochBatches(Sampler):
    """Consecutive `batch_size` slices of an epoch's order, from batch `start` on.

    `set_epoch` hands it the next order; the sampler runs in the main process, so persistent
    workers see each epoch's batches.
    """

    def __init__(self, batch_size: int, order: torch.Tensor | None = None, start: int = 0):
        self.batch_size = batch_size
        self.set_epoch(torch.arange(0) if order is None else order, start)

    def set_epoch(self, order: torch.Tensor, start: int = 0) -> None:
        self.order, self.start = order, start

    def __len__(self) -> int:
        return max(0, -(-len(self.order) // self.batch_size) - self.start)

    def __iter__(self):
        for begin in range(self.start * self.batch_size, len(self.order), self.batch_size):
            yield self.order[begin:begin + self.batch_size]


def batch_loader(images, labels: torch.Tensor, sampler: Sampler, settings: LoaderSettings,
                 device: torch.device) -> DataLoader:
    """A DataLoader of (index, images, labels) batches in `sampler`'s order.

    Streamed images are read by `settings.workers` processes (pinned on CUDA unless
    `pin_memory` is false); images already in memory are indexed in the training process.
    """
    streamed = isinstance(images, StreamedImages)
    workers = settings.workers if streamed else 0
    pin = streamed and device.type == "cuda" and settings.pin_memory is not False
    return DataLoader(_Batches(images, labels), sampler=sampler, batch_size=None,
                      num_workers=workers, pin_memory=pin,
                      prefetch_factor=settings.prefetch if workers else None,
                      persistent_workers=settings.persistent_workers and workers > 0)


@dataclass
class StreamedSplit:
    """A stimulus split streamed from a shard store; the attributes of
    `pipeline.objectives.Split`, whose objectives read it the same way.

    Attributes
    ----------
    images : StreamedImages
    labels : torch.Tensor
        Class indices (stimulus,) on the CPU.
    preprocessing : dict
    batch_size : int
    is_train : bool
    device : torch.device
        Where `batches` puts the images and labels.
    settings : LoaderSettings
    """

    images: StreamedImages
    labels: torch.Tensor
    preprocessing: dict
    batch_size: int
    is_train: bool
    device: torch.device
    settings: LoaderSettings

    def __post_init__(self):
        self._sequential = batch_loader(
            self.images, self.labels,
            EpochBatches(self.batch_size, torch.arange(len(self.images))), self.settings,
            self.device)

    def batches(self):
        """(index, images, labels) of consecutive batches, index on the CPU, the others on
        `device` (non-blocking copies from pinned memory on CUDA)."""
        for index, images, labels in self._sequential:
            yield (index, images.to(self.device, non_blocking=True),
                   labels.to(self.device, non_blocking=True))
