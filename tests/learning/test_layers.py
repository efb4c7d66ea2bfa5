import math

import pytest
import torch
from torch import nn

from pipeline.learning import FBConv2d, FBLinear, Feedback, Mirror, SignSymmetry

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("padding, padding_mode", [(1, "zeros"), ("same", "zeros"),
                                                    ("valid", "zeros"), (1, "reflect"),
                                                    (2, "circular")])
def test_fb_conv_computes_the_wrapped_conv(padding, padding_mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=padding, padding_mode=padding_mode)
    layer = FBConv2d.from_module(conv, Feedback())
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    torch.testing.assert_close(layer(x), conv(x))                 # custom Function path
    with torch.no_grad():
        torch.testing.assert_close(layer(x), conv(x))             # plain path
    assert layer.weight is conv.weight and layer.bias is conv.bias


def test_same_padding_with_even_kernel_is_refused():
    with pytest.raises(ValueError, match="padding='same' with an even kernel"):
        FBConv2d.from_module(nn.Conv2d(2, 2, 2, padding="same"), Feedback())


def test_conversion_draws_nothing_but_b():
    """The new layer is built on the meta device, so B's init is the only random draw."""
    linear = nn.Linear(5, 3)
    torch.manual_seed(0)
    FBLinear.from_module(linear, SignSymmetry())              # B = sign(W)·s: no draw
    after_sign_symmetry = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_sign_symmetry)
    torch.manual_seed(0)
    fb = FBLinear.from_module(linear, Feedback()).weight_fb.detach()
    torch.manual_seed(0)
    expected = nn.init.kaiming_uniform_(torch.empty(3, 5), a=math.sqrt(5))
    torch.testing.assert_close(fb / fb.norm(), expected / expected.norm())


def test_initial_b_per_alignment():
    torch.manual_seed(1)
    linear = nn.Linear(30, 20)
    w = linear.weight.detach()
    signs = FBLinear.from_module(linear, SignSymmetry()).weight_fb
    assert torch.equal(signs.sign(), w.sign())
    torch.testing.assert_close(signs.norm(), w.norm())
    random = FBLinear.from_module(linear, Feedback()).weight_fb
    torch.testing.assert_close(random.norm(), w.norm())
    cos = (random * w).sum() / (random.norm() * w.norm())
    assert abs(cos) < 0.2                                        # independent of W


def test_b_trains_only_under_a_learning_alignment():
    linear = nn.Linear(4, 3)
    assert not FBLinear.from_module(linear, Feedback()).weight_fb.requires_grad
    layer = FBLinear.from_module(linear, Mirror(2e-3, 1e-3))
    assert layer.weight_fb.requires_grad
    layer.set_alignment(Feedback())
    assert not layer.weight_fb.requires_grad


def test_activity_is_cached_in_training_only():
    torch.manual_seed(2)
    layer = FBConv2d.from_module(nn.Conv2d(3, 4, 3, padding=1),
                                 Mirror(2e-3, 1e-3, samples=2))       # reads x, not y
    x = torch.randn(5, 3, 6, 6)
    layer.eval()
    layer(x)
    assert layer.cache is None
    layer.train()
    y = layer(x)
    cached_x, cached_y = layer.cache
    assert torch.equal(cached_x, x[:2]) and cached_y is not None
    torch.testing.assert_close(cached_y, (y - layer.bias.view(1, -1, 1, 1))[:2].detach())
    y.relu_()                                          # an in-place op downstream
    torch.testing.assert_close(cached_y + layer.bias.view(1, -1, 1, 1), layer(x)[:2].detach())
    layer.set_alignment(Feedback())
    layer(x)
    assert layer.cache is None                         # feedback alignment reads nothing
