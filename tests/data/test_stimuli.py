"""Tests for pipeline.data.stimuli: determinism, schema, hierarchy and balance."""

import functools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.data.stimuli import class_table, make_stimulus_sets, stimulus_set_sha256

SMALL = dict(size=32, train_per_class=3, test_per_class=2, probe=40)


@pytest.fixture(scope="module")
def sets():
    return make_stimulus_sets(**SMALL, seed=0)


def test_same_seed_gives_identical_bytes(sets):
    again = make_stimulus_sets(**SMALL, seed=0)
    for key in ("train", "test", "probe"):
        assert again[key]["image"].values.tobytes() == sets[key]["image"].values.tobytes()
        assert again[key].attrs["sha256"] == sets[key].attrs["sha256"]


def test_different_seed_gives_different_images(sets):
    other = make_stimulus_sets(**SMALL, seed=1)
    for key in ("train", "test", "probe"):
        assert other[key]["image"].values.tobytes() != sets[key]["image"].values.tobytes()
        assert other[key].attrs["sha256"] != sets[key].attrs["sha256"]


def test_shapes_dtypes_coords_and_names(sets):
    sizes = {"train": 32 * 3, "test": 32 * 2, "probe": 40}
    for key, ds in sets.items():
        image = ds["image"]
        assert image.dims == ("stimulus", "y", "x", "channel")
        assert image.shape == (sizes[key], 32, 32, 3)
        assert image.dtype == np.uint8
        for coord in ("stimulus_id", "superordinate", "basic", "subordinate"):
            assert ds[coord].dims == ("stimulus",)
        assert ds.attrs["name"] == f"shapes_{key}"
        assert ds.attrs["sha256"] == stimulus_set_sha256(ds)


def test_sha256_covers_images_and_ids(sets):
    ds = sets["probe"].copy(deep=True)
    ds["stimulus_id"] = ds["stimulus_id"].copy(data=ds["stimulus_id"].values[::-1])
    assert stimulus_set_sha256(ds) != sets["probe"].attrs["sha256"]
    ds = sets["probe"].copy(deep=True)
    ds["image"][0, 0, 0, 0] = ds["image"].values[0, 0, 0, 0] ^ 1
    assert stimulus_set_sha256(ds) != sets["probe"].attrs["sha256"]


def test_ids_unique_across_sets(sets):
    ids = np.concatenate([ds["stimulus_id"].values for ds in sets.values()])
    assert np.unique(ids).size == ids.size


def test_hierarchy_is_a_tree(sets):
    assert len(class_table()) == 32
    for ds in sets.values():
        sub_to_basic, basic_to_sup = {}, {}
        for sup, basic, sub in zip(ds.superordinate.values, ds.basic.values, ds.subordinate.values):
            assert sub_to_basic.setdefault(sub, basic) == basic
            assert basic_to_sup.setdefault(basic, sup) == sup
    train = sets["train"]
    assert np.unique(train.superordinate).size == 2
    assert np.unique(train.basic).size == 8
    assert np.unique(train.subordinate).size == 32


def test_classes_are_balanced(sets):
    _, train_counts = np.unique(sets["train"].subordinate, return_counts=True)
    assert set(train_counts) == {3}
    _, probe_counts = np.unique(sets["probe"].subordinate, return_counts=True)
    assert probe_counts.size == 32
    assert probe_counts.max() - probe_counts.min() <= 1


def test_changing_probe_size_leaves_train_unchanged(sets):
    other = make_stimulus_sets(**{**SMALL, "probe": 10}, seed=0)
    assert other["train"].attrs["sha256"] == sets["train"].attrs["sha256"]


def test_subordinate_classes_are_learnable():
    # A linear classifier on a rotation-tolerant summary (radial spectrum of the gradient
    # magnitude) must beat chance (1/32) by far: the classes differ visibly at 32 px.
    sets = make_stimulus_sets(train_per_class=30, test_per_class=10, probe=0, seed=3)

    def features(ds):
        x = ds["image"].values.astype(float).mean(-1) / 255
        gy, gx = np.gradient(x, axis=(1, 2))
        mag = np.hypot(gx, gy)
        spectrum = np.abs(np.fft.fft2(mag - mag.mean((1, 2), keepdims=True)))
        fy, fx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")
        ring = np.digitize(np.hypot(fy, fx), np.linspace(0, 0.71, 12))
        return np.log1p(np.stack([spectrum[:, ring == b].mean(1) for b in range(1, 12)], 1))

    model = LogisticRegression(max_iter=2000).fit(features(sets["train"]),
                                                  sets["train"].subordinate.values)
    accuracy = (model.predict(features(sets["test"])) == sets["test"].subordinate.values).mean()
    assert accuracy > 3 / 32


def test_bad_size_raises():
    with pytest.raises(ValueError, match="train_per_class"):
        make_stimulus_sets(train_per_class=-1)


def test_name_prefixes_set_names_and_ids():
    probe = make_stimulus_sets(train_per_class=0, test_per_class=0, probe=4, name="dots")["probe"]
    assert probe.attrs["name"] == "dots_probe"
    assert all(str(i).startswith("dots_probe_") for i in probe["stimulus_id"].values)


# --- user image folder -------------------------------------------------------------------

from PIL import Image  # noqa: E402

from pipeline.data.stimuli import load_image, read_image_folder  # noqa: E402

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fox": (30, 30, 200)}


def _write_folder(root, per_class=5, shape=(40, 30), suffixes=(".png", ".jpg")):
    """Solid-colour images per class, one pixel of the id burnt in so files differ."""
    for cls, colour in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((*shape, 3), colour, dtype=np.uint8)
            pixels[0, 0] = (i, i, i)
            Image.fromarray(pixels).save(root / cls / f"img{i}{suffixes[i % len(suffixes)]}")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_folder_source_writes_the_three_sets(tmp_path):
    _write_folder(tmp_path / "imgs")
    sets = make_stimulus_sets(size=16, train_per_class=100, test_per_class=20, probe=3, seed=0,
                              name="mine", path=tmp_path / "imgs", test_fraction=0.4)
    sizes = {key: ds.sizes["stimulus"] for key, ds in sets.items()}
    assert sizes == {"train": 9, "test": 3, "probe": 3}        # 5 per class: 3 train, 2 held out
    files = np.concatenate([ds["file"].values for ds in sets.values()])
    assert np.unique(files).size == 15                           # disjoint, every image used once
    ids = np.concatenate([ds["stimulus_id"].values for ds in sets.values()])
    assert np.unique(ids).size == 15
    for key, ds in sets.items():
        assert ds.attrs["name"] == f"mine_{key}" and ds.attrs["sha256"] == stimulus_set_sha256(ds)
        assert ds["image"].dims == ("stimulus", "y", "x", "channel")
        assert ds["image"].dtype == np.uint8 and ds["image"].shape[1:] == (16, 16, 3)
        for level in ("superordinate", "basic"):
            assert (ds[level].values == ds["subordinate"].values).all()
        for cls, file, image in zip(ds.subordinate.values, ds.file.values, ds["image"].values):
            assert file.startswith(f"{cls}/")
            np.testing.assert_allclose(image[8:, 8:].reshape(-1, 3).mean(0), COLOURS[cls], atol=2)
    assert sorted(sets["probe"].subordinate.values) == ["cat", "dog", "fox"]   # class-balanced


def test_folder_source_trains(tmp_path):
    from pipeline.io import write_zarr
    from pipeline.data.stimuli import read_stimuli

    _write_folder(tmp_path / "imgs")
    sets = read_image_folder(tmp_path / "imgs", size=16, probe=3, test_fraction=0.4)
    write_zarr(sets["train"], tmp_path / "t.zarr")
    assert set(read_stimuli(tmp_path / "t.zarr", "subordinate").subordinate.values) == set(COLOURS)


def test_train_val_subfolders_give_the_split(tmp_path):
    _write_folder(tmp_path / "imgs" / "train", per_class=4)
    _write_folder(tmp_path / "imgs" / "val", per_class=2)
    sets = read_image_folder(tmp_path / "imgs", size=8, probe=3, seed=1)
    assert all(f.startswith("train/") for f in sets["train"]["file"].values)
    assert sets["train"].sizes["stimulus"] == 12
    held = [*sets["test"]["file"].values, *sets["probe"]["file"].values]
    assert len(held) == 6 and all(f.startswith("val/") for f in held)


def test_caps_and_seed_keep_training_set_fixed(tmp_path):
    _write_folder(tmp_path / "imgs", per_class=6)
    a = read_image_folder(tmp_path / "imgs", size=8, train_per_class=2, test_per_class=1,
                          probe=0, seed=0, test_fraction=0.5)
    b = read_image_folder(tmp_path / "imgs", size=8, train_per_class=2, test_per_class=2,
                          probe=3, seed=0, test_fraction=0.5)
    c = read_image_folder(tmp_path / "imgs", size=8, train_per_class=2, probe=0, seed=5,
                          test_fraction=0.5)
    assert a["train"].sizes["stimulus"] == 6 and a["test"].sizes["stimulus"] == 3
    assert a["train"].attrs["sha256"] == b["train"].attrs["sha256"]
    assert list(a["train"].file.values) != list(c["train"].file.values)


def test_load_image_resizes_shorter_side_and_centre_crops(tmp_path):
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)          # wide: left, centre, right thirds
    pixels[:, 20:40] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png", 10)           # 20x60 -> 10x30 -> centre 10x10
    assert image.shape == (10, 10, 3)
    assert image[:, 1:-1].min() == 255                       # the white centre third, borders aside
    gray = Image.fromarray(np.full((12, 12), 77, dtype=np.uint8))
    gray.save(tmp_path / "gray.jpg")
    assert load_image(tmp_path / "gray.jpg", 12).shape == (12, 12, 3)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "stimuli.path: .* is not a folder"),
    (lambda root: (root / "empty_class").mkdir(parents=True), "stimuli.path: .* holds no images"),
    (lambda root: (root / "train" / "a").mkdir(parents=True), "has a train/ folder but no val/"),
])
def test_folder_errors_name_the_config_field(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        make_stimulus_sets(path=root, size=16)


def test_too_many_probe_images_raise(tmp_path):
    _write_folder(tmp_path / "imgs", per_class=3)
    with pytest.raises(ValueError, match="stimuli.probe: 50 probe images"):
        read_image_folder(tmp_path / "imgs", size=8, probe=50)


# The digits task (scikit-learn's 8×8 handwritten digits, upsampled).

DIGITS = dict(size=16, train_per_class=30, test_per_class=10, probe=25)


@pytest.fixture(scope="module")
def digit_sets():
    return make_stimulus_sets(name="digits", **DIGITS, seed=0)


def test_digit_sets_have_the_shapes_layout_and_labels(digit_sets):
    sizes = {"train": 10 * 30, "test": 10 * 10, "probe": 25}
    for key, ds in digit_sets.items():
        assert ds["image"].dims == ("stimulus", "y", "x", "channel")
        assert ds["image"].shape == (sizes[key], 16, 16, 3) and ds["image"].dtype == np.uint8
        assert ds.attrs["name"] == f"digits_{key}"
        assert ds.attrs["sha256"] == stimulus_set_sha256(ds)
        for level in ("superordinate", "basic"):
            assert (ds[level].values == ds["subordinate"].values).all()
    for key in ("train", "test"):
        labels, counts = np.unique(digit_sets[key]["subordinate"].values, return_counts=True)
        assert labels.tolist() == [str(d) for d in range(10)]
        assert (counts == sizes[key] // 10).all()
    _, probe_counts = np.unique(digit_sets["probe"]["subordinate"].values, return_counts=True)
    assert probe_counts.max() - probe_counts.min() <= 1


@functools.lru_cache
def _upsampled_digits(size):
    """Every sklearn digit upsampled to `size` as Pillow does it (flat float rows), and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    table = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BILINEAR))
                      for g in grey]).reshape(len(grey), -1).astype(float)
    return table, digits.target


def _digit_index(images):
    """The sklearn digit each upsampled image came from (nearest upsampled original)."""
    table, target = _upsampled_digits(images.shape[1])
    flat = images[..., 0].reshape(len(images), -1).astype(float)
    distance = (flat ** 2).sum(1)[:, None] - 2 * flat @ table.T + (table ** 2).sum(1)[None]
    nearest = distance.argmin(1)
    assert np.allclose(distance[np.arange(len(flat)), nearest], 0, atol=1e-6)  # exact copies
    return nearest, target


def test_digit_images_are_the_upsampled_originals_with_their_labels(digit_sets):
    for ds in digit_sets.values():
        images = ds["image"].values
        assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()
        nearest, target = _digit_index(images)
        assert (target[nearest].astype(str) == ds["subordinate"].values).all()


def test_digit_splits_are_disjoint_and_seeded(digit_sets):
    sources = {key: set(_digit_index(ds["image"].values)[0].tolist())
               for key, ds in digit_sets.items()}
    assert len(sources["train"]) == 300                          # no image twice either
    assert not sources["train"] & sources["test"]
    assert not sources["train"] & sources["probe"]
    assert not sources["test"] & sources["probe"]
    again = make_stimulus_sets(name="digits", **DIGITS, seed=0)
    other = make_stimulus_sets(name="digits", **DIGITS, seed=1)
    for key in ("train", "test", "probe"):
        assert again[key].attrs["sha256"] == digit_sets[key].attrs["sha256"]
        assert other[key].attrs["sha256"] != digit_sets[key].attrs["sha256"]


def test_digit_sets_default_test_share_and_errors():
    sets = make_stimulus_sets(name="digits", size=8, train_per_class=None, test_per_class=None,
                              probe=10, seed=0)
    assert sum(ds.sizes["stimulus"] for ds in sets.values()) == 1797      # every digit used
    assert sets["test"].sizes["stimulus"] == pytest.approx(0.2 * 1797, abs=10)
    with pytest.raises(ValueError, match="test_per_class: 500 test images of digit 0"):
        make_stimulus_sets(name="digits", size=8, test_per_class=500)
    with pytest.raises(ValueError, match="stimuli.probe: 5000 probe images"):
        make_stimulus_sets(name="digits", size=8, probe=5000)
    with pytest.raises(ValueError, match="stimuli.size must be an integer >= 8"):
        make_stimulus_sets(name="digits", size=4)
