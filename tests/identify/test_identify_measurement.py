"""Measurement limits: noise first, then a seeded, sorted choice of ⌈fraction·n⌉ units (B.7.5)."""

import math

import numpy as np
import pytest
import torch

from pipeline.identify.measurement import CLEAN, Measurement, degrade, measurements, unit_index


@pytest.mark.parametrize("n, fraction", [(10, 0.1), (10, 0.25), (7, 0.5), (1000, 0.003), (5, 1.0)])
def test_unit_index_keeps_the_ceiling_in_order(n, fraction):
    index = unit_index(n, fraction, seed=4)
    assert len(index) == max(1, math.ceil(fraction * n))
    assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < n


def test_unit_index_depends_on_the_seed_and_full_fraction_is_identity():
    assert not np.array_equal(unit_index(100, 0.1, 0), unit_index(100, 0.1, 1))
    assert np.array_equal(unit_index(100, 0.1, 0), unit_index(100, 0.1, 0))
    assert np.array_equal(unit_index(9, 1.0, 3), np.arange(9))


def test_noise_is_added_before_subsampling():
    matrix = torch.arange(24, dtype=torch.float64).reshape(3, 8)
    m = Measurement(0.5, 2.0, 0)
    ours = degrade(matrix, m, seed=5, generator=torch.Generator().manual_seed(9))
    noise = torch.randn(matrix.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    expected = (matrix + 2.0 * noise)[:, torch.from_numpy(unit_index(8, 0.5, 5))]
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_clean_measurement_returns_the_matrix_itself():
    matrix = torch.randn(4, 6)
    assert degrade(matrix, CLEAN, seed=0) is matrix


def test_product_of_conditions_with_draws_per_fraction():
    conditions = measurements([0.1, 1.0], [0.0, 0.5], [3, 1])
    assert len(conditions) == 3 * 2 + 1 * 2 - 1                 # the clean one left out
    assert Measurement(0.1, 0.0, 2) in conditions and CLEAN not in conditions


def test_bad_conditions_are_refused():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Measurement(0.0, 0.0)
    with pytest.raises(ValueError, match="noise"):
        Measurement(0.5, -1.0)
    with pytest.raises(ValueError, match="one count per fraction"):
        measurements([0.1, 0.5], [0.0], [1])
    with pytest.raises(ValueError, match="generator"):
        degrade(torch.ones(2, 2), Measurement(1.0, 0.1), seed=0)
