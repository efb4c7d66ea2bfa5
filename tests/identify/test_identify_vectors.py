"""The modality-free vector task: balanced, seeded, in the stimulus-set layout, not spatial."""

import numpy as np
import pytest

from pipeline.data.stimuli import class_names
from pipeline.identify.vectors import make_vector_sets


@pytest.fixture(scope="module")
def sets():
    return make_vector_sets(size=6, n_classes=5, train_per_class=40, test_per_class=10, latent_dim=4,
                            noise=0.3, seed=1)


def test_layout_balance_and_names(sets):
    train, test = sets["train"], sets["test"]
    assert train["image"].dims == ("stimulus", "y", "x", "channel") and train["image"].dtype == np.uint8
    assert train["image"].shape == (200, 6, 6, 3) and test.sizes["stimulus"] == 50
    for ds, per_class in ((train, 40), (test, 10)):
        _, counts = np.unique(ds["subordinate"].values, return_counts=True)
        assert (counts == per_class).all()
        assert (ds["basic"].values == ds["subordinate"].values).all()
    assert class_names(train, "subordinate") == ["c00", "c01", "c02", "c03", "c04"]
    assert not set(train["stimulus_id"].values) & set(test["stimulus_id"].values)
    assert train.attrs["name"] == "vectors_train" and len(train.attrs["sha256"]) == 64


def test_seeded(sets):
    again = make_vector_sets(size=6, n_classes=5, train_per_class=40, test_per_class=10, latent_dim=4,
                             noise=0.3, seed=1)
    assert again["train"].attrs["sha256"] == sets["train"].attrs["sha256"]
    other = make_vector_sets(size=6, n_classes=5, train_per_class=40, test_per_class=10, latent_dim=4,
                             noise=0.3, seed=2)
    assert other["train"].attrs["sha256"] != sets["train"].attrs["sha256"]


def test_classes_are_learnable_but_neighbouring_features_unrelated(sets):
    """A nearest-class-mean rule beats chance on held-out vectors; adjacent pixels are no more
    correlated than distant ones (the layout is a random permutation)."""
    train, test = sets["train"], sets["test"]
    x = train["image"].values.reshape(200, -1).astype(float)
    x_test = test["image"].values.reshape(50, -1).astype(float)
    classes = np.unique(train["subordinate"].values)
    means = np.stack([x[train["subordinate"].values == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((x_test[:, None] - means[None]) ** 2).sum(2), axis=1)]
    assert np.mean(predicted == test["subordinate"].values) > 0.4          # chance 0.2
    corr = np.corrcoef(x.T)
    adjacent = np.mean(np.abs(np.diag(corr, 1)))
    assert adjacent < np.mean(np.abs(corr[np.triu_indices_from(corr, 1)])) * 1.5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_classes must be an integer ≥ 2"):
        make_vector_sets(n_classes=1)
    with pytest.raises(ValueError, match="noise"):
        make_vector_sets(noise=-1.0)
