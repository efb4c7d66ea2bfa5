"""Swap the Linear and Conv2d layers of any model for feedback or Hebbian layers, in place.

Spec §A.10.3: one converter instead of a copy of every architecture per rule. Swapped layers
keep their module path (so `layer_names` and state-dict keys stay valid) and their weight and
bias tensors, so the converted model computes the same function. Other modules (BatchNorm,
pooling, activations) are left as they are.
"""

from __future__ import annotations

from torch import nn

from pipeline.learning.alignments import Alignment
from pipeline.learning.hebbian import HebbianConv2d
from pipeline.learning.layers import FBConv2d, FBLinear

FEEDBACK_LAYERS = (FBLinear, FBConv2d)


def _swap(model: nn.Module, make) -> int:
    """Replace every module for which `make(module)` returns a module; returns the count."""
    swapped = {}
    for name, module in list(model.named_modules()):
        if not name or id(module) in swapped:
            continue
        new = make(module)
        if new is not None:
            swapped[id(module)] = new
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if name and id(module) in swapped:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, swapped[id(module)])
    return len(swapped)


def to_feedback(model: nn.Module, alignment: Alignment) -> int:
    """Swap every nn.Linear and nn.Conv2d for FBLinear / FBConv2d with `alignment`.

    B is drawn by `alignment.init_feedback` in module order, from torch's global generator.

    Returns
    -------
    int
        Number of layers swapped.
    """
    def make(module):
        if isinstance(module, (*FEEDBACK_LAYERS, HebbianConv2d)):
            return None
        if isinstance(module, nn.Conv2d):
            return FBConv2d.from_module(module, alignment)
        if isinstance(module, nn.Linear):
            return FBLinear.from_module(module, alignment)
        return None

    return _swap(model, make)


def to_hebbian(model: nn.Module, *, lr: float, temperature: float) -> int:
    """Swap every nn.Conv2d for a HebbianConv2d; only nn.Linear layers keep their gradients.

    All other parameters (BatchNorm's affine ones included) are frozen, so SGD trains the
    linear layers on top and nothing reaches the Hebbian layers by gradient. Unlike the
    feedback layers, a HebbianConv2d does not compute its conv's function: it keeps the
    kernels' directions but centres its output over units (pipeline.learning.hebbian).

    Returns
    -------
    int
        Number of conv layers swapped.
    """
    def make(module):
        if isinstance(module, nn.Conv2d) and not isinstance(module, (HebbianConv2d, FBConv2d)):
            return HebbianConv2d.from_module(module, lr=lr, temperature=temperature)
        return None

    count = _swap(model, make)
    trained = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    for parameter in model.parameters():
        if id(parameter) not in trained:
            parameter.requires_grad_(False)
    return count


def feedback_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, layer) of every FBLinear and FBConv2d, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FEEDBACK_LAYERS)]


def hebbian_layers(model: nn.Module) -> list[tuple[str, HebbianConv2d]]:
    """(module path, layer) of every HebbianConv2d, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, HebbianConv2d)]
