"""Kernel statistics of sources: pooled animals, model layers read chunk by chunk, projections."""

import numpy as np
import pytest
import xarray as xr

from pipeline.compare import sources
from pipeline.compare.sources import LayerSource, concatenated, layer_sources, leave_out, pooled_kernels, population
from pipeline.data.reliability import trial_halves
from pipeline.io import read_zarr, write_zarr


def _layer(n_epochs=2, n_stimuli=30, shape=(7, 11), seed=0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n_epochs, n_stimuli, *shape)).astype(np.float32) + 1.0
    dims = ("epoch", "stimulus", *[f"d{i}" for i in range(len(shape))])
    return xr.DataArray(values, dims=dims)


def _centred(G):
    n = G.shape[-1]
    H = np.eye(n) - 1.0 / n
    return H @ G @ H


@pytest.mark.parametrize("elements", [10**9, 200, 1])
def test_layer_kernels_do_not_depend_on_the_read_chunk(monkeypatch, elements):
    var = _layer()
    order = np.random.default_rng(1).permutation(30)[:20]
    monkeypatch.setattr(sources, "_READ_ELEMENTS", elements)
    got = layer_sources(var, order, keep_features=True)
    X = var.values.reshape(2, 30, -1)[:, order].astype(np.float64)
    for e, src in enumerate(got):
        np.testing.assert_allclose(src.gram_mean, X[e] @ X[e].T, rtol=1e-10)
        np.testing.assert_allclose(src.sum_mean, X[e].sum(1), rtol=1e-10)
        np.testing.assert_array_equal(src.mean, X[e].astype(np.float32))
        assert isinstance(src, LayerSource) and src.shared
        assert (src.n_units, src.projection) == (77, "none")


def test_features_narrower_than_the_stimuli_are_kept_in_float64():
    order = np.arange(20)
    narrow = layer_sources(_layer(shape=(7,)), order)
    for src in narrow:
        np.testing.assert_array_equal(src.narrow @ src.narrow.T, src.gram_mean)   # the same float64 values
        assert src.narrow.dtype == np.float64 and src.mean is None
    assert all(src.narrow is None for src in layer_sources(_layer(), order))          # 77 units, 20 stimuli
    projected = layer_sources(_layer(), order, projection={"method": "random", "n_components": 8})
    np.testing.assert_allclose(projected[0].narrow @ projected[0].narrow.T, projected[0].gram_mean, rtol=1e-12)


def test_a_lazily_opened_zarr_layer_gives_the_in_memory_kernels(tmp_path, monkeypatch):
    var = _layer(shape=(40,))
    write_zarr(xr.Dataset({"conv": var}), tmp_path / "acts.zarr")
    lazy = read_zarr(tmp_path / "acts.zarr")["conv"]
    assert lazy.chunks is not None                      # dask-backed: nothing loaded yet
    monkeypatch.setattr(sources, "_READ_ELEMENTS", 2 * 30 * 8)   # 5 reads of 8 units
    order = np.arange(30)
    for ours, theirs in zip(layer_sources(lazy, order), layer_sources(var, order)):
        np.testing.assert_allclose(ours.gram_mean, theirs.gram_mean, rtol=1e-12)


def test_random_projection_is_seeded_chunk_independent_and_near_isometric(monkeypatch):
    var = _layer(n_epochs=1, shape=(3000,))
    order = np.arange(30)
    projection = {"method": "random", "n_components": 2000, "seed": 4}
    whole = layer_sources(var, order, projection=projection)[0]
    monkeypatch.setattr(sources, "_READ_ELEMENTS", 30 * 700)      # reads straddle projection blocks
    chunked = layer_sources(var, order, projection=projection)[0]
    np.testing.assert_allclose(chunked.gram_mean, whole.gram_mean, rtol=1e-9)
    assert (whole.n_units, whole.projection) == (2000, "random:2000")
    X = var.values[0].astype(np.float64)
    exact, approx = _centred(X @ X.T), _centred(whole.gram_mean)
    assert np.abs(approx - exact).max() / np.abs(exact).max() < 0.15
    other = layer_sources(var, order, projection={**projection, "seed": 5})[0]
    assert not np.allclose(other.gram_mean, whole.gram_mean)


def test_pca_with_every_component_keeps_the_centred_kernel():
    var = _layer(n_epochs=1, shape=(100,))
    order = np.arange(30)
    full = layer_sources(var, order, projection={"method": "pca", "n_components": 29})[0]
    X = var.values[0].astype(np.float64)
    np.testing.assert_allclose(_centred(full.gram_mean), _centred(X @ X.T), atol=1e-8 * np.abs(X @ X.T).max())
    assert full.projection == "pca:29"
    narrow = layer_sources(var, order, projection={"method": "pca", "n_components": 200})[0]
    assert narrow.projection == "none"                 # the layer is narrower than k


def test_projection_settings_are_checked():
    with pytest.raises(ValueError, match="'none', 'random' or 'pca'"):
        layer_sources(_layer(), np.arange(30), projection={"method": "svd", "n_components": 3})
    with pytest.raises(ValueError, match="n_components >= 1"):
        layer_sources(_layer(), np.arange(30), projection={"method": "random"})


def test_pooled_kernels_equal_the_kernels_of_the_concatenation():
    # The pooled source of the inter-animal engine: the area's pooled kernels less the
    # target's own (`leave_out(pooled_kernels(...), own)`), or accumulated over the others.
    rng = np.random.default_rng(3)
    halves = trial_halves(6, 3, seed=0)
    R = rng.standard_normal((12, 6, 12))
    R[2, 4, 5] = np.nan                                   # a missing trial
    groups = [np.arange(0, 3), np.arange(3, 8), np.arange(8, 12)]
    pops = [population(R[:, :, idx], halves, f"a{k}") for k, idx in enumerate(groups)]
    direct = concatenated(pops[1:])
    held_out = leave_out(pooled_kernels(R, groups, halves), pops[0])
    accumulated = pooled_kernels(R, groups[1:], halves)
    for field in ("gram_half1", "gram_half2", "gram_mean", "sum_half1", "sum_half2", "sum_mean", "n_units"):
        np.testing.assert_allclose(getattr(held_out, field), getattr(direct, field), atol=1e-10)
        np.testing.assert_allclose(getattr(accumulated, field), getattr(direct, field), atol=1e-10)
    subset = concatenated(pops[1:], units=np.array([0, 2, 7]))
    X = np.concatenate([p.half1 for p in pops[1:]], axis=-1)[..., [0, 2, 7]]
    np.testing.assert_allclose(subset.gram_half1, X @ np.swapaxes(X, 1, 2), atol=1e-12)
    assert subset.n_units == 3


def test_a_population_holds_its_means_and_their_kernels():
    rng = np.random.default_rng(4)
    R = rng.standard_normal((10, 6, 5))
    halves = trial_halves(6, 2, seed=1)
    pop = population(R, halves, "a")
    assert pop.has_halves and pop.half1.shape == pop.half2.shape == (2, 10, 5)
    for h, (first, second) in enumerate(halves):
        np.testing.assert_allclose(pop.half1[h], R[:, first].mean(1), atol=1e-12)
        np.testing.assert_allclose(pop.half2[h], R[:, second].mean(1), atol=1e-12)
    np.testing.assert_allclose(pop.mean, R.mean(1), atol=1e-12)
    np.testing.assert_allclose(pop.gram_half2, pop.half2 @ np.swapaxes(pop.half2, 1, 2), atol=1e-12)
    np.testing.assert_allclose(pop.sum_half1, pop.half1.sum(-1), atol=1e-12)
    first = pop.select_halves(slice(1, 2))
    np.testing.assert_array_equal(first.gram_half1, pop.gram_half1[1:2])
    np.testing.assert_array_equal(first.half2, pop.half2[1:2])
    raw = population(R, None, "a", keep_features=False)
    assert not raw.has_halves and raw.mean is None and raw.half1 is None
    np.testing.assert_array_equal(raw.gram_mean, pop.gram_mean)
