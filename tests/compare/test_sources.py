"""Kernel statistics of sources: pooled animals, model layers read chunk by chunk, projections."""

import numpy as np
import pytest
import xarray as xr

from pipeline.compare import sources
from pipeline.compare.sources import concatenated, layer_sources, leave_out, pool, pooled_kernels, population
from pipeline.compare.splits import trial_halves
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
        np.testing.assert_allclose(src["Gbar"], X[e] @ X[e].T, rtol=1e-10)
        np.testing.assert_allclose(src["sbar"], X[e].sum(1), rtol=1e-10)
        np.testing.assert_array_equal(src["Bbar"], X[e].astype(np.float32))
        assert (src["p"], src["projection"], src["shared"]) == (77, "none", True)


def test_a_lazily_opened_zarr_layer_gives_the_in_memory_kernels(tmp_path, monkeypatch):
    var = _layer(shape=(40,))
    write_zarr(xr.Dataset({"conv": var}), tmp_path / "acts.zarr")
    lazy = read_zarr(tmp_path / "acts.zarr")["conv"]
    assert lazy.chunks is not None                      # dask-backed: nothing loaded yet
    monkeypatch.setattr(sources, "_READ_ELEMENTS", 2 * 30 * 8)   # 5 reads of 8 units
    order = np.arange(30)
    for ours, theirs in zip(layer_sources(lazy, order), layer_sources(var, order)):
        np.testing.assert_allclose(ours["Gbar"], theirs["Gbar"], rtol=1e-12)


def test_random_projection_is_seeded_chunk_independent_and_near_isometric(monkeypatch):
    var = _layer(n_epochs=1, shape=(3000,))
    order = np.arange(30)
    projection = {"method": "random", "n_components": 2000, "seed": 4}
    whole = layer_sources(var, order, projection=projection)[0]
    monkeypatch.setattr(sources, "_READ_ELEMENTS", 30 * 700)      # reads straddle projection blocks
    chunked = layer_sources(var, order, projection=projection)[0]
    np.testing.assert_allclose(chunked["Gbar"], whole["Gbar"], rtol=1e-9)
    assert (whole["p"], whole["projection"]) == (2000, "random:2000")
    X = var.values[0].astype(np.float64)
    exact, approx = _centred(X @ X.T), _centred(whole["Gbar"])
    assert np.abs(approx - exact).max() / np.abs(exact).max() < 0.15
    other = layer_sources(var, order, projection={**projection, "seed": 5})[0]
    assert not np.allclose(other["Gbar"], whole["Gbar"])


def test_pca_with_every_component_keeps_the_centred_kernel():
    var = _layer(n_epochs=1, shape=(100,))
    order = np.arange(30)
    full = layer_sources(var, order, projection={"method": "pca", "n_components": 29})[0]
    X = var.values[0].astype(np.float64)
    np.testing.assert_allclose(_centred(full["Gbar"]), _centred(X @ X.T), atol=1e-8 * np.abs(X @ X.T).max())
    assert full["projection"] == "pca:29"
    narrow = layer_sources(var, order, projection={"method": "pca", "n_components": 200})[0]
    assert narrow["projection"] == "none"                 # the layer is narrower than k


def test_projection_settings_are_checked():
    with pytest.raises(ValueError, match="'none', 'random' or 'pca'"):
        layer_sources(_layer(), np.arange(30), projection={"method": "svd", "n_components": 3})
    with pytest.raises(ValueError, match="n_components >= 1"):
        layer_sources(_layer(), np.arange(30), projection={"method": "random"})


def test_pooled_kernels_equal_the_kernels_of_the_concatenation():
    rng = np.random.default_rng(3)
    halves = trial_halves(6, 3, seed=0)
    R = rng.standard_normal((12, 6, 12))
    R[2, 4, 5] = np.nan                                   # a missing trial
    groups = [np.arange(0, 3), np.arange(3, 8), np.arange(8, 12)]
    pops = [population(R[:, :, idx], halves, f"a{k}") for k, idx in enumerate(groups)]
    direct = concatenated(pops[1:])
    held_out = leave_out(pool(pops), pops[0])
    accumulated = pooled_kernels(R, groups[1:], halves)
    for key in ("G1", "G2", "Gbar", "s1", "s2", "sbar", "p"):
        np.testing.assert_allclose(held_out[key], direct[key], atol=1e-10)
        np.testing.assert_allclose(accumulated[key], direct[key], atol=1e-10)
    subset = concatenated(pops[1:], units=np.array([0, 2, 7]))
    X = np.concatenate([p["B1"] for p in pops[1:]], axis=-1)[..., [0, 2, 7]]
    np.testing.assert_allclose(subset["G1"], X @ np.swapaxes(X, 1, 2), atol=1e-12)
    assert subset["p"] == 3
