"""Per-layer alignment diagnostics of spec §A.9: how far each layer's B is from its W.

`weight_angle` is the angle between vec(W) and vec(B); `norm_ratio` is ‖B‖_F/‖W‖_F;
`gradient_angle` is the angle between the downward signal a layer actually sends, Bᵀδ, and
the one backprop would send, Wᵀδ, for the pseudo-gradient δ that reaches the layer.
`alignment_table` measures all three for every weight layer of a model on one batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.hebbian import HebbianConv2d
from pipeline.learning.layers import FBConv2d, FBLinear
from pipeline.learning.primitives import project_transpose

COLUMNS = ("epoch", "layer", "weight_angle", "norm_ratio", "gradient_angle")


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between two tensors taken as vectors; NaN if either is zero.

    Computed as 2·atan2(‖â − b̂‖, ‖â + b̂‖), which stays accurate near 0° and 180°.
    """
    a, b = a.detach().flatten(), b.detach().flatten()
    na, nb = a.norm().item(), b.norm().item()
    if na == 0 or nb == 0 or not (math.isfinite(na) and math.isfinite(nb)):
        return math.nan
    a, b = a / na, b / nb
    return math.degrees(2 * math.atan2((a - b).norm().item(), (a + b).norm().item()))


def weight_angle(weight: torch.Tensor, weight_fb: torch.Tensor) -> float:
    """Angle in degrees between vec(W) and vec(B)."""
    return angle(weight, weight_fb)


def norm_ratio(weight: torch.Tensor, weight_fb: torch.Tensor) -> float:
    """‖B‖_F / ‖W‖_F (NaN when W is zero)."""
    norm = weight.detach().double().norm().item()
    return weight_fb.detach().double().norm().item() / norm if norm > 0 else math.nan


def gradient_angle(delta: torch.Tensor, weight: torch.Tensor, weight_fb: torch.Tensor,
                   x_shape, conv=None) -> float:
    """Angle in degrees between Bᵀδ (sent) and Wᵀδ (what backprop would send).

    Parameters
    ----------
    delta : torch.Tensor
        Gradient reaching the layer's output, (sample, out) or (image, channel_out, y, x).
    weight, weight_fb : torch.Tensor
        W and B.
    x_shape : torch.Size
        Shape of the layer input.
    conv : tuple, optional
        (stride, padding, dilation, groups) for a conv layer.
    """
    sent = project_transpose(delta, weight_fb.detach(), x_shape, conv)
    backprop = project_transpose(delta, weight.detach(), x_shape, conv)
    return angle(sent, backprop)


def _geometry(module: nn.Module):
    """(W, B, conv) of a weight layer: B is W itself for plain layers, None for Hebbian ones."""
    if isinstance(module, (FBLinear, FBConv2d)):
        return module.weight, module.weight_fb, module.conv
    if isinstance(module, HebbianConv2d):
        return module.weight, None, module.conv
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module.weight, module.weight, None
    return None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, module) of every Linear / Conv2d-like layer, feedback and Hebbian included."""
    return [(n, m) for n, m in model.named_modules() if _geometry(m) is not None]


def alignment_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """weight_angle, norm_ratio and gradient_angle of every weight layer on one batch.

    The model runs in eval mode (BatchNorm uses its running statistics, no cache or Hebbian
    update), the cross-entropy of `x` against labels `y` is differentiated with
    `torch.autograd.grad`, so no parameter's `.grad` changes, and each layer's δ is the
    pseudo-gradient the rule actually delivers to its output.

    Returns
    -------
    list of dict
        One per layer in module order: layer (module path), weight_angle and gradient_angle
        in degrees, norm_ratio. Plain layers (backprop, and the SGD readout of `hebb`) have
        B = W: 0°, 1, 0° (0° only if the layer trains by gradient). Hebbian layers have no B:
        NaN throughout. A feedback layer's gradient_angle is NaN where no gradient reaches it
        or δ is zero. The forward and backward pass is run only if the model has feedback
        layers.
    """
    layers = weight_layers(model)
    inputs, outputs = {}, {}

    def keep(name):
        def hook(_module, args, output):
            inputs[name] = args[0].shape
            outputs[name] = output
        return hook

    deltas = {}
    feedback = [(n, m) for n, m in layers if isinstance(m, (FBLinear, FBConv2d))]
    handles = [m.register_forward_hook(keep(n)) for n, m in feedback]
    was_training = model.training
    model.eval()
    try:
        if feedback:                     # only feedback layers need the pass; see plain ones below
            with torch.enable_grad():
                loss = F.cross_entropy(model(x), y)
                names = [n for n, _ in feedback if outputs[n].requires_grad]
                deltas = dict(zip(names, torch.autograd.grad(loss, [outputs[n] for n in names],
                                                             allow_unused=True)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    rows = []
    for name, module in layers:
        weight, weight_fb, conv = _geometry(module)
        row = {"layer": name, "weight_angle": math.nan, "norm_ratio": math.nan,
               "gradient_angle": math.nan}
        if weight_fb is weight:          # a plain layer: B is W, so it sends what BP sends
            row.update(weight_angle=0.0, norm_ratio=1.0)
            if weight.requires_grad:
                row["gradient_angle"] = 0.0
        elif weight_fb is not None:
            row["weight_angle"] = weight_angle(weight, weight_fb)
            row["norm_ratio"] = norm_ratio(weight, weight_fb)
            delta = deltas.get(name)
            linear = isinstance(module, nn.Linear)
            # (a non-zero padding mode pads the input inside the layer; its shape is unknown here)
            if delta is not None and (linear or module.padding_mode == "zeros"):
                row["gradient_angle"] = gradient_angle(delta, weight, weight_fb,
                                                       inputs[name], None if linear else conv)
        rows.append(row)
    return rows
