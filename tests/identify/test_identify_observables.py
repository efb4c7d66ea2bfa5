"""Observables of a network against direct computations on a tiny net (spec_ch5-6 B.4).

The activity change is checked against central finite differences of Σ y with respect to each
input entry; activations and weights against the statistics of the tensors themselves; and the
measurement path at 100 % of the units and no noise against the clean numbers, exactly.
"""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from pipeline.identify.measurement import Measurement
from pipeline.identify.observables import (COLUMNS, checkpoint_observables, layer_position,
                                           measured_layers, observables)
from pipeline.identify.statistics import row_statistics
from pipeline.io import write_zarr
from pipeline.learning import make_rule
from pipeline.objectives.augment import preprocess
from pipeline.train import TrainSettings, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PREPROCESSING = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3], "input_size": None}


class Tiny(nn.Module):
    """conv (padded, so border units see fewer inputs) → ReLU → linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny(rule="bp"):
    torch.manual_seed(0)
    return make_rule(rule).convert(Tiny()).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images():
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (10, 3, 5, 5), dtype=np.uint8))


def layer_inputs(model, images):
    """Each measured layer's input on the images (float64)."""
    seen = {}
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, args[0]))
               for name, m in measured_layers(model)]
    with torch.no_grad():
        model(preprocess(images, PREPROCESSING))
    for h in handles:
        h.remove()
    return {name: x.double() for name, x in seen.items()}


def finite_difference_change(module, x, h=1e-3):
    """Per example (1/N_out) Σ_i ∂(Σ_j y_j)/∂x_i by central differences of a float64 copy."""
    layer = copy.deepcopy(module).double()
    forward = (lambda v: nn.Conv2d._conv_forward(layer, v, layer.weight, layer.bias)
               if isinstance(layer, nn.Conv2d) else nn.functional.linear(v, layer.weight, layer.bias))
    n_out = forward(x[:1]).numel()
    change = np.zeros(len(x))
    flat = x.reshape(len(x), -1)
    for i in range(flat.shape[1]):
        step = torch.zeros_like(flat)
        step[:, i] = h
        up = forward((flat + step).view_as(x)).flatten(1).sum(1)
        down = forward((flat - step).view_as(x)).flatten(1).sum(1)
        change += ((up - down) / (2 * h)).numpy()
    return change / n_out


def table(model, images, **kw):
    rows = checkpoint_observables(model, images, PREPROCESSING, epoch=0, batch_size=4, **kw)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def value(frame, layer, observable, fraction=1.0, noise=0.0, draw=0):
    rows = frame[(frame["layer"] == layer) & (frame["observable"] == observable)
                 & (frame["fraction"] == fraction) & (frame["noise"] == noise) & (frame["draw"] == draw)]
    assert len(rows) == 1, (layer, observable, len(rows))
    return rows["value"].iloc[0]


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_activity_change_equals_finite_differences(images, rule):
    model = tiny(rule)
    frame = table(model, images)
    inputs = layer_inputs(model, images)
    for name, module in measured_layers(model):
        g = finite_difference_change(module, inputs[name])
        for function, expected in (("raw", g.mean()), ("abs", np.abs(g).mean()), ("sq", (g ** 2).mean())):
            assert value(frame, name, f"gradavg_{function}_mean") == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_feedback_variant_routes_through_b():
    """For a linear layer, Σ_i (Bᵀ1)_i / N_out = ΣB / N_out for every example; bp's B is W."""
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (6, 3, 5, 5), dtype=np.uint8))
    fa = tiny("fa")
    frame = table(fa, images)
    expected = fa.fc.weight_fb.double().sum().item() / fa.fc.out_features
    assert value(frame, "fc", "gradavgfb_raw_mean") == pytest.approx(expected, rel=1e-5)
    assert value(frame, "fc", "gradavg_raw_mean") == pytest.approx(
        fa.fc.weight.double().sum().item() / fa.fc.out_features, rel=1e-5)
    assert value(frame, "fc", "gradavgfb_raw_mean") != pytest.approx(value(frame, "fc", "gradavg_raw_mean"))
    bp = table(tiny("bp"), images)
    assert np.array_equal(bp.loc[bp["measure"] == "gradavg", "value"].to_numpy(),
                          bp.loc[bp["measure"] == "gradavgfb", "value"].to_numpy())


def test_activations_and_weights_equal_their_tensors(images):
    model = tiny()
    frame = table(model, images)
    with torch.no_grad():
        y = model.conv(preprocess(images, PREPROCESSING)).flatten(1).double()
    per_example = row_statistics(y)
    for (function, statistic), values in per_example.items():
        assert value(frame, "conv", f"act_{function}_{statistic}") == pytest.approx(values.mean().item(), rel=1e-5)
    weights = row_statistics(model.fc.weight.reshape(1, -1))
    for (function, statistic), values in weights.items():
        assert value(frame, "fc", f"weight_{function}_{statistic}") == pytest.approx(values.item(), rel=1e-12)


def test_one_forward_pass_per_batch_for_every_statistic(images):
    model = tiny("fa")
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    frame = table(model, images, measurements=[Measurement(0.5, 0.1, 0), Measurement(0.25, 0.0, 1)])
    assert len(calls) == -(-len(images) // 4)                    # batch_size 4
    conditions = frame.groupby(["fraction", "noise", "draw"])["observable"].nunique()
    assert (conditions == 21 + 21 + 3 + 3).all() and len(conditions) == 3


def test_full_units_without_noise_reproduce_the_clean_numbers_exactly(images):
    frame = table(tiny("fa"), images, measurements=[Measurement(1.0, 0.0, draw=3)])
    clean = frame[frame["draw"] == 0].drop(columns="draw").reset_index(drop=True)
    again = frame[frame["draw"] == 3].drop(columns="draw").reset_index(drop=True)
    pd.testing.assert_frame_equal(clean, again, check_exact=True)


def test_noise_adds_its_variance_and_subsampling_changes_the_norm(images):
    sigma = 0.5
    many = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (200, 3, 5, 5), dtype=np.uint8))
    frame = table(tiny(), many, measurements=[Measurement(1.0, sigma, 0), Measurement(0.25, 0.0, 0)])
    clean_var = value(frame, "conv", "act_raw_var")
    assert value(frame, "conv", "act_raw_var", noise=sigma) == pytest.approx(clean_var + sigma ** 2, rel=0.03)
    # a quarter of the units: the squared norm shrinks by about four
    ratio = value(frame, "conv", "act_sq_mean", fraction=0.25) / value(frame, "conv", "act_sq_mean")
    assert ratio == pytest.approx(1, rel=0.3)
    assert value(frame, "conv", "act_raw_norm", fraction=0.25) == pytest.approx(
        value(frame, "conv", "act_raw_norm") / 2, rel=0.25)


def test_positions():
    assert [layer_position(i, 9) for i in range(9)] == ["early"] * 3 + ["middle"] * 3 + ["deep"] * 3
    assert [layer_position(i, 4) for i in range(4)] == ["early", "early", "middle", "deep"]


def write_colour_set(path, n, seed, size=8):
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    image = np.clip(np.array([[200, 40, 40], [40, 40, 200]])[label][:, None, None, :]
                    + rng.integers(-40, 40, (n, size, size, 3)), 0, 255).astype(np.uint8)
    names = np.array(["red", "blue"])[label]
    write_zarr(xr.Dataset({"image": (("stimulus", "y", "x", "channel"), image)},
                          coords={"stimulus_id": ("stimulus", [f"s{seed}_{i}" for i in range(n)]),
                                  **{k: ("stimulus", names) for k in ("superordinate", "basic", "subordinate")}}),
               path)


def test_observables_of_a_trained_run(tmp_path):
    write_colour_set(tmp_path / "train.zarr", 32, 0)
    write_colour_set(tmp_path / "test.zarr", 16, 1)
    train("lenet-supervised-fa-s0", tmp_path / "train.zarr", tmp_path / "test.zarr", tmp_path / "run",
          TrainSettings(epochs=3, checkpoint_every=2, batch_size=16, lr=0.01, optimizer="adam"),
          device="cpu")
    frame = observables(tmp_path / "run", tmp_path / "test.zarr", n_stimuli=12, batch_size=5,
                        measurements=[Measurement(0.5, 0.1, 0)])
    assert list(frame.columns) == list(COLUMNS)
    assert sorted(frame["epoch"].unique()) == [0, 2, 3]                # the checkpoints written
    assert list(dict.fromkeys(frame["layer"])) == ["conv1.0", "conv2.0", "fc1.1", "readout"]
    assert len(frame) == 4 * 3 * 2 * (21 + 21 + 3 + 3)
    weights = frame[(frame["observable"] == "weight_raw_norm") & (frame["noise"] == 0)]
    assert weights.groupby("layer")["value"].nunique().min() == 3      # weights change each epoch
    with pytest.raises(ValueError, match="n_stimuli = 99"):
        observables(tmp_path / "run", tmp_path / "test.zarr", n_stimuli=99)


def test_observables_need_two_checkpoints(tmp_path):
    write_colour_set(tmp_path / "train.zarr", 16, 0)
    write_colour_set(tmp_path / "test.zarr", 8, 1)
    train("lenet-supervised-fa-s0", tmp_path / "train.zarr", tmp_path / "test.zarr", tmp_path / "run",
          TrainSettings(epochs=0, batch_size=8), device="cpu")
    with pytest.raises(ValueError, match=r"checkpoints of epochs \[0\] only; a trajectory needs"):
        observables(tmp_path / "run", tmp_path / "test.zarr", n_stimuli=4)
