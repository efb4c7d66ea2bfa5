"""The alignment-loss primitives of spec Table 5.1 in batch form, with their analytic gradients.

A rule's alignment loss is a weighted sum of these (spec §A.3–A.4). Each primitive reads one
layer's detached input x, forward weight W, forward projection y_f = W x (no bias) and the
backward weight B, which alone receives gradient. PyTorch convention: B has W's shape, and
`project(x, B)` is B applied the way the layer applies W (a linear map or a convolution).

Conventions (spec §A.3, "convention trap"): like the released Neural-Alignment primitives the
sums carry no ½ factor, so the code's coefficients are used as they are. Activity terms are
averaged over samples; for a conv layer "sample" means one output position of one image, so a
coefficient means the same at every depth and resolution. The released code sums over
positions instead, which scales the activity terms with the feature-map area [our choice].

The `*_grad` functions give ∂R/∂B in closed form; `pipeline.learning.alignments` fuses them
so that a rule costs at most two weight-gradient convolutions on a sub-batch, with no extra
autograd graph. Tests check every one against autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

# conv geometry: (stride, padding, dilation, groups) with int pairs; None for a linear layer.
Conv = tuple


def project(x: torch.Tensor, weight: torch.Tensor, conv: Conv | None = None) -> torch.Tensor:
    """W x without bias: (samples, in) → (samples, out), or conv2d with the layer's geometry."""
    if conv is None:
        return F.linear(x, weight)
    return F.conv2d(x, weight, None, *conv)


def project_transpose(y: torch.Tensor, weight: torch.Tensor, x_shape, conv: Conv | None = None):
    """Wᵀ y, the adjoint of `project`: a reconstruction in input space, or a downward signal."""
    if conv is None:
        return y @ weight
    return torch.nn.grad.conv2d_input(x_shape, weight, y, *conv)


def weight_grad(x: torch.Tensor, g: torch.Tensor, weight_shape, conv: Conv | None = None):
    """∂/∂W of Σ g ⊙ project(x, W): gᵀx for a linear layer, the conv weight gradient otherwise."""
    if conv is None:
        return g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])
    return torch.nn.grad.conv2d_weight(x, weight_shape, g, *conv)


@dataclass
class LayerTensors:
    """What one layer's alignment loss reads.

    Parameters
    ----------
    x : torch.Tensor
        Layer input (sample, in) or (image, channel_in, y, x), detached; or input noise.
    weight : torch.Tensor
        Forward weight W, detached.
    weight_fb : torch.Tensor
        Backward weight B (W's shape); the only tensor that may require grad.
    y_f : torch.Tensor
        Forward projection W x without bias, (sample, out) or (image, channel_out, y', x').
    conv : tuple, optional
        (stride, padding, dilation, groups) of a conv layer; None for a linear layer.
    """

    x: torch.Tensor
    weight: torch.Tensor
    weight_fb: torch.Tensor
    y_f: torch.Tensor
    conv: Conv | None = None

    @cached_property
    def y_b(self) -> torch.Tensor:
        """Backward projection B x, in output space."""
        return project(self.x, self.weight_fb, self.conv)

    @cached_property
    def r_f(self) -> torch.Tensor:
        """Forward reconstruction Bᵀ(W x), in input space (a transposed conv for conv layers)."""
        return project_transpose(self.y_f, self.weight_fb, self.x.shape, self.conv)

    @property
    def n_samples(self) -> int:
        """Samples the activity terms average over: rows of y_f, or images × output positions."""
        channels = self.y_f.shape[1] if self.conv is not None else self.y_f.shape[-1]
        return self.y_f.numel() // channels

    def weight_grad(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """∂/∂B of Σ g ⊙ project(x, B), with this layer's geometry."""
        return weight_grad(x, g, self.weight_fb.shape, self.conv)


# decay (local): R = ‖B‖²_F, ∇_B R = 2B. Energy efficiency of the backward weights.
def decay(t: LayerTensors) -> torch.Tensor:
    return (t.weight_fb ** 2).sum()


def decay_grad(t: LayerTensors) -> torch.Tensor:
    return 2 * t.weight_fb


# amp (local): R = −mean_n ⟨W x, B x⟩, ∇_B R = −mean_n (W x) xᵀ. Hebbian: input aligns with B's
# reconstruction of the output (Table 5.1, paper form −xᵀ B_p y).
def amp(t: LayerTensors) -> torch.Tensor:
    return -(t.y_f * t.y_b).sum() / t.n_samples


def amp_grad(t: LayerTensors) -> torch.Tensor:
    return -t.weight_grad(t.x, t.y_f) / t.n_samples


# null (local): R = mean_n ‖Bᵀ W x‖², ∇_B R = 2 mean_n (W x)(Bᵀ W x)ᵀ. Norm penalty on the
# reconstruction; Oja's normalising term (spec §A.4.4).
def null(t: LayerTensors) -> torch.Tensor:
    return (t.r_f ** 2).sum() / t.n_samples


def null_grad(t: LayerTensors) -> torch.Tensor:
    # ⟨r, Bᵀy⟩ = ⟨B r, y⟩ (the transposed projection is the adjoint), so with r = Bᵀy held
    # fixed, ∂/∂B ‖Bᵀy‖² = 2 ∂/∂B ⟨B r, y⟩.
    return 2 * t.weight_grad(t.r_f, t.y_f) / t.n_samples


# sparse (non-local): R = mean_n ‖B x‖², ∇_B R = 2 mean_n (B x) xᵀ. Energy of the backward
# projection; B would have to act on its own layer's input.
def sparse(t: LayerTensors) -> torch.Tensor:
    return (t.y_b ** 2).sum() / t.n_samples


def sparse_grad(t: LayerTensors) -> torch.Tensor:
    return 2 * t.weight_grad(t.x, t.y_b) / t.n_samples


# self (non-local): R = −⟨W, B⟩_F (paper form −tr(B_p W)), ∇_B R = −W. B's update reads W.
def self_(t: LayerTensors) -> torch.Tensor:
    return -(t.weight * t.weight_fb).sum()


def self_grad(t: LayerTensors) -> torch.Tensor:
    return -t.weight


PRIMITIVES = {"decay": decay, "amp": amp, "null": null, "sparse": sparse, "self": self_}
GRADIENTS = {"decay": decay_grad, "amp": amp_grad, "null": null_grad, "sparse": sparse_grad,
             "self": self_grad}
