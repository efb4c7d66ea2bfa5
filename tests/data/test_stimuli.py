"""Tests for pipeline.data.stimuli: determinism, schema, hierarchy and balance."""

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
