"""The Hebbian layer learns from its own input and output only, and its readout learns the task."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning import HebbianConv2d, hebbian_layers, make_rule
from pipeline.learning.hebbian import INITIAL_NORM

pytestmark = pytest.mark.usefixtures("torch_one_thread")

COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [0.0, 0, 0]])


def colour_images(n, seed, size=8):
    """Four classes of images told apart by colour, plus pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=generator)
    x = COLOURS[y][:, :, None, None] + 0.8 * torch.randn(n, 3, size, size, generator=generator)
    return x, y


def small_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


def expected_update(layer, x):
    """The SoftHebb rule of pipeline.learning.hebbian written out on unfolded patches."""
    kh, kw = layer.kernel_size
    centred = x - x.mean((0, 2, 3), keepdim=True)
    patches = F.unfold(centred, (kh, kw), padding=layer.conv[1], stride=layer.stride)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])        # (P, c_in·kh·kw)
    w = layer.weight.detach().flatten(1)                                    # (C, c_in·kh·kw)
    u = patches @ w.T                                                       # (P, C)
    y = -torch.softmax(u / layer.temperature, dim=1)                        # losers: anti-Hebbian
    winner = torch.arange(len(u)), u.argmax(1)
    y[winner] = -y[winner]                                                  # the winner: Hebbian
    delta = y.T @ patches - (y * u).sum(0)[:, None] * w
    delta = delta / delta.norm(dim=1).max()
    new = w + layer.lr * (w.norm(dim=1) - 1).abs().sqrt()[:, None] * delta
    return new.view_as(layer.weight)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_update_is_the_formula_on_the_layers_input_and_output(stride, padding):
    torch.manual_seed(0)
    layer = HebbianConv2d.from_module(nn.Conv2d(3, 5, 3, stride, padding, bias=False),
                                      lr=0.3, temperature=0.5)
    x = torch.randn(4, 3, 7, 7, dtype=torch.double)
    layer.double().train()
    out = layer(x)
    cached_x, proj = layer.cache                             # pre- and post-synaptic activity
    assert torch.equal(cached_x, x)
    torch.testing.assert_close(out, proj - proj.mean(1, keepdim=True))
    expected = expected_update(layer, x)
    torch.testing.assert_close(layer.hebbian_update(x, proj), expected)
    layer.hebbian_step()
    torch.testing.assert_close(layer.weight.detach(), expected)
    assert layer.cache is None


def test_output_is_the_projection_on_unit_kernels_centred_over_units():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    directions = conv.weight.detach().flatten(1)
    directions = directions / directions.norm(dim=1, keepdim=True)
    layer = HebbianConv2d.from_module(conv, lr=0.1, temperature=0.1).eval()
    kernels = layer.weight.flatten(1)
    torch.testing.assert_close(kernels.norm(dim=1), torch.full((4,), INITIAL_NORM))
    torch.testing.assert_close(kernels / INITIAL_NORM, directions)       # directions kept
    x = torch.randn(2, 3, 5, 5)
    proj = F.conv2d(x, layer.weight, None, 1, 1) / INITIAL_NORM
    torch.testing.assert_close(layer(x), proj - proj.mean(1, keepdim=True))
    assert torch.all(layer.bias == 0) and not layer.bias.requires_grad
    assert layer.cache is None                               # nothing learnt in eval mode


def test_updates_ignore_labels_and_loss():
    """Same images, different labels: the readout differs, the Hebbian layers do not."""
    x, y = colour_images(32, seed=0)
    rule = make_rule("hebb")
    runs = []
    for labels in (y, (y + 1) % 4):
        model = rule.convert(small_net(0)).train()
        optimizers = rule.optimizers(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
        for _ in range(3):
            rule.step(model, x, labels, optimizers)
        runs.append(model)
    first, second = runs
    for (name, a), (_, b) in zip(hebbian_layers(first), hebbian_layers(second)):
        assert torch.equal(a.weight, b.weight), name
        assert a.weight.grad is None
    assert not torch.equal(first[-1].weight, second[-1].weight)
    initial = rule.convert(small_net(0))
    assert not torch.equal(initial[0].weight, first[0].weight)       # the layers did learn


def test_readout_on_hebbian_features_learns_the_task():
    x, y = colour_images(512, seed=1)
    x_test, y_test = colour_images(256, seed=2)
    rule = make_rule("hebb")
    model = rule.convert(small_net(0)).train()
    optimizers = rule.optimizers(model, lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,), generator=generator)
        rule.step(model, x[idx], y[idx], optimizers)
    with torch.no_grad():
        accuracy = (model.eval()(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.7                                    # chance 0.25
