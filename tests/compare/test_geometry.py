"""Geometry per layer and epoch against scikit-learn's PCA and RidgeClassifier, and closed forms."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeClassifier

from pipeline.compare.geometry import (
    _ridge_fold,
    _ridge_fold_primal,
    center_gram,
    geometry,
    gram,
    n_components,
    participation_ratio,
    probe_accuracy,
    probe_folds,
    spectrum,
    stimulus_labels,
)


def known_spectrum(eigenvalues, n, d, seed=0):
    """Responses (n, d) whose sample covariance has exactly `eigenvalues` (then zeros)."""
    rng = np.random.default_rng(seed)
    r = len(eigenvalues)
    U, _ = np.linalg.qr(rng.standard_normal((n, r + 1)))
    U = U - U.mean(0)                            # columns orthogonal to 1: centred
    U, _ = np.linalg.qr(U[:, :r])
    V, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return (U * np.sqrt((n - 1) * np.asarray(eigenvalues))) @ V.T + 3.0


@pytest.mark.parametrize("shape", [(40, 300), (300, 20)])       # wide and tall layers
def test_spectrum_is_sklearn_pca_explained_variance(shape):
    rng = np.random.default_rng(1)
    X = rng.standard_normal(shape) @ np.diag(np.linspace(3, 0.1, shape[1])) + 1.0
    ours = spectrum(X)
    theirs = PCA().fit(X).explained_variance_
    k = min(shape[0] - 1, shape[1])
    assert ours.shape == (k,)
    np.testing.assert_allclose(ours, theirs[:k], rtol=1e-8, atol=1e-10)


def test_known_spectrum_gives_its_participation_ratio_and_components():
    eigenvalues = [4.0, 2.0, 1.0, 1.0]
    X = known_spectrum(eigenvalues, n=50, d=30)
    values = spectrum(X)
    np.testing.assert_allclose(values[:4], eigenvalues, rtol=1e-10)
    assert participation_ratio(values) == pytest.approx(8.0 ** 2 / 22.0, rel=1e-10)
    assert n_components(values, 0.9) == 4             # 0.5, 0.75, 0.875, 1
    assert n_components(values, 0.85) == 3
    assert n_components(values, 0.74) == 2


def test_isotropic_gaussian_in_k_dimensions_has_participation_ratio_k():
    rng = np.random.default_rng(2)
    k, d, n = 8, 200, 5_000
    basis, _ = np.linalg.qr(rng.standard_normal((d, k)))
    X = rng.standard_normal((n, k)) @ basis.T + rng.standard_normal(d)
    # finite n: E[PR] of a Wishart sample ≈ k n / (n + k + 1), within 0.2 % of k here
    assert participation_ratio(spectrum(X)) == pytest.approx(k, rel=0.02)
    assert n_components(spectrum(X), 0.9) in (k - 1, k)


def test_components_for_variance_match_sklearn_pca():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 60)) * np.geomspace(5, 0.05, 60)
    for variance in (0.5, 0.8, 0.9, 0.99):
        expected = PCA(n_components=variance, svd_solver="full").fit(X).n_components_
        assert n_components(spectrum(X), variance) == expected


def test_constant_layer_has_no_dimension():
    values = spectrum(np.ones((10, 5)))
    assert np.isnan(participation_ratio(values))
    assert n_components(values, 0.9) == 0


def test_gram_sums_blocks_exactly(monkeypatch):
    import pipeline.compare.geometry as geometry_module

    X = np.random.default_rng(4).standard_normal((7, 50)).astype(np.float32)
    monkeypatch.setattr(geometry_module, "_BLOCK_ELEMENTS", 20)        # blocks of 2 units
    np.testing.assert_allclose(gram(X), X.astype(float) @ X.astype(float).T, rtol=1e-12)
    Xc = X.astype(float) - X.astype(float).mean(0)
    np.testing.assert_allclose(center_gram(gram(X)), Xc @ Xc.T, atol=1e-9)


@pytest.mark.parametrize("width", [300, 12])         # kernel and unit-space solutions
def test_ridge_probe_predicts_as_sklearn_ridge_classifier(width):
    rng = np.random.default_rng(5)
    labels = np.repeat(np.array(["a", "b", "c", "d"]), 15)
    X = rng.standard_normal((60, width)) + 0.3 * (labels[:, None] == np.array(["a", "b", "c", "d"]))[:, :1]
    classes = np.unique(labels)
    Y = np.where(labels[:, None] == classes, 1.0, -1.0)
    K = gram(X)
    for train, test in probe_folds(labels, 5, seed=0):
        Xc = X[train] - X[train].mean(0)
        alpha = 0.7 * (Xc ** 2).sum() / len(train)                  # our relative penalty
        theirs = RidgeClassifier(alpha=alpha).fit(X[train], labels[train])
        ours = _ridge_fold(K, Y, train, test, 0.7)
        np.testing.assert_allclose(ours, theirs.decision_function(X[test]), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(_ridge_fold_primal(X, Y, train, test, 0.7), ours, rtol=1e-6, atol=1e-8)
        assert (classes[ours.argmax(1)] == theirs.predict(X[test])).all()
    assert probe_accuracy(X, labels, alpha=0.7) == probe_accuracy(X, labels, K=K, alpha=0.7)


def test_probe_finds_separable_classes_and_not_shuffled_ones():
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(4), 30)
    means = rng.standard_normal((4, 50)) * 2.0
    X = means[labels] + rng.standard_normal((120, 50))
    for classifier in ("ridge", "logistic"):
        assert probe_accuracy(X, labels, classifier=classifier)["probe_accuracy"] > 0.95
    chance = [probe_accuracy(X, rng.permutation(labels), seed=s)["probe_accuracy"] for s in range(5)]
    assert abs(np.mean(chance) - 0.25) < 0.1
    out = probe_accuracy(X, labels)
    assert out["n_classes"] == 4 and out["probe_chance"] == 0.25 and out["probe_n_splits"] == 5


def test_probe_folds_are_seeded_stratified_and_clipped():
    labels = np.repeat(["x", "y", "z"], [3, 5, 8])
    folds = probe_folds(labels, 5, seed=1)
    assert len(folds) == 3                                 # smallest class has 3
    test = np.concatenate([t for _, t in folds])
    assert sorted(test) == list(range(labels.size))        # the test folds partition the stimuli
    for train, t in folds:
        assert set(train).isdisjoint(t) and len(train) + len(t) == labels.size
        for name, count in (("x", 3), ("y", 5), ("z", 8)):  # each class's share, to within one
            assert abs(np.sum(labels[t] == name) - count / 3) < 1
    assert max(len(t) for _, t in folds) - min(len(t) for _, t in folds) <= 1
    again = probe_folds(labels, 5, seed=1)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    assert any((a[1] != b[1]).any() for a, b in zip(folds, probe_folds(labels, 5, seed=2)))
    with pytest.raises(ValueError, match="smallest class has 1"):
        probe_folds(np.array(["x", "y", "y"]), 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_folds(np.array(["x", "x", "x"]), 2)


def activations(n=48, epochs=(0, 1, 2), recurrent=False):
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(4), n // 4)
    data = {}
    for layer, width in (("conv", 64), ("fc", 6)):
        shape = (len(epochs), 2, n, width) if recurrent else (len(epochs), n, width)
        values = rng.standard_normal(shape).astype(np.float32)
        values[-1, ..., :4] += 6 * np.eye(4)[labels]          # the last epoch separates the classes
        dims = ("epoch", "time", "stimulus", f"unit_{layer}") if recurrent else \
            ("epoch", "stimulus", f"unit_{layer}")
        data[layer] = (dims, values)
    coords = {"epoch": list(epochs), "stimulus_id": ("stimulus", [f"s{i:02d}" for i in range(n)])}
    if recurrent:
        coords["time"] = [0, 1]
    return xr.Dataset(data, coords=coords), labels


def test_geometry_table_covers_layers_and_epochs_and_agrees_with_its_parts():
    ds, labels = activations()
    layers, spectra = geometry(ds, labels, epochs="ends", variance=0.8,
                               probe={"label_level": "basic", "n_splits": 4, "seed": 0})
    assert sorted(zip(layers["layer"], layers["epoch"])) == [("conv", 0), ("conv", 2), ("fc", 0), ("fc", 2)]
    row = layers.set_index(["layer", "epoch"]).loc[("conv", 2)]
    X = ds["conv"].sel(epoch=2).values
    assert row["participation_ratio"] == pytest.approx(participation_ratio(PCA().fit(X).explained_variance_))
    assert row["n_components"] == PCA(n_components=0.8, svd_solver="full").fit(X).n_components_
    assert row["n_units"] == 64 and row["label_level"] == "basic" and row["classifier"] == "ridge"
    untrained = layers.set_index(["layer", "epoch"]).loc[("conv", 0), "probe_accuracy"]
    assert row["probe_accuracy"] > 0.9 > untrained
    one = spectra[(spectra["layer"] == "fc") & (spectra["epoch"] == 0)]
    assert one["component"].tolist() == list(range(1, 7))
    assert one["explained_variance_ratio"].sum() == pytest.approx(1.0)
    assert (np.diff(one["eigenvalue"]) <= 0).all()


def test_recurrent_layers_get_one_row_per_time_step():
    ds, labels = activations(recurrent=True)
    layers, _ = geometry(ds, labels, epochs=[2])
    assert sorted(set(layers["time"])) == [0, 1] and set(layers["epoch"]) == {2}
    assert len(layers) == 4


def test_labels_are_matched_by_stimulus_id():
    stimuli = xr.Dataset(coords={"stimulus_id": ("stimulus", ["a", "b", "c"]),
                                 "basic": ("stimulus", ["x", "y", "z"])})
    assert stimulus_labels(stimuli, ["c", "a"], "basic").tolist() == ["z", "x"]
    with pytest.raises(ValueError, match="not in the stimulus set"):
        stimulus_labels(stimuli, ["a", "q"], "basic")
    with pytest.raises(ValueError, match="no label level 'subordinate'"):
        stimulus_labels(stimuli, ["a"], "subordinate")
    ds, labels = activations()
    with pytest.raises(ValueError, match="one entry per stimulus"):
        geometry(ds, labels[:-1])
    assert isinstance(geometry(ds, labels, epochs="final")[0], pd.DataFrame)


def test_cli_writes_labelled_tables(tmp_path):
    """`python -m pipeline geometry` and `rule_similarity` on stores laid out as the workflow does."""
    from pipeline.cli import main
    from pipeline.io import write_zarr

    ds, labels = activations()
    names = np.array(["a", "b", "c", "d"])
    stimuli = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), np.zeros((48, 2, 2, 3), np.uint8))},
                         coords={"stimulus_id": ds["stimulus_id"].values, "basic": ("stimulus", names[labels])})
    write_zarr(stimuli, tmp_path / "stimuli.zarr")
    stores = []
    for model in ("lenet-supervised-bp-s0", "lenet-supervised-fa-s0"):
        stores.append(tmp_path / model / "probe.zarr")
        write_zarr(ds, stores[-1])
    settings = '{"epochs": "final", "variance": 0.9, "probe": {"label_level": "basic", "n_splits": 3}}'
    assert main(["geometry", str(stores[0]), str(tmp_path / "stimuli.zarr"), "--model", "lenet-supervised-bp-s0",
                 "--stimulus-set", "probe", "--layers", str(tmp_path / "layers.parquet"),
                 "--spectrum", str(tmp_path / "spectrum.parquet"), "--settings", settings]) == 0
    layers = pd.read_parquet(tmp_path / "layers.parquet")
    assert set(layers["rule"]) == {"bp"} and set(layers["epoch"]) == {2} and set(layers["probe_n_splits"]) == {3}
    assert layers["probe_accuracy"].min() > 0.9
    assert set(pd.read_parquet(tmp_path / "spectrum.parquet")["stimulus_set"]) == {"probe"}
    assert main(["rule_similarity", *map(str, stores), "--stimulus-set", "probe",
                 "--out", str(tmp_path / "similarity.parquet"), "--settings", '{"n_boot": 20}']) == 0
    similarity = pd.read_parquet(tmp_path / "similarity.parquet").set_index(["layer", "rule_a", "rule_b"])
    assert similarity.loc[("conv", "bp", "fa"), "similarity"] == pytest.approx(1.0)    # same activations
