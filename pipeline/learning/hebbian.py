"""A conv layer that learns by local soft winner-take-all competition, with no autograd.

After Lagani's HebbianLearningThesis `hebbmodel/hebb.py` (spec §C.3): kernels compete for the
input patches and move toward the patches they win ("base" rule), and the output is the
projection w_i·x_p / ‖w_i‖. Per training batch, with x̃_p = x_p − μ the patch at output
position p of the input centred on its batch mean per channel (the covariance form of the
Hebbian rule):

    s_ip = ((cos(x̃_p, w_i) + 1) / 2)²                 raised cosine squared (Lagani's similarity)
    r_ip = softmax_i(s_ip / T)                         soft winner-take-all at each position
    Δw_i = η Σ_p r_ip (x̃_p − w_i) / max(Σ_p r_ip, P / C)
    w_i ← (w_i + Δw_i) · ‖w_i‖ / ‖w_i + Δw_i‖           the kernel's norm is kept (Oja-style bound)

with P positions in the batch and C units. Three changes to Lagani's hard-WTA rule, each
because the plain soft version collapsed on this network (its kernels converged to the mean
patch of the non-negative post-ReLU inputs and the readout fell to chance) [our choice]:
centring; dividing by at least the fair share P / C, so a unit that wins little moves little
(Lagani divides by Σ_p r_ip, which is 0 for hard losers, but every unit wins a little under a
softmax); and the norm bound, since patch centroids are many times longer than the initial
kernels. Even so, on the embedded default the readout of a Hebbian ventral_cnn stays weak
(about 6% after 5 epochs, chance 3%), below one on its untrained random kernels (about 7%). The update reads only the layer's input (pre-synaptic activity) and its
output (post-synaptic activity: cos(x̃_p, w_i) = (proj_ip − w_i·μ / ‖w_i‖) / ‖x̃_p‖). The
weights are parameters without gradient, changed by `hebbian_step` after each training batch;
a supervised readout trained by SGD sits on top (`pipeline.learning.rules`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.layers import symmetric_padding

_EPS = 1e-12


class HebbianConv2d(nn.Conv2d):
    """nn.Conv2d trained by the soft-WTA Hebbian rule; groups must be 1.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode
        As nn.Conv2d. The bias is frozen at zero: the rule learns kernels only.
    lr : float
        Hebbian learning rate η.
    temperature : float
        Softmax temperature T of the competition, on similarities in [0, 1].

    Attributes
    ----------
    cache : tuple or None
        (input, projection) of the last training forward pass, until `hebbian_step`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=False, padding_mode="zeros", *, lr: float = 0.02,
                 temperature: float = 0.003, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1,
                         bias, padding_mode, device=device, dtype=dtype)
        self.lr, self.temperature = lr, temperature
        inner = (0, 0) if padding_mode != "zeros" else symmetric_padding(self)
        self.conv = (tuple(self.stride), inner, tuple(self.dilation), 1)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
            if not self.bias.is_meta:
                self.bias.zero_()
        self.cache = None

    @classmethod
    def from_module(cls, conv: nn.Conv2d, *, lr: float, temperature: float) -> "HebbianConv2d":
        """A Hebbian layer starting from `conv`'s kernels (same parameters, now without grad)."""
        if conv.groups != 1:
            raise ValueError(f"{conv}: the Hebbian conv layer needs groups=1; got {conv.groups}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.bias is not None, conv.padding_mode,
                    lr=lr, temperature=temperature, device="meta")
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
            with torch.no_grad():
                layer.bias.zero_()
        layer.train(conv.training)
        return layer

    def forward(self, x):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        norms = self.weight.flatten(1).norm(dim=1).clamp_min(_EPS)
        proj = F.conv2d(x, self.weight, None, *self.conv) / norms.view(1, -1, 1, 1)
        if self.training:
            self.cache = (x.detach(), proj.detach())
        return proj if self.bias is None else proj + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def hebbian_update(self, x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """New kernels from pre-synaptic input x (image, c_in, y, x) and the layer's output proj.

        `proj` is the projection w_i·x_p / ‖w_i‖ the layer computed for x (image, unit, y', x');
        returns a tensor of the weight's shape (see the module docstring for the rule).
        """
        stride, padding, dilation, _ = self.conv
        weight = self.weight
        norms = weight.flatten(1).norm(dim=1).clamp_min(_EPS).view(1, -1, 1, 1)
        mean = x.mean((0, 2, 3), keepdim=True)
        centred = x - mean
        # w·x̃_p = w·x_p − w·μ_p; the conv of the constant image μ keeps the zero padding exact.
        offset = F.conv2d(mean.expand(1, *x.shape[1:]), weight, None, stride, padding, dilation)
        ones = x.new_ones(1, *weight.shape[1:])
        patch_norm = F.conv2d(centred * centred, ones, None, stride, padding, dilation).sqrt()
        cos = (proj - offset / norms) / patch_norm.clamp_min(_EPS)
        r = torch.softmax(((cos + 1) / 2) ** 2 / self.temperature, dim=1)
        # Losers' shares underflow to subnormal floats, which make the CPU's weight-gradient
        # convolution ~15x slower; they add nothing to the sums below, so they are zeroed.
        r.masked_fill_(r < torch.finfo(r.dtype).tiny, 0.0)
        won = torch.nn.grad.conv2d_weight(centred, weight.shape, r, stride, padding, dilation)
        total = r.sum((0, 2, 3)).view(-1, 1, 1, 1)                     # Σ_p r_ip
        fair_share = r.numel() / r.shape[1] ** 2                      # P / C
        new = weight + self.lr * (won - total * weight) / total.clamp_min(fair_share)
        new_norms = new.flatten(1).norm(dim=1).clamp_min(_EPS).view(-1, 1, 1, 1)
        return new * (norms.view(-1, 1, 1, 1) / new_norms)

    @torch.no_grad()
    def hebbian_step(self) -> None:
        """Apply the update of the last training forward pass, then forget it."""
        if self.cache is not None:
            self.weight.copy_(self.hebbian_update(*self.cache))
            self.cache = None

    def extra_repr(self):
        return f"{super().extra_repr()}, lr={self.lr}, temperature={self.temperature}"
