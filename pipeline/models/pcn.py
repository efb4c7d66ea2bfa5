"""Wen et al.'s deep predictive coding network (PCN v1, ICML 2018): an *architecture*.

Not a learning rule: its predictive coding is inference inside the forward pass, a fixed
number of recurrent cycles, and the whole unrolled network is trained end to end by whatever
rule the model name gives (backprop in Wen et al.; spec §C.3, "label it as such"). Compare
with the learning rule `pc` (pipeline.learning.predictive_coding), where prediction errors
drive the weight updates.

Per layer ℓ a feedforward conv W_f (3×3, then a 2×2 max-pool) and a feedback transposed conv
W_b (2× bilinear upsampling, then 3×3), untied. After the feedforward sweep
r_ℓ = ReLU(W_f,ℓ r_{ℓ−1}) (r_0 the image), each of `cycles` cycles runs, after the authors'
global-recurrence code (libilab/PCN-with-Global-Recurrent-Processing, `PredNet`):

    top-down, ℓ = L … 2:  p_{ℓ−1} = W_b,ℓ r_ℓ;   r_{ℓ−1} ← ReLU(a_ℓ p_{ℓ−1} + (1 − a_ℓ) r_{ℓ−1})
    bottom-up, ℓ = 1 … L: r_ℓ ← ReLU(r_ℓ + b_ℓ W_f,ℓ (r_{ℓ−1} − p_{ℓ−1}))     p_0 = W_b,1 r_1

with per-channel rates a = ReLU(a₀) (a₀ starts at 0.5) and b = ReLU(b₀) (b₀ starts at 1),
learned. A global average pool and a linear readout follow the last layer. The authors' nets
have 8 layers of 64–256 channels for CIFAR; here four of `widths` (16/32/64/128 by default,
the ventral CNN's) pooled at every layer, so a 32 px image reaches 2×2 as in the ventral CNN
[our choice, for CPU training]. `cycles=0` is the feedforward CNN (no feedback convs used).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYERS = ("pc1", "pc2", "pc3", "pc4")


class PCN(nn.Module):
    """Four predictive-coding conv layers with feedback, `cycles` cycles, a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 16 (one 2×2 pool per layer).
    widths : tuple of int
        Channels of the four layers.
    cycles : int
        Recurrent prediction cycles after the feedforward sweep (Wen et al.'s `cls`).
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        `pc1`..`pc4` (each layer's representation r_ℓ after the last cycle) and `readout`.
    """

    def __init__(self, n_classes: int, input_size: int, *, widths=(16, 32, 64, 128),
                 cycles: int = 3, in_channels: int = 3):
        super().__init__()
        if len(widths) != len(LAYERS):
            raise ValueError(f"widths must give {len(LAYERS)} channel counts; got {widths!r}")
        if input_size < 2 ** len(LAYERS):
            raise ValueError(f"input_size must be at least {2 ** len(LAYERS)} (one 2×2 pool "
                             f"per layer); got {input_size}")
        if cycles < 0:
            raise ValueError(f"cycles must be ≥ 0; got {cycles}")
        self.cycles = cycles
        channels = (in_channels, *widths)
        self.feedforward = nn.ModuleList(
            nn.Conv2d(n_in, n_out, 3, padding=1, bias=False)
            for n_in, n_out in zip(channels[:-1], channels[1:]))
        self.feedback = nn.ModuleList(
            nn.ConvTranspose2d(n_out, n_in, 3, padding=1, bias=False)
            for n_in, n_out in zip(channels[:-1], channels[1:]))
        self.a0 = nn.ParameterList(nn.Parameter(torch.full((1, n, 1, 1), 0.5))
                                   for n in widths[:-1])
        self.b0 = nn.ParameterList(nn.Parameter(torch.ones(1, n, 1, 1)) for n in widths)
        # identities whose outputs are the compared layers (read by forward hooks)
        for name in LAYERS:
            self.add_module(name, nn.Identity())
        self.readout = nn.Linear(widths[-1], n_classes)
        self.layer_names = (*LAYERS, "readout")

    def _up(self, i, r):
        """Feedback prediction of layer i's input from its representation r."""
        return self.feedback[i](F.interpolate(r, scale_factor=2, mode="bilinear"))

    def _down(self, i, x):
        return F.max_pool2d(self.feedforward[i](x), 2)

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        n = len(self.feedforward)
        r = []
        for i in range(n):
            r.append(F.relu(self._down(i, x if i == 0 else r[-1])))
        for _ in range(self.cycles):
            predictions = [None] * n
            for i in range(n - 1, 0, -1):                         # top-down
                predictions[i - 1] = self._up(i, r[i])
                a = F.relu(self.a0[i - 1])
                r[i - 1] = F.relu(a * predictions[i - 1] + (1 - a) * r[i - 1])
            for i in range(n):                                   # bottom-up error correction
                below = x - self._up(0, r[0]) if i == 0 else r[i - 1] - predictions[i - 1]
                r[i] = F.relu(r[i] + F.relu(self.b0[i]) * self._down(i, below))
        for i, name in enumerate(LAYERS):
            r[i] = getattr(self, name)(r[i])
        return self.readout(r[-1].mean((2, 3)))
