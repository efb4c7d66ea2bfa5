import math

import pytest
import torch
from torch import nn

from tests.learning.tasks import mlp
from pipeline.learning import (alignment_table, gradient_angle, make_rule, norm_ratio,
                               weight_angle)
from pipeline.learning.diagnostics import angle
from pipeline.models import build_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_angle_is_exact_at_the_extremes():
    torch.manual_seed(0)
    a = torch.randn(50, 20)
    assert angle(a, a) == 0.0 and angle(a, 4 * a) == 0.0     # exact scaling by a power of 2
    assert angle(a, -a) == pytest.approx(180.0)
    assert angle(torch.tensor([1.0, 0]), torch.tensor([1.0, 1.0])) == pytest.approx(45.0)
    assert angle(a, a + 1e-6 * torch.randn(50, 20)) < 1e-3      # no acos round-off floor
    assert math.isnan(angle(a, torch.zeros_like(a)))


def test_weight_angle_and_norm_ratio():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fb = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert weight_angle(w, fb) == pytest.approx(90.0)
    assert norm_ratio(w, fb) == pytest.approx(2.0)


def test_gradient_angle_compares_the_downward_signals():
    torch.manual_seed(1)
    delta = torch.randn(4, 6, 5, 5)
    w = torch.randn(6, 3, 3, 3)
    conv = ((1, 1), (1, 1), (1, 1), 1)
    shape = torch.Size((4, 3, 5, 5))
    assert gradient_angle(delta, w, w, shape, conv) == 0.0
    assert gradient_angle(delta, w, -w, shape, conv) == pytest.approx(180.0)
    linear_delta, lw = torch.randn(8, 4), torch.randn(4, 7)
    fb = torch.randn(4, 7)
    expected = angle(linear_delta @ fb, linear_delta @ lw)
    assert gradient_angle(linear_delta, lw, fb, torch.Size((8, 7))) == pytest.approx(expected)


def test_table_rows_per_rule():
    torch.manual_seed(2)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,))
    plain = build_model("ventral_cnn", 4, 16)
    rows = alignment_table(plain, x, y)
    assert [r["layer"] for r in rows] == [f"area{a}.{i}" for a in range(1, 5) for i in (0, 3)] + [
        "readout"]
    assert all(r["weight_angle"] == 0 and r["norm_ratio"] == 1 and r["gradient_angle"] == 0
               for r in rows)

    fa = make_rule("fa").convert(build_model("ventral_cnn", 4, 16)).train()
    before = {k: v.clone() for k, v in fa.state_dict().items()}
    rows = alignment_table(fa, x, y)
    assert all(60 < r["weight_angle"] < 120 and 0 < r["gradient_angle"] < 180 for r in rows)
    assert all(r["norm_ratio"] == pytest.approx(1.0, rel=1e-5) for r in rows)
    assert fa.training                                          # mode restored
    assert all(p.grad is None for p in fa.parameters())         # no .grad written
    for key, value in fa.state_dict().items():                  # BN statistics untouched
        assert torch.equal(value, before[key]), key

    hebb = make_rule("hebb").convert(build_model("ventral_cnn", 4, 16))
    rows = {r["layer"]: r for r in alignment_table(hebb, x, y)}
    assert all(math.isnan(v) for r in list(rows.values())[:-1] for k, v in r.items()
               if k != "layer")
    assert rows["readout"] == {"layer": "readout", "weight_angle": 0.0, "norm_ratio": 1.0,
                               "gradient_angle": 0.0}


def test_table_on_a_converted_mlp_matches_the_layer_functions():
    model = make_rule("fa").convert(mlp(0))
    x, y = torch.randn(8, 20), torch.randint(0, 4, (8,))
    rows = alignment_table(model, x, y)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for row, layer in zip(rows, layers):
        assert row["weight_angle"] == weight_angle(layer.weight, layer.weight_fb)
        assert row["norm_ratio"] == norm_ratio(layer.weight, layer.weight_fb)
