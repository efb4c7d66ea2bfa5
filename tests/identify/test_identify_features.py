"""From the long table to (statistic, time) trajectories per (run, layer) (spec_ch5-6 B.5, B.7.4)."""

import numpy as np
import pytest

from pipeline.identify.features import build_features, observable_names
from pipeline.identify.measurement import Measurement
from tests.identify.planted import SIGNAL, planted_table


@pytest.fixture(scope="module")
def table():
    return planted_table(n_seeds=2, n_layers=3, n_epochs=5, conditions=((1.0, 0.0, 0), (0.5, 0.1, 1)))


def test_examples_are_run_layer_pairs_with_statistic_major_trajectories(table):
    features = build_features(table, "weights")
    assert len(features) == table["run"].nunique() * 3
    assert features.statistics == observable_names("weights") and features.times == [0, 1, 2, 3, 4]
    assert features.values.shape == (len(features), 13, 5)
    flat = features.flat()
    assert flat.shape == (len(features), 13 * 5 + 3)
    k = features.statistics.index(SIGNAL)
    run, layer = features.meta.loc[7, ["run", "layer"]]
    expected = (table[(table["run"] == run) & (table["layer"] == layer) & (table["observable"] == SIGNAL)
                      & (table["draw"] == 0)].sort_values("epoch")["value"].to_numpy())
    np.testing.assert_array_equal(flat[7, k * 5:(k + 1) * 5], expected)
    np.testing.assert_array_equal(flat[:, -3:].sum(1), 1)                      # one-hot position
    assert (features.labels == features.meta["rule"]).all()


def test_observable_classes_and_conditions(table):
    assert len(build_features(table, "all").statistics) == 24
    assert len(build_features(table, "activity_change").statistics) == 3
    assert len(observable_names("all", statistics="all", activity_change="jacobian")) == 45
    degraded = build_features(table, "weights", condition=Measurement(0.5, 0.1, 1))
    clean = build_features(table, "weights")
    assert degraded.values.shape == clean.values.shape and not np.allclose(degraded.values, clean.values)
    with pytest.raises(ValueError, match="no observables"):
        build_features(table, "weights", condition=Measurement(0.25, 0.0, 0))


def test_time_transforms(table):
    features = build_features(table, "weights")
    rng = np.random.default_rng(0)
    sub = features.subsampled(2, 3, rng)
    assert sub.values.shape[2] == 3
    # each example's samples are features at s, s+2, s+4 for one start s
    for i in range(len(sub)):
        starts = [s for s in range(5 - 4) if np.array_equal(sub.values[i], features.values[i][:, s:s + 5:2])]
        assert starts
    with pytest.raises(ValueError, match="need 9 checkpoints"):
        features.subsampled(4, 3, rng)
    assert features.window(1, 3).times == [1, 2]
    np.testing.assert_allclose(features.averaged().values[..., 0], features.values.mean(2))
    half = features.take(features.labels == "up")
    assert set(half.labels) == {"up"} and len(half.meta) == len(half)


def test_non_finite_statistics_are_dropped_and_missing_epochs_refused(table):
    broken = table.copy()
    broken.loc[(broken["observable"] == "weight_sq_mean") & (broken["epoch"] == 2), "value"] = np.inf
    assert "weight_sq_mean" not in build_features(broken, "weights").statistics
    short = table[~((table["run"] == table["run"].iloc[0]) & (table["epoch"] == 4))]
    with pytest.raises(ValueError, match="same checkpoints"):
        build_features(short, "weights")
    with pytest.raises(ValueError, match="observable must be one of"):
        observable_names("synapses")
