"""Difference-of-Gaussians place cells against the formula written out in numpy (spec §3.5)."""

import numpy as np
import pytest
import torch

from pipeline.mec.placecells import PlaceCells, decode_top_k


def dog_numpy(xy, centres, sigma, s):
    d2 = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)

    def softmax(a):
        a = a - a.max(axis=1, keepdims=True)
        e = np.exp(a)
        return e / e.sum(axis=1, keepdims=True)

    out = softmax(-d2 / (2 * sigma ** 2)) - softmax(-d2 / (2 * s * sigma ** 2))
    out -= out.min(axis=1, keepdims=True)
    return out / out.sum(axis=1, keepdims=True)


def test_code_matches_the_formula_and_is_a_distribution():
    cells = PlaceCells(512, width=2.2, seed=0)
    centres = cells.centres.double().numpy()
    assert np.abs(centres).max() <= 1.1
    xy = np.random.default_rng(0).uniform(-1.1, 1.1, (300, 2))
    ours = cells.activation(torch.as_tensor(xy, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(ours, dog_numpy(xy, centres, 0.12, 2.0), atol=2e-6)
    assert (ours >= 0).all()
    np.testing.assert_allclose(ours.sum(1), 1.0, atol=1e-5)


def test_centres_follow_the_seed_like_the_released_code():
    rng = np.random.RandomState(0)
    x, y = rng.uniform(-1.1, 1.1, 512), rng.uniform(-1.1, 1.1, 512)
    np.testing.assert_allclose(PlaceCells(512, seed=0).centres.numpy(),
                               np.stack([x, y], 1).astype(np.float32))


def test_top3_decoding_recovers_a_position_near_centres():
    cells = PlaceCells(512, width=2.2, seed=0)
    xy = torch.tensor([[0.1, -0.2], [0.7, 0.5], [-0.9, 0.8]])
    decoded = cells.decode(cells.activation(xy))
    assert torch.linalg.vector_norm(decoded - xy, dim=-1).max() < 0.1
    # the decoder is the mean centre of the 3 largest entries, whatever their values
    act = torch.zeros(1, 512)
    act[0, [3, 10, 40]] = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(decode_top_k(act, cells.centres), cells.centres[[3, 10, 40]].mean(0))


def test_plain_gaussians_without_surround_and_bad_settings():
    cells = PlaceCells(64, width=1.0, surround=None, seed=1)
    out = cells.activation(torch.zeros(5, 2))
    assert torch.allclose(out.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="surround"):
        PlaceCells(64, surround=0.5)
    with pytest.raises(ValueError, match="n_cells"):
        PlaceCells(2)
