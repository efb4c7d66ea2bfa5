"""The model zoo: every architecture of `names.ARCHS` built by name, and its layer outputs.

Architectures only: a learning rule converts a model's layers afterwards
(`pipeline.learning.make_rule(rule).convert(model)`), so models never depend on learning rules.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.alexnet import AlexNet64
from pipeline.models.convrnn import ConvRNN
from pipeline.models.lenet import LeNet
from pipeline.models.mlp import MLP
from pipeline.models.names import ARCHS
from pipeline.models.pcn import PCN
from pipeline.models.resnet import resnet18, resnet34, resnet50
from pipeline.models.streamnet import streamnet_dual, streamnet_single, streamnet_six
from pipeline.models.ventral_cnn import VentralCNN
from pipeline.models.vgg import VGG16

__all__ = ["build_model", "layer_outputs"]

# Architecture name -> constructor(n_classes, input_size); every name in ARCHS has one.
_BUILDERS = {
    "ventral_cnn": VentralCNN,
    "lenet": LeNet,
    "mlp": MLP,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "alexnet64": AlexNet64,
    "streamnet_single": streamnet_single,
    "streamnet_dual": streamnet_dual,
    "streamnet_six": streamnet_six,
    "vgg16": VGG16,
    "convrnn": ConvRNN,
    "pcn": PCN,
}


def build_model(arch: str, n_classes: int, input_size: int) -> nn.Module:
    """Construct an untrained architecture with plain (backprop) layers.

    Parameters
    ----------
    arch : str
        Architecture name, one of `ARCHS`.
    n_classes : int
        Size of the readout.
    input_size : int
        Height = width of the input images.

    Returns
    -------
    torch.nn.Module
        With a `layer_names` attribute listing the modules exposed by `layer_outputs`. A rule
        other than bp swaps its Linear and Conv2d layers for feedback (or Hebbian) layers at
        the same module paths (`Rule.convert`); forward weights are drawn here, before any
        backward weight, so one seed gives every rule the same W.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {', '.join(ARCHS)}")
    return _BUILDERS[arch](n_classes, input_size)


def layer_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run `model` on `x` and return the output of every module in `model.layer_names`.

    Parameters
    ----------
    model : torch.nn.Module
        A model from `build_model` (anything with `layer_names`).
    x : torch.Tensor
        Input batch (batch, channel, y, x), already preprocessed.

    Returns
    -------
    dict of str to torch.Tensor
        Layer name -> output (batch, ...), in `layer_names` order. For a recurrent model (one
        with a `time_steps` attribute, whose layers run once per step) the output of every
        step, (batch, time, ...); a module returning a tuple (output, state) gives its output.
    """
    recurrent = getattr(model, "time_steps", None) is not None
    outputs = {name: [] for name in model.layer_names}

    def keep(name):
        def hook(_module, _inputs, output):
            outputs[name].append(output[0] if isinstance(output, tuple) else output)
        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name))
               for name in model.layer_names]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    if recurrent:
        return {name: torch.stack(outputs[name], dim=1) for name in model.layer_names}
    return {name: outputs[name][-1] for name in model.layer_names}
