"""Stimulus sets: procedural hierarchical object images (the default), scikit-learn's handwritten
digits (`name: digits`), or a user image folder (`path`).

Three label levels: 2 superordinate classes (curved, angular) × 4 basic classes (the outline)
× 4 subordinate classes (the surface pattern), 32 subordinate classes in all. Each image varies
pose (rotation, scale, position), colours and clutter (a smooth noisy background and distractor
blobs), so recognising the class needs some invariance but stays easy at 32 px. Rendering is
numpy only: signed distances on coordinate grids, vectorised over all images of one class.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from PIL import Image
from tqdm.auto import tqdm

from pipeline.data.shards import folder_key, open_or_build
from pipeline.io import load_zarr, read_zarr

if TYPE_CHECKING:     # torch is imported where tensors are made: reading stimuli needs none
    import torch

log = logging.getLogger(__name__)

# Basic classes under each superordinate class, and the subordinate patterns shared by all.
HIERARCHY = {
    "curved": ("disc", "ring", "crescent", "ellipse"),
    "angular": ("square", "triangle", "cross", "star"),
}
PATTERNS = ("plain", "striped", "checkered", "dotted")
SETS = ("train", "test", "probe")
PATTERN_PERIOD = 0.55  # pattern period in object units (object radius = 1)


def class_table() -> list[tuple[str, str, str]]:
    """All (superordinate, basic, subordinate) triples; subordinate names are unique paths."""
    return [(sup, basic, f"{sup}/{basic}/{pattern}")
            for sup, basics in HIERARCHY.items() for basic in basics for pattern in PATTERNS]


def _box(u, v, half_u, half_v):
    return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _shape_distance(basic: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, object units) of outline `basic` at object coords u, v."""
    r = np.hypot(u, v)
    if basic == "disc":
        return r - 1.0
    if basic == "ring":
        return np.abs(r - 0.72) - 0.28
    if basic == "crescent":
        return np.maximum(r - 1.0, 0.8 - np.hypot(u - 0.55, v))
    if basic == "ellipse":
        return (np.hypot(u, v / 0.45) - 1.0) * 0.45
    if basic == "square":
        return _box(u, v, 0.78, 0.78)
    if basic == "triangle":
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return np.max([-(np.cos(a) * u + np.sin(a) * v) - 0.55 for a in angles], axis=0)
    if basic == "cross":
        return np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))
    if basic == "star":
        phase = (np.arctan2(v, u) * 5 / (2 * np.pi)) % 1.0
        return r - (0.42 + 0.62 * np.abs(1.0 - 2.0 * phase))
    raise ValueError(f"unknown basic class {basic!r}; "
                     f"expected one of {sum(HIERARCHY.values(), ())}")


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 where the object shows its second colour, in object coordinates (turns with the object)."""
    a, b = u / PATTERN_PERIOD, v / PATTERN_PERIOD
    if pattern == "plain":
        return np.zeros_like(u)
    if pattern == "striped":
        return (a % 1.0 < 0.5).astype(float)
    if pattern == "checkered":
        return ((np.floor(a) + np.floor(b)) % 2).astype(float)
    if pattern == "dotted":
        return (np.hypot(a % 1.0 - 0.5, b % 1.0 - 0.5) < 0.3).astype(float)
    raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")


def _background(rng, n: int, size: int) -> np.ndarray:
    """Cluttered backgrounds (n, size, size, 3) in [0, 255]: smooth colour noise and blobs."""
    base = rng.uniform(70, 185, (n, 1, 1, 1)) + rng.normal(0, 15, (n, 1, 1, 3))
    coarse = rng.normal(0, 20, (n, 5, 5, 3))
    # Bilinear upsampling of the coarse grid gives low-frequency clutter.
    pos = np.linspace(0, 4, size)
    i0 = np.minimum(np.floor(pos).astype(int), 3)
    w = (pos - i0)[:, None]
    rows = coarse[:, i0] * (1 - w)[None, :, :, None] + coarse[:, i0 + 1] * w[None, :, :, None]
    smooth = rows[:, :, i0] * (1 - w)[None, None, :, :] + rows[:, :, i0 + 1] * w[None, None, :, :]
    img = base + smooth + rng.normal(0, 6, (n, size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    for _ in range(2):
        present = rng.random(n) < 0.5
        cy, cx = rng.uniform(0, size, (2, n, 1, 1))
        sigma = rng.uniform(1.0, 2.5, (n, 1, 1))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        alpha = 0.8 * present[:, None, None] * blob
        colour = rng.uniform(0, 255, (n, 1, 1, 3))
        img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    return img


def _render(rng, labels: np.ndarray, size: int) -> np.ndarray:
    """Render one image per subordinate label index; returns uint8 (n, size, size, 3)."""
    table = class_table()
    n = labels.size
    img = _background(rng, n, size)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = rng.uniform(0.24, 0.36, n) * size  # object radius in pixels
    centre = size / 2 + rng.uniform(-0.16, 0.16, (2, n)) * size
    colour1 = rng.uniform(0, 255, (n, 3))
    colour2 = (colour1 + rng.uniform(90, 166, (n, 3))) % 256
    yy, xx = np.mgrid[0:size, 0:size].astype(float) + 0.5
    dy = (yy[None] - centre[0][:, None, None]) / radius[:, None, None]
    dx = (xx[None] - centre[1][:, None, None]) / radius[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        _, basic, sub = table[label]
        dist = _shape_distance(basic, u[idx], v[idx])
        # Anti-aliased coverage: one pixel of soft edge.
        alpha = np.clip(0.5 - dist * radius[idx, None, None], 0.0, 1.0)[..., None]
        second = _pattern_mask(sub.rsplit("/", 1)[1], u[idx], v[idx])[..., None]
        surface = (colour1[idx, None, None] * (1 - second) + colour2[idx, None, None] * second)
        img[idx] = img[idx] * (1 - alpha) + surface * alpha
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def stimulus_set_sha256(ds: xr.Dataset) -> str:
    """Hex sha256 of a stimulus set's image bytes followed by its stimulus_ids (one per line)."""
    digest = hashlib.sha256(np.ascontiguousarray(ds["image"].values).tobytes())
    digest.update("\n".join(map(str, ds["stimulus_id"].values)).encode())
    return digest.hexdigest()


def _stimulus_set(rng, name: str, labels: np.ndarray, size: int) -> xr.Dataset:
    table = np.array(class_table())
    labels = rng.permutation(labels)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"), _render(rng, labels, size))},
        coords={
            "stimulus_id": ("stimulus", [f"{name}_{i:05d}" for i in range(labels.size)]),
            "superordinate": ("stimulus", table[labels, 0].astype(str)),
            "basic": ("stimulus", table[labels, 1].astype(str)),
            "subordinate": ("stimulus", table[labels, 2].astype(str)),
        },
    )
    ds.attrs["name"] = name
    ds.attrs["sha256"] = stimulus_set_sha256(ds)
    return ds


def make_stimulus_sets(size=32, train_per_class=100, test_per_class=20, probe=120,
                       seed=0, name="shapes", path=None, test_fraction=0.2
                       ) -> dict[str, xr.Dataset]:
    """Render the train, test and probe sets of hierarchical object images, or read a folder.

    With `path` set, the sets come from a user image folder instead (`read_image_folder`, which
    documents how the arguments apply there); otherwise `name="digits"` gives scikit-learn's
    handwritten digits (`make_digit_sets`, likewise).

    Parameters
    ----------
    size : int
        Image height and width in pixels.
    train_per_class, test_per_class : int
        Images per subordinate class in the train and test sets.
    probe : int
        Images in the probe set (the stimuli shown to the animals), spread over the 32
        subordinate classes as evenly as possible (counts differ by at most one).
    seed : int
        Seed; each set draws from its own child stream, so changing one size leaves the other
        sets unchanged.
    name : str
        Prefix of the set names and stimulus ids ("{name}_probe", "{name}_probe_00000");
        "digits" (without `path`) selects the digits instead of the shapes.
    path : path-like, optional
        Root of an image folder (config field `stimuli.path`); None renders the shapes.
    test_fraction : float
        Folder and digits sources only: share of each class held out when the folder has no
        train/val split, or for the digits' test set when `test_per_class` is None.

    Returns
    -------
    dict of str to xarray.Dataset
        Keys "train", "test", "probe". Each has `image` (stimulus, y, x, channel) uint8 and
        coords stimulus_id (unique across sets), superordinate, basic, subordinate; attrs
        `name` ("{name}_<set>") and `sha256` (see `stimulus_set_sha256`).
    """
    if path is not None:
        return read_image_folder(path, size=size, train_per_class=train_per_class,
                                 test_per_class=test_per_class, probe=probe, seed=seed,
                                 name=name, test_fraction=test_fraction)
    if name == "digits":
        return make_digit_sets(size=size, train_per_class=train_per_class,
                               test_per_class=test_per_class, probe=probe, seed=seed,
                               test_fraction=test_fraction)
    for key, value in {"size": size, "train_per_class": train_per_class,
                       "test_per_class": test_per_class, "probe": probe}.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < (8 if key == "size" else 0):
            raise ValueError(f"make_stimulus_sets: {key} must be an integer >= "
                             f"{8 if key == 'size' else 0}; got {value!r}")
    n_classes = len(class_table())
    counts = {"train": np.repeat(np.arange(n_classes), train_per_class),
              "test": np.repeat(np.arange(n_classes), test_per_class),
              "probe": np.arange(probe) % n_classes}
    streams = np.random.SeedSequence(seed).spawn(len(SETS))
    return {key: _stimulus_set(np.random.default_rng(stream), f"{name}_{key}", counts[key], size)
            for key, stream in zip(SETS, streams)}


def _labelled_set(name: str, images: np.ndarray, classes: np.ndarray) -> xr.Dataset:
    """A stimulus set whose one class name is the label at every level (folder and digit sets)."""
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"), images)},
        coords={
            "stimulus_id": ("stimulus", [f"{name}_{i:05d}" for i in range(len(images))]),
            "superordinate": ("stimulus", classes),
            "basic": ("stimulus", classes),
            "subordinate": ("stimulus", classes),
        },
    )
    ds.attrs["name"] = name
    ds.attrs["sha256"] = stimulus_set_sha256(ds)
    return ds


def make_digit_sets(size=32, train_per_class=100, test_per_class=20, probe=120, seed=0,
                    test_fraction=0.2) -> dict[str, xr.Dataset]:
    """Train, test and probe sets of scikit-learn's 8×8 handwritten digits, upsampled to `size`.

    The digits task of project P3 that ships with the environment (`sklearn.datasets.load_digits`:
    1797 images of 0–9, about 180 per class, 17 grey levels, no download). Each class is
    shuffled by `seed` and dealt out in turn: the first `test_per_class` images to the test set,
    then a class-balanced `probe` set taken one class at a time, then at most `train_per_class`
    of the rest to the training set, so the three sets are disjoint. Images are scaled to
    0–255, upsampled with Pillow's bilinear filter and repeated over three channels (the nets
    take RGB). The digit ("0"…"9") is the label at every level, as for an image folder.

    Parameters
    ----------
    size : int
        Output side (px, ≥ 8).
    train_per_class, test_per_class : int or None
        Images per class in the training and test sets; None: all images left for training,
        round(`test_fraction` × class size) for the test set.
    probe : int
        Images in the probe set.
    seed : int
        Seeds the shuffle.
    test_fraction : float
        Test share of each class when `test_per_class` is None.

    Returns
    -------
    dict of str to xarray.Dataset
        Keys "train", "test", "probe", laid out as `make_stimulus_sets`' sets, named
        "digits_<set>".
    """
    from sklearn.datasets import load_digits

    for key, value in {"size": size, "probe": probe, "train_per_class": train_per_class,
                       "test_per_class": test_per_class}.items():
        low = 8 if key == "size" else 0 if key == "probe" else 1
        if value is None and key.endswith("per_class"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"stimuli.{key} must be an integer >= {low}; got {value!r}")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    pools = {str(c): list(rng.permutation(np.flatnonzero(digits.target == c)))
             for c in range(10)}
    test = []
    for cls, pool in pools.items():
        n_test = round(test_fraction * len(pool)) if test_per_class is None else test_per_class
        if n_test >= len(pool):
            raise ValueError(f"stimuli.test_per_class: {n_test} test images of digit {cls} asked "
                             f"for, but it has only {len(pool)} images (some must train)")
        test += [(cls, i) for i in pool[:n_test]]
        del pool[:n_test]
    probe_items = _round_robin(pools, probe)
    if len(probe_items) < probe:
        raise ValueError(f"stimuli.probe: {probe} probe images asked for, but the digits leave "
                         f"only {len(probe_items)} after the test set")
    train = [(cls, i) for cls, pool in pools.items() for i in pool[:train_per_class]]
    if not train:
        raise ValueError(f"stimuli: the digits leave no training images after {len(test)} test "
                         f"and {probe} probe images")
    log.info("digits: %d train, %d test, %d probe images at %d px", len(train), len(test),
             len(probe_items), size)
    grey = np.rint(digits.images * (255 / 16)).astype(np.uint8)

    def upsampled(items):
        out = np.empty((len(items), size, size, 3), dtype=np.uint8)
        for row, (_, i) in enumerate(items):
            image = Image.fromarray(grey[i]).resize((size, size), Image.Resampling.BILINEAR)
            out[row] = np.asarray(image)[..., None]
        return out

    return {key: _labelled_set(f"digits_{key}", upsampled(items),
                               np.array([cls for cls, _ in items], dtype=str))
            for key, items in (("train", train), ("test", test), ("probe", probe_items))}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _class_images(root: Path) -> dict[str, list[Path]]:
    """Class folder name -> sorted image files in it, for the classes that hold any."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[folder.name] = files
    return classes


def load_image(file, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3): RGB, shorter side resized to `size`, centre-cropped.

    The resize-then-centre-crop of torchvision's Resize(size) + CenterCrop(size), with Pillow's
    antialiased bilinear filter.
    """
    with Image.open(file) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = image.resize(new, Image.Resampling.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _folder_pools(root: Path, rng, test_fraction: float):
    """(train pool, held-out pool): class -> shuffled files, from train/ + val/ or a seeded split."""
    if (root / "train").is_dir():
        if not (root / "val").is_dir():
            raise ValueError(f"stimuli.path: {root} has a train/ folder but no val/ folder; "
                             f"give both (torchvision ImageFolder splits) or neither")
        train, held = _class_images(root / "train"), _class_images(root / "val")
        unknown = sorted(set(held) - set(train))
        if unknown:
            raise ValueError(f"stimuli.path: {root}/val has {len(unknown)} class(es) absent from "
                             f"{root}/train (first: {unknown[0]!r})")
        return ({c: list(rng.permutation(f)) for c, f in train.items()},
                {c: list(rng.permutation(f)) for c, f in held.items()})
    train, held = {}, {}
    for cls, files in _class_images(root).items():
        files = list(rng.permutation(files))
        n_held = min(max(round(test_fraction * len(files)), 1), len(files) - 1)
        held[cls], train[cls] = files[:n_held], files[n_held:]
    return train, {c: f for c, f in held.items() if f}


def _round_robin(pools: dict[str, list], count: int) -> list[tuple[str, object]]:
    """Take `count` (class, item) pairs one class at a time, removing them from `pools`."""
    taken = []
    while len(taken) < count and any(pools.values()):
        for cls in pools:
            if pools[cls] and len(taken) < count:
                taken.append((cls, pools[cls].pop(0)))
    return taken


# How `load_image` resizes; part of the shard stores' key.
FOLDER_RESIZE = "RGB, shorter side bilinear to size, centre crop"
# Images per decoded chunk and per chunk of a folder set's lazy image array.
FOLDER_CHUNK = 256


class _FolderImages:
    """Decoded images (channel, y, x) of a list of files: the map-style dataset (`__len__`,
    `__getitem__`) DataLoader workers run."""

    def __init__(self, files: list[Path], size: int):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_image(self.files[i], self.size).transpose(2, 0, 1)


def _decoded_chunks(files: list[Path], size: int, workers: int):
    """Chunks (n, channel, y, x) uint8 of `files` decoded in order by `workers` processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_FolderImages(files, size), batch_size=FOLDER_CHUNK, num_workers=workers,
                        collate_fn=np.stack)
    with tqdm(total=len(files), desc="decoding images", unit="image", disable=None) as bar:
        for chunk in loader:
            bar.update(len(chunk))
            yield chunk


class _StoreRows:
    """Rows of a shard store as an array (stimulus, y, x, channel) read on demand, for dask."""

    def __init__(self, store, rows):
        self.store, self.rows = store, np.asarray(rows, dtype=np.int64)
        _, channels, height, width = store.shape
        self.shape, self.dtype, self.ndim = (len(rows), height, width, channels), np.dtype(
            np.uint8), 4

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        images = self.store.read(self.rows[key[0]]).transpose(0, 2, 3, 1)
        return images[(slice(None), *key[1:])]


def _streamed_sha256(images: _StoreRows, stimulus_ids: list[str]) -> str:
    """`stimulus_set_sha256` of a set whose images are read a chunk at a time (same bytes in
    the same order, so the same digest)."""
    digest = hashlib.sha256()
    for start in range(0, images.shape[0], FOLDER_CHUNK):
        digest.update(np.ascontiguousarray(images[start:start + FOLDER_CHUNK]).tobytes())
    digest.update("\n".join(stimulus_ids).encode())
    return digest.hexdigest()


def _folder_set(name: str, items: list[tuple[str, Path]], root: Path, store, rows
                ) -> xr.Dataset:
    """A stimulus set of folder images whose `image` reads the shard store lazily (dask), so
    writing it to Zarr streams chunk by chunk."""
    import dask.array

    source = _StoreRows(store, rows)
    images = dask.array.from_array(source, chunks=(FOLDER_CHUNK, -1, -1, -1), asarray=False,
                                   meta=np.empty((0, 0, 0, 0), dtype=np.uint8))
    stimulus_ids = [f"{name}_{i:05d}" for i in range(len(items))]
    classes = np.array([cls for cls, _ in items], dtype=str)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"), images)},
        coords={
            "stimulus_id": ("stimulus", stimulus_ids),
            "superordinate": ("stimulus", classes),
            "basic": ("stimulus", classes),
            "subordinate": ("stimulus", classes),
            "file": ("stimulus", np.array([f.relative_to(root).as_posix() for _, f in items],
                                          dtype=str)),
        },
    )
    ds.attrs["name"] = name
    ds.attrs["sha256"] = _streamed_sha256(source, stimulus_ids)
    return ds


def read_image_folder(path, *, size=64, train_per_class=None, test_per_class=None, probe=120,
                      seed=0, name="folder", test_fraction=0.2, shards=None,
                      workers: int | None = None) -> dict[str, xr.Dataset]:
    """Train, test and probe sets from a folder in the torchvision ImageFolder convention.

    Images are `root/<class>/<image>.{png,jpg,jpeg}`. With `root/train/` and `root/val/`
    subfolders, train/ gives the training images and val/ the held-out ones; otherwise a
    seeded `test_fraction` of each class (at least one image when the class has two or more)
    is held out. The probe set is a class-balanced sample of the held-out images (classes
    taken in turn), the test set the held-out images left (so the three sets are disjoint,
    and no probe image was seen in training). The class folder name is the label at every
    level (`superordinate`, `basic` and `subordinate` are equal), so `train()` learns the
    folder's classes whatever its `label_level`.

    Parameters
    ----------
    path : path-like
        The folder's root (config field `stimuli.path`).
    size : int
        Output side (px): the shorter side is resized to it, then the centre is cropped.
    train_per_class, test_per_class : int or None
        At most this many training / test images per class (a seeded sample); None keeps all.
    probe : int
        Images in the probe set.
    seed : int
        Seeds the split and the samples; the training set does not change with `probe`,
        `test_per_class` or the test set.
    name : str
        Prefix of the set names and stimulus ids, as for the shapes.
    test_fraction : float
        Share of each class held out when the folder has no train/val split.
    shards : path-like, optional
        Folder of shard stores (`pipeline.data.shards.cache_dir`). The images are decoded and
        resized once into a store keyed by the files' names, sizes and mtimes and the size;
        a rerun with the same files reuses it instead of decoding again.
    workers : int, optional
        Processes decoding images (a `torch.utils.data.DataLoader`); None: up to 4, one per
        core available.

    Returns
    -------
    dict of str to xarray.Dataset
        Keys "train", "test", "probe", laid out as `make_stimulus_sets`' sets, plus a coord
        `file` (the image's path relative to the root). Their `image` arrays are lazy (dask,
        read from the shard store), so memory stays flat however many images the folder has.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"stimuli.path: {root} is not a folder; expected an image folder "
                                f"root/<class>/<image>.png|jpg|jpeg")
    if not 0 < test_fraction < 1:
        raise ValueError(f"stimuli.test_fraction must be in (0, 1); got {test_fraction!r}")
    for key, value in {"size": size, "probe": probe, "train_per_class": train_per_class,
                       "test_per_class": test_per_class}.items():
        low = 8 if key == "size" else 0 if key == "probe" else 1
        if value is None and key.endswith("per_class"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"stimuli.{key} must be an integer >= {low}; got {value!r}")
    rng = np.random.default_rng(seed)
    train_pool, held_pool = _folder_pools(root, rng, test_fraction)
    if not train_pool:
        raise ValueError(f"stimuli.path: {root} holds no images; expected "
                         f"root/<class>/<image> (or root/train/<class>/<image>) with suffixes "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    train = [(cls, f) for cls, files in train_pool.items() for f in files[:train_per_class]]
    probe_items = _round_robin(held_pool, probe)
    if len(probe_items) < probe:
        raise ValueError(f"stimuli.probe: {probe} probe images asked for, but {root} holds only "
                         f"{len(probe_items)} held-out images")
    test = [(cls, f) for cls, files in held_pool.items() for f in files[:test_per_class]]
    if not test:
        raise ValueError(f"stimuli.path: {root} leaves no test images after {probe} probe images; "
                         f"lower stimuli.probe or raise stimuli.test_fraction")
    log.info("%s: %d classes; %d train, %d test, %d probe images", root, len(train_pool),
             len(train), len(test), len(probe_items))
    files = sorted({file for _, file in train + test + probe_items})
    row = {file: i for i, file in enumerate(files)}
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 0
    store = open_or_build(shards, folder_key(root, files, size, FOLDER_RESIZE),
                          (len(files), 3, size, size),
                          lambda: _decoded_chunks(files, size, workers if workers > 1 else 0),
                          {"folder": str(root), "size": size, "resize": FOLDER_RESIZE})
    return {key: _folder_set(f"{name}_{key}", items, root, store, [row[f] for _, f in items])
            for key, items in (("train", train), ("test", test), ("probe", probe_items))}


# Reading a stimulus set for training, transfer and extraction.

LABEL_LEVELS = ("superordinate", "basic", "subordinate")


def check_label_level(label_level: str) -> None:
    """Raise ValueError unless `label_level` names one of `LABEL_LEVELS`."""
    if label_level not in LABEL_LEVELS:
        raise ValueError(f"label_level must be one of {', '.join(LABEL_LEVELS)}; got {label_level!r}")


def read_stimuli(path, label_level: str | None = None, *, load: bool = True) -> xr.Dataset:
    """Load a stimulus set into memory (or open it lazily) and check its layout.

    Parameters
    ----------
    path : path-like
        Zarr store with var `image` (stimulus, y, x, channel) uint8 and coord `stimulus_id`.
    label_level : str, optional
        Label coord that must be present too.
    load : bool
        False opens the store lazily: images are read when indexed (a set larger than memory).

    Returns
    -------
    xarray.Dataset
    """
    ds = load_zarr(path) if load else read_zarr(path)
    if "image" not in ds:
        raise ValueError(f"{path}: stimulus set needs data var 'image'; found {list(ds.data_vars)}")
    dims = ("stimulus", "y", "x", "channel")
    if ds["image"].dims != dims or ds["image"].dtype != np.uint8:
        raise ValueError(
            f"{path}: 'image' must be uint8 with dims {dims}; "
            f"found {ds['image'].dtype} with dims {ds['image'].dims}"
        )
    needed = ["stimulus_id"] + ([label_level] if label_level else [])
    missing = [c for c in needed if c not in ds.coords]
    if missing:
        raise ValueError(f"{path}: stimulus set lacks coord(s) {missing}; found {list(ds.coords)}")
    return ds


def stimulus_sha256(ds: xr.Dataset) -> str:
    """The stimulus set's `sha256` attr, or the digest of its image bytes and stimulus_ids."""
    if "sha256" in ds.attrs:
        return str(ds.attrs["sha256"])
    return stimulus_set_sha256(ds)


def to_tensor(images) -> torch.Tensor:
    """uint8 images (stimulus, y, x, channel) → uint8 tensor (stimulus, channel, y, x)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


def class_names(ds: xr.Dataset, level: str) -> list[str]:
    """The sorted unique class names of a stimulus set at a label level."""
    return sorted(set(ds[level].values.astype(str).tolist()))


def class_indices(ds: xr.Dataset, level: str, classes: list[str], path) -> torch.Tensor:
    """Index into `classes` of every stimulus's class at `level` (long tensor, (stimulus,)).

    Raises ValueError naming `path` when a class is not in `classes` (the training set's).
    """
    import torch

    names = ds[level].values.astype(str)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise ValueError(
            f"{path}: {len(unknown)} {level} class(es) absent from the training set "
            f"(first: {unknown[0]!r})"
        )
    return torch.tensor([index[n] for n in names], dtype=torch.long)
