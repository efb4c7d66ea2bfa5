"""Spec §A.10.6: every primitive's closed-form gradient equals autograd's, linear and conv."""

import pytest
import torch

from pipeline.learning import (Activation, Alignment, Information, KolenPollack, Mirror,
                               Symmetric)
from pipeline.learning.primitives import GRADIENTS, PRIMITIVES, LayerTensors, project

pytestmark = pytest.mark.usefixtures("torch_one_thread")

GEOMETRIES = {
    "linear": None,
    "conv": ((1, 1), (1, 1), (1, 1), 1),
    "conv_strided_grouped": ((2, 2), (0, 1), (1, 2), 2),
}


def layer_tensors(geometry, seed=0, dtype=torch.double):
    torch.manual_seed(seed)
    conv = GEOMETRIES[geometry]
    if conv is None:
        x, w = torch.randn(7, 5, dtype=dtype), torch.randn(4, 5, dtype=dtype)
    else:
        x = torch.randn(3, 4, 7, 6, dtype=dtype)
        w = torch.randn(6, 4 // conv[3], 3, 3, dtype=dtype)
    fb = torch.randn_like(w).requires_grad_(True)
    return LayerTensors(x, w, fb, project(x, w, conv), conv)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_gradient_matches_autograd(name, geometry):
    t = layer_tensors(geometry)
    expected, = torch.autograd.grad(PRIMITIVES[name](t), t.weight_fb)
    with torch.no_grad():
        got = GRADIENTS[name](t)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


class AllFive(Alignment):
    primitives = {"amp": 0.3, "null": 0.2, "decay": 0.1, "sparse": 0.4, "self": 0.5}


ALIGNMENTS = {
    "wm": Mirror(2e-3, 1e-3),
    "ia": Information(2e-3, 1e-3, 1e-3),
    "sa": Symmetric(2e-3, 1e-3),
    "aa": Activation(2e-3, 1e-3),
    "kp": KolenPollack(1e-3),
    "all_five": AllFive(),
}


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("rule", ALIGNMENTS)
def test_fused_rule_gradient_matches_autograd_of_its_loss(rule, geometry):
    alignment = ALIGNMENTS[rule]
    t = layer_tensors(geometry, seed=1)
    expected, = torch.autograd.grad(alignment.loss(t), t.weight_fb)
    torch.testing.assert_close(alignment.grad(t), expected, rtol=1e-10, atol=1e-12)


def test_batch_forms_follow_the_spec_for_a_linear_layer():
    t = layer_tensors("linear")
    x, w, fb = t.x, t.weight, t.weight_fb.detach()
    y_f, y_b, r_f = x @ w.T, x @ fb.T, x @ w.T @ fb
    with torch.no_grad():
        assert PRIMITIVES["decay"](t) == pytest.approx((fb ** 2).sum().item())
        assert PRIMITIVES["amp"](t) == pytest.approx(-(y_f * y_b).sum(1).mean().item())
        assert PRIMITIVES["null"](t) == pytest.approx((r_f ** 2).sum(1).mean().item())
        assert PRIMITIVES["sparse"](t) == pytest.approx((y_b ** 2).sum(1).mean().item())
        assert PRIMITIVES["self"](t) == pytest.approx(-(w * fb).sum().item())


def test_conv_activity_terms_average_over_positions():
    """A 1×1 conv on an (image, channel, y, x) input is the linear layer on every pixel."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 3, 4, dtype=torch.double)
    w = torch.randn(4, 5, dtype=torch.double)
    fb = torch.randn(4, 5, dtype=torch.double)
    conv = ((1, 1), (0, 0), (1, 1), 1)
    as_conv = LayerTensors(x, w[..., None, None], fb[..., None, None],
                           project(x, w[..., None, None], conv), conv)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 5)
    as_linear = LayerTensors(pixels, w, fb, pixels @ w.T)
    for name in ("amp", "null", "sparse"):
        assert PRIMITIVES[name](as_conv).item() == pytest.approx(PRIMITIVES[name](as_linear).item())
