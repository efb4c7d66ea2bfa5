"""Stimulus train/test splits and subsets."""

import math

import numpy as np
import pytest

from pipeline.compare.splits import stimulus_splits


@pytest.mark.parametrize("n_stimuli,train_frac", [(118, 0.5), (117, 0.5), (40, 0.2)])
def test_stimulus_splits_partition_the_stimuli(n_stimuli, train_frac):
    splits = stimulus_splits(n_stimuli, n_splits=4, train_frac=train_frac, seed=3)
    assert len(splits) == 4
    for train, test in splits:
        assert train.size == math.ceil(train_frac * n_stimuli)
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n_stimuli))


def test_stimulus_splits_follow_the_reference_seeding():
    # mouse-vision: split s permutes with RandomState(seed=s) and takes the first ceil(frac * n).
    splits = stimulus_splits(118, n_splits=3, train_frac=0.5, seed=0)
    for s, (train, test) in enumerate(splits):
        order = np.random.RandomState(s).permutation(118)
        np.testing.assert_array_equal(train, np.sort(order[:59]))
        np.testing.assert_array_equal(test, np.sort(order[59:]))
    later = stimulus_splits(118, n_splits=2, train_frac=0.5, seed=1)
    np.testing.assert_array_equal(later[0][0], splits[1][0])


def test_stimulus_splits_reject_degenerate_fractions():
    with pytest.raises(ValueError, match="train_frac"):
        stimulus_splits(10, train_frac=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        stimulus_splits(10, train_frac=0.95)


def test_inner_splits_lie_inside_each_training_set():
    from pipeline.compare.splits import inner_splits

    outer = stimulus_splits(118, n_splits=4, train_frac=0.5, seed=2)
    inner = inner_splits(outer, train_frac=0.5, seed=2)
    for (train, test), (fit, validate) in zip(outer, inner):
        np.testing.assert_array_equal(np.sort(np.concatenate([fit, validate])), train)
        assert fit.size == math.ceil(0.5 * train.size)
        assert np.intersect1d(validate, test).size == 0 and np.intersect1d(fit, test).size == 0
    again = inner_splits(outer, train_frac=0.5, seed=2)
    for (a, b), (c, d) in zip(inner, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_stimulus_subsets_are_seeded_and_full_size_means_all():
    from pipeline.compare.splits import stimulus_subset

    a, b = stimulus_subset(118, 40, seed=3), stimulus_subset(118, 40, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.size == np.unique(a).size == 40
    np.testing.assert_array_equal(stimulus_subset(118, None), np.arange(118))
    with pytest.raises(ValueError, match="at least 4"):
        stimulus_subset(118, 3)


def test_unit_subsets_depend_on_the_job_key_not_on_call_order():
    from pipeline.compare.splits import unit_subset

    first = unit_subset(100, 20, "VISp/m1/pooled", seed=0)
    assert first.size == np.unique(first).size == 20
    unit_subset(100, 20, "VISp/m2/pooled", seed=0)
    np.testing.assert_array_equal(unit_subset(100, 20, "VISp/m1/pooled", seed=0), first)
    assert not np.array_equal(unit_subset(100, 20, "VISp/m2/pooled", seed=0), first)
    np.testing.assert_array_equal(unit_subset(10, 20, "x", seed=0), np.arange(10))
