"""Shard stores: reads equal the array they were written from, keys follow the files, damage is
rebuilt, and folder sets read through them equal the images Pillow decodes."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.data import stimuli
from pipeline.data.shards import ShardStore, build_shards, folder_key, open_or_build
from pipeline.data.stimuli import load_image, read_image_folder, stimulus_set_sha256


def _chunks(array, size=7):
    return (array[i:i + size] for i in range(0, len(array), size))


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (40, 3, 5, 6), dtype=np.uint8)


def test_reads_equal_numpy_indexing(tmp_path, images):
    store = build_shards(tmp_path / "s", images.shape, _chunks(images), {"test": 1})
    index = np.array([39, 0, 5, 6, 7, 5, 20, 21, 1])            # unsorted, runs and a repeat
    np.testing.assert_array_equal(store.read(index), images[index])
    np.testing.assert_array_equal(store[3:11], images[3:11])
    assert len(store) == 40 and store.shape == images.shape
    with pytest.raises(IndexError, match="out of range"):
        store.read([40])


def test_build_is_atomic_and_checks_the_count(tmp_path, images):
    with pytest.raises(ValueError, match="39 images written, expected 40"):
        build_shards(tmp_path / "s", images.shape, _chunks(images[:39]), {})
    assert list(tmp_path.iterdir()) == []                     # no store, no temporary


def test_truncated_store_is_rebuilt(tmp_path, images, caplog):
    calls = []

    def chunks():
        calls.append(1)
        return _chunks(images)

    open_or_build(tmp_path, "key", images.shape, chunks, {})
    path = tmp_path / "key" / "images.u8"
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(ValueError, match="truncated"):
        ShardStore(tmp_path / "key")
    store = open_or_build(tmp_path, "key", images.shape, chunks, {})
    assert len(calls) == 2 and "unusable" in caplog.text
    np.testing.assert_array_equal(store.read(range(40)), images)
    open_or_build(tmp_path, "key", images.shape, chunks, {})
    assert len(calls) == 2                                     # intact: reused


def _write_jpegs(root, n_per_class, classes=("a", "b", "c"), size=20, seed=0):
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:04d}.jpg", quality=90)


def test_folder_sets_equal_pillow_and_their_sha(tmp_path):
    _write_jpegs(tmp_path / "imgs", 6)
    sets = read_image_folder(tmp_path / "imgs", size=12, probe=3, test_fraction=0.3,
                             shards=tmp_path / "cache", workers=2)
    for ds in sets.values():
        expected = np.stack([load_image(tmp_path / "imgs" / f, 12) for f in ds["file"].values])
        np.testing.assert_array_equal(ds["image"].values, expected)
        assert ds.attrs["sha256"] == stimulus_set_sha256(ds.load())


def test_folder_store_rebuilt_when_a_file_changes_and_reused_otherwise(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _write_jpegs(root, 5)
    decoded = []
    real = stimuli.load_image
    monkeypatch.setattr(stimuli, "load_image", lambda f, s: decoded.append(f) or real(f, s))
    kw = dict(size=10, probe=3, test_fraction=0.4, shards=tmp_path / "cache", workers=0)

    first = read_image_folder(root, **kw)
    assert len(decoded) == 15 and len(list((tmp_path / "cache").iterdir())) == 1
    again = read_image_folder(root, **kw)
    assert len(decoded) == 15                                   # reused: nothing decoded
    assert again["train"].attrs["sha256"] == first["train"].attrs["sha256"]

    changed = root / first["train"]["file"].values[0]
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(changed, quality=90)
    third = read_image_folder(root, **kw)
    assert len(decoded) == 30 and len(list((tmp_path / "cache").iterdir())) == 2
    assert third["train"].attrs["sha256"] != first["train"].attrs["sha256"]
    assert third["train"]["image"].values[0].max() == 0          # the new content


def test_folder_key_follows_names_sizes_mtimes_and_size(tmp_path):
    _write_jpegs(tmp_path, 2, classes=("a",))
    files = sorted(tmp_path.glob("a/*.jpg"))
    key = folder_key(tmp_path, files, 16, "r")
    assert folder_key(tmp_path, files, 16, "r") == key
    assert folder_key(tmp_path, files, 17, "r") != key
    assert folder_key(tmp_path, files[:1], 16, "r") != key
    os.utime(files[0], ns=(1, 1))
    assert folder_key(tmp_path, files, 16, "r") != key


def test_store_meta_names_its_source(tmp_path, images):
    store = open_or_build(tmp_path, "k", images.shape, lambda: _chunks(images), {"folder": "x"})
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["source"] == {"folder": "x"} and meta["shape"] == list(images.shape)
