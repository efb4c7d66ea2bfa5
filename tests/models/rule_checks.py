"""Checks every architecture test shares: conversion by a learning rule and one training step."""

import torch
from torch import nn

from pipeline.learning import make_rule
from pipeline.learning.hebbian import HebbianConv2d
from pipeline.learning.layers import FBConv2d, FBLinear
from pipeline.models import build_model

# Rules whose converter swaps every Linear/Conv2d for a feedback layer (FBLinear, FBConv2d).
FEEDBACK_RULES = ("fa", "ss", "wm", "ia", "sa", "aa", "kp", "burstprop", "burstprop_kp")


def plain_layers(model: nn.Module) -> dict[str, type]:
    """Module path -> nn.Linear / nn.Conv2d of every plain weight layer of an unconverted model."""
    return {name: type(m) for name, m in model.named_modules()
            if type(m) in (nn.Linear, nn.Conv2d)}


def check_rule_step(arch: str, n_classes: int, size: int, rule: str, batch: int = 2):
    """Build `arch` under `rule`, check every Linear/Conv2d was swapped, take one training step.

    bp, pc: every weight gets a finite, non-zero gradient (pc: nothing is swapped, the
    relaxation's update lands in .grad). fa: every layer is an FB layer with a
    fixed B ≠ W, and every W gets a finite, non-zero gradient; burstprop likewise, by its two
    top-down passes; the other `FEEDBACK_RULES`: FB layers, W's gradient finite and non-zero. ddtp: nothing is swapped, every W gets a finite, non-zero gradient from
    its local target. hebb: every conv is Hebbian and moves by its local rule without
    gradient, every linear layer gets a gradient.
    """
    with torch.device("meta"):
        expected = plain_layers(build_model(arch, n_classes, size))
    assert expected and expected.get("readout") is nn.Linear
    torch.manual_seed(0)
    model = make_rule(rule).convert(build_model(arch, n_classes, size)).train()
    modules = dict(model.named_modules())
    plain = {nn.Linear: nn.Linear, nn.Conv2d: nn.Conv2d}
    feedback = {nn.Linear: FBLinear, nn.Conv2d: FBConv2d}
    swapped = {"bp": plain, "pc": plain, "ddtp": plain,
               "hebb": {nn.Linear: nn.Linear, nn.Conv2d: HebbianConv2d},
               **dict.fromkeys(FEEDBACK_RULES, feedback)}[rule]
    for name, kind in expected.items():
        assert type(modules[name]) is swapped[kind], (name, type(modules[name]))
    weights = {name: modules[name].weight.detach().clone() for name in expected}

    step = make_rule(rule)
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % n_classes
    logits, loss = step.step(model, x, y, step.optimizers(model, lr=0.01, momentum=0.0,
                                                          weight_decay=0.0))
    assert logits.shape == (batch, n_classes) and torch.isfinite(loss)
    for name, kind in expected.items():
        layer = modules[name]
        if rule == "hebb" and kind is nn.Conv2d:
            assert layer.weight.grad is None and not layer.weight.requires_grad, name
            assert not torch.equal(layer.weight.detach(), weights[name]), name
            continue
        grad = layer.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        if rule in ("fa", "burstprop"):
            assert not layer.weight_fb.requires_grad, name
            assert not torch.allclose(layer.weight_fb, weights[name]), name
    return model
