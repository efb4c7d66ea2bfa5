"""A conv layer that learns by SoftHebb (soft winner-take-all, anti-Hebbian losers), no autograd.

We follow SoftHebb (Journé et al. 2022, "Hebbian deep learning without feedback", ICLR 2023;
public code NeuromorphicComputing/SoftHebb) rather than Lagani's hard winner-take-all of spec
§C.3 with its raised-cosine competition. Lagani's rule, and the soft version of it this layer
used before, moves every kernel *toward* the patches it wins: on the ventral CNN the kernels
drifted to the same few patch centroids and the readout on them stayed below one on the
untrained random kernels (5.6 % vs 7.3 %, chance 3.1 %). SoftHebb's additions address that
directly: losers move *away* from the patch (anti-Hebbian), which spreads the kernels over the
patch distribution, and each kernel's learning rate falls as its norm reaches 1, so learning
settles. Lagani's lateral-feedback kernels spread winners over the map, not over the patches,
and need a kernel shape and width besides.

Per training batch, with x̃_p = x_p − μ the patch at output position p of the input centred
on its batch mean per channel (SoftHebb's BatchNorm without affine before every Hebbian
layer; the ventral CNN's BatchNorms already equalise the channels' scales) and u_kp = w_k·x̃_p:

    y_kp = ± softmax_k(u_kp / T)          + for the winner argmax_k u_kp, − for every loser
    Δw_k = Σ_p y_kp (x̃_p − u_kp w_k)      Oja-like: a winner's norm is drawn to 1
    η_k  = η · sqrt(|‖w_k‖ − 1|)           SoftHebb's norm-dependent learning rate
    w_k ← w_k + η_k Δw_k / max_j ‖Δw_j‖

The kernels are rescaled to norm `INITIAL_NORM` > 1 on conversion (their directions, and so
the untrained network's features, are kept), as SoftHebb starts far above the unit norm: a
winner's norm then falls, its responses shrink and its competitors take over. SoftHebb scales
Δ by its largest element and tunes η per layer; here one η serves fan-ins from 27 to 1152, so
Δ is scaled by its largest kernel norm instead [our choice].

Output: the projection w_k·x_p / ‖w_k‖ (Lagani's; independent of the norms the rule moves)
minus its mean over the layer's units at each position, the centring of SoftHebb's triangle
activation (the BatchNorm and ReLU after each conv complete it). Without it every area4
feature of the Hebbian ventral CNN followed one common factor (the top principal component
held 93 % of their variance), which made the readout's SGD unstable; the untrained control
(lr 0) has the same centring. The update reads only the layer's input x (pre-synaptic
activity) and its projection (post-synaptic activity; u_kp = ‖w_k‖·proj_kp − w_k·μ). The
weights are parameters without gradient, changed by `hebbian_step` after each training batch;
a supervised readout trained by SGD sits on top, refit to convergence on the frozen features
after every epoch by default (`HEBBIAN_READOUTS`; `pipeline.learning.rules.HebbianRule`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.layers import symmetric_padding

_EPS = 1e-12
# How the readout learns: "fit", refit to convergence on the frozen features after every
# epoch besides its SGD steps (SoftHebb trains its classifier on the frozen Hebbian layers);
# "sgd", the SGD steps alone.
HEBBIAN_READOUTS = ("fit", "sgd")
# Kernel norm at conversion: above the unit norm the rule converges to, so that a kernel's
# norm falls while it wins (SoftHebb starts near 25; 4 lets the default run's 125 updates
# bring the kernels that win to norm 1) [our choice].
INITIAL_NORM = 4.0


class HebbianConv2d(nn.Conv2d):
    """nn.Conv2d trained by the SoftHebb rule; groups must be 1.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode
        As nn.Conv2d. The bias is frozen at zero: the rule learns kernels only.
    lr : float
        Hebbian learning rate η (0: the kernels stay as initialised).
    temperature : float
        Softmax temperature T of the competition, on the responses u = w·x̃.

    Attributes
    ----------
    cache : tuple or None
        (input, output) of the last training forward pass, until `hebbian_step`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=False, padding_mode="zeros", *, lr: float = 0.1,
                 temperature: float = 1.0, device=None, dtype=None):
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
        if not layer.weight.is_meta:
            with torch.no_grad():
                norms = layer.weight.flatten(1).norm(dim=1).clamp_min(_EPS)
                layer.weight.mul_((INITIAL_NORM / norms).view(-1, 1, 1, 1))
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
        if self.training and self.lr:
            self.cache = (x.detach(), proj.detach())
        proj = proj - proj.mean(1, keepdim=True)          # the triangle's centring over units
        return proj if self.bias is None else proj + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def hebbian_update(self, x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """New kernels from pre-synaptic input x (image, c_in, y, x) and the layer's output proj.

        `proj` is the projection w_k·x_p / ‖w_k‖ the layer computed for x (image, unit, y', x');
        returns a tensor of the weight's shape (see the module docstring for the rule).
        """
        stride, padding, dilation, _ = self.conv
        weight = self.weight
        norms = weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        mean = x.mean((0, 2, 3), keepdim=True)
        centred = x - mean
        # u = w·x̃_p = ‖w‖·proj − w·μ_p; the conv of the constant image μ keeps the zero
        # padding exact.
        u = (proj * norms.view(1, -1, 1, 1)
             - F.conv2d(mean.expand(1, *x.shape[1:]), weight, None, stride, padding, dilation))
        soft = torch.softmax(u / self.temperature, dim=1)
        # Losers' shares underflow to subnormal floats, which make the CPU's weight-gradient
        # convolution ~15x slower; they add nothing to the sums below, so they are zeroed.
        soft.masked_fill_(soft < torch.finfo(soft.dtype).tiny, 0.0)
        sign = torch.full_like(soft, -1.0).scatter_(1, u.argmax(1, keepdim=True), 1.0)
        y = soft * sign                                                 # anti-Hebbian losers
        yx = torch.nn.grad.conv2d_weight(centred, weight.shape, y, stride, padding, dilation)
        yu = (y * u).sum((0, 2, 3)).view(-1, 1, 1, 1)                   # Σ_p y_kp u_kp
        delta = yx - yu * weight
        delta = delta / delta.flatten(1).norm(dim=1).max().clamp_min(_EPS)
        return weight + self.lr * (norms - 1).abs().sqrt() * delta

    @torch.no_grad()
    def hebbian_step(self) -> None:
        """Apply the update of the last training forward pass, then forget it."""
        if self.cache is not None:
            self.weight.copy_(self.hebbian_update(*self.cache))
            self.cache = None

    def extra_repr(self):
        return f"{super().extra_repr()}, lr={self.lr}, temperature={self.temperature}"
