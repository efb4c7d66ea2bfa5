"""A convolutional recurrent net (spec §4.1): the ventral-stream CNN unrolled over time steps.

Each area is a `VentralCNN` area block whose last ReLU is replaced by a local recurrent cell,
the reciprocal gated cell (spec eq. 2.1: conv, cell, nonlinearity, pooling). The cell runs on
the max-pooled conv output, a quarter of the positions: max-pool and ReLU commute, so at zero
state this is the backbone's pool(ReLU(·)) exactly. Long-range feedback carries a higher
area's output, bilinearly resized and passed through a conv, into a lower area's cell input
one step later (eq. 2.1's concatenate-then-conv, split into a conv per input). With ``ff_delay=1`` (the spec's
"biological unrolling") every feedforward edge also takes one step, so area k first responds
at step k - 1 (0-based) and the readout first sees the image at step ``len(AREAS) - 1``;
``ff_delay=0`` runs the whole feedforward sweep inside each step.

A fresh cell passes its input straight through at zero state (its gates start at 1), so a
ConvRNN with the backbone's weights computes the backbone's function on the first step each
area responds: the feedforward net is the special case with no recurrence (spec §4.1).

Every rule converts it (plain Conv2d/Linear), but only backprop has been seen to train it:
under feedback alignment at lr 0.01 the training loss rose over the first 45 steps, where the
feedforward backbone's fell (the cell states are not normalised, unlike the backbone's BN).

Presentation and readout over time (spec §4.1, §2.5.6). ``image_steps`` shows the image for that
many steps and mean grey afterwards (0 after standardisation: the preprocessing's per-channel
mean colour); the spec evaluates 10 image + 15 grey steps (`present`). ``decoder`` picks the step
whose logits are the output, per image: ``last`` (the spec's Default), ``threshold`` (the first
step whose top softmax probability exceeds ``threshold``) or ``max_confidence`` (the step where
the top probability peaks); `threshold_decoder` and `max_confidence_decoder` do the same on
stored logits (batch, time, class).

Differences from the thesis' model, and why:

- Backbone: the 4-area ventral CNN (conv-BN pairs, ReLU, max-pool), not the 6- or 11-layer
  BaseNets; every area has a cell (the spec implants them into conv3–5 or conv4–10 only), so the
  small default net still has recurrence in its lower half.
- Cell decays are sigmoids in (0, 1), not 1 - tanh in (0, 2): with the original's, the states
  grew step by step and training at lr 0.01 diverged.
- The output nonlinearity is ReLU (ELU in the original) and the cell runs after the max-pool,
  so a fresh cell reproduces the feedforward backbone exactly (tested).
- Feedback is resized, passed through its own conv and added to the cell input, rather than
  concatenated before the area's conv: the same linear map, split per input, which leaves the
  backbone's conv weights loadable.
- Training unrolls 8 steps with the image always on (CPU budget; the spec trains 16–17 steps
  with grey after step 12); the weights are shared over steps, so evaluation may unroll longer
  and present grey (`present`).
- Max-confidence has no learned scalar (the thesis' is stripped from the text): it decides at the
  step where the top softmax probability peaks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.ventral_cnn import AREAS, _conv_bn_relu, check_areas

# Default long-range feedback edges (source, destination): each two areas down.
FEEDBACK = (("area3", "area1"), ("area4", "area2"))
# Readouts over time (spec §4.1 Decoders): the step whose logits a ConvRNN outputs, per image.
DECODERS = ("last", "threshold", "max_confidence")


def _confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top softmax probability and its class at every step; logits (batch, time, class)."""
    return logits.softmax(-1).max(-1)


def threshold_decoder(logits: torch.Tensor, threshold: float = 0.9
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the first step whose top softmax probability exceeds `threshold`, and the
    class it predicts there (spec §4.1 Threshold decoder: 0.9).

    An image whose confidence never passes is decided at the last step, as the default readout.

    Parameters
    ----------
    logits : torch.Tensor
        (batch, time, class).
    threshold : float
        In (0, 1).

    Returns
    -------
    step, prediction : torch.Tensor
        (batch,) int64 each.
    """
    confidence, classes = _confidence(logits)
    passed = confidence > threshold
    last = torch.full_like(passed[:, 0], logits.shape[1] - 1, dtype=torch.int64)
    # argmax of a 0/1 row is its first 1 (torch returns the first of tied maxima)
    step = torch.where(passed.any(1), passed.to(torch.int64).argmax(1), last)
    return step, classes.gather(1, step[:, None])[:, 0]


def max_confidence_decoder(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the step where the top softmax probability peaks (the first of ties), and
    the class it predicts there (spec §4.1 Max-Confidence decoder, without its learned scalar).

    Parameters
    ----------
    logits : torch.Tensor
        (batch, time, class).

    Returns
    -------
    step, prediction : torch.Tensor
        (batch,) int64 each.
    """
    confidence, classes = _confidence(logits)
    step = confidence.argmax(1)
    return step, classes.gather(1, step[:, None])[:, 0]


def _gate_conv(channels: int) -> nn.Conv2d:
    """3×3 conv from a state to a gate pre-activation: bias 0, weights a tenth of the default.

    Small gate weights start the cell near plain leaky integration, as the convrnns code
    starts its gate and decay convs (batch-norm gain 0.1, `gate_tau_bn_gamma_init`).
    """
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(0.1)
        conv.bias.zero_()
    return conv


class ReciprocalGatedCell(nn.Module):
    """Reciprocal gated cell: a memory c and an output h that gate each other's inputs.

    After `ReciprocalGateCell` of neuroailab/convrnns (input gates 1 - tanh, its defaults'
    offset 1 and multiplier -1; feedback entering the output's input), with x_t the area's
    conv output:

        c_t = ELU( σ(W_cc ⊛ c_{t-1}) ∘ c_{t-1} + (1 - tanh(W_hc ⊛ h_{t-1})) ∘ (W_xc ⊛ x_t) )
        h_t = ReLU( σ(W_hh ⊛ h_{t-1}) ∘ h_{t-1} + (1 - tanh(W_ch ⊛ c_{t-1})) ∘ x_t )

    The gate biases start at 0, so at zero state h_1 = ReLU(x_1) exactly (direct passthrough).
    The decays ("tau") are sigmoids in (0, 1), starting at 1/2 [our choice]: the original's
    1 - tanh decay reaches 2, and with it the states grew step by step and training at
    lr 0.01 diverged. The output nonlinearity is the backbone's ReLU (ELU in the original),
    so that passthrough reproduces the backbone.

    Parameters
    ----------
    channels : int
        Channels of x, h and c.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.input_to_cell = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.cell_tau = _gate_conv(channels)                 # W_cc
        self.cell_gate = _gate_conv(channels)                # W_hc
        self.out_tau = _gate_conv(channels)                  # W_hh
        self.out_gate = _gate_conv(channels)                 # W_ch

    def forward(self, x, state=None):
        """New (h, c) from the input x (batch, channel, y, x) and the previous (h, c) or None."""
        h, c = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        c_new = F.elu(torch.sigmoid(self.cell_tau(c)) * c
                      + (1 - torch.tanh(self.cell_gate(h))) * self.input_to_cell(x))
        h_new = F.relu(torch.sigmoid(self.out_tau(h)) * h
                       + (1 - torch.tanh(self.out_gate(c))) * x)
        return h_new, c_new


class RecurrentArea(nn.Module):
    """One area: two conv-BN stages (ReLU between), 2×2 max-pool, feedback added, the cell.

    `ff` holds the same modules as the first five of a `VentralCNN` area block, so the
    backbone's weights load into it.

    Parameters
    ----------
    n_in, n_out : int
        Input and output channels.
    out_size : int
        Height = width of the output (after pooling), where the cell runs.
    feedback_channels : tuple of int
        Channels of each feedback source entering this area, in `FEEDBACK` order.
    """

    def __init__(self, n_in: int, n_out: int, out_size: int, feedback_channels=()):
        super().__init__()
        self.ff = nn.Sequential(*_conv_bn_relu(n_in, n_out), *_conv_bn_relu(n_out, n_out)[:2])
        self.cell = ReciprocalGatedCell(n_out)
        self.feedback = nn.ModuleList(nn.Conv2d(c, n_out, 3, padding=1, bias=False)
                                      for c in feedback_channels)
        self.pool = nn.MaxPool2d(2)
        self.out_shape = (n_out, out_size, out_size)

    def drive(self, x):
        """The feedforward drive of the cell: max-pooled conv-BN output for input x."""
        return self.pool(self.ff(x))

    def forward(self, x, state=None, feedback=(), *, batch=None, drive=None):
        """(output (batch, n_out, y/2, x/2), new state (h, c)) for input x and feedback tensors.

        `feedback` holds one tensor or None per feedback source (None: no signal yet).
        `drive`, when given, is `self.drive(x)` computed already (x is then ignored). With
        neither (no input has reached the area yet) the output is zeros shaped for `batch`
        and the state stays None.
        """
        if x is None and drive is None:
            return batch.new_zeros(batch.shape[0], *self.out_shape), None
        drive = self.drive(x) if drive is None else drive
        for conv, fb in zip(self.feedback, feedback):
            if fb is not None:     # enters the cell's input, as convrnns' feedback_entry="out"
                fb = F.interpolate(fb, size=drive.shape[-2:], mode="bilinear", align_corners=False)
                drive = drive + conv(fb)
        h, c = self.cell(drive, state)
        return h, (h, c)


class ConvRNN(nn.Module):
    """Four recurrent ventral-stream areas with long-range feedback and a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 2**4.
    widths : tuple of int
        Channels of area1..area4.
    in_channels : int
        Input channels (3 for RGB).
    time_steps : int
        Steps unrolled (spec: 26 at evaluation; 8 keeps CPU training short while leaving four
        steps of recurrence after area4's first response).
    ff_delay : {1, 0}
        Steps each feedforward edge takes: 1, the spec's biological unrolling; 0, the whole
        feedforward sweep within one step. Feedback and recurrent edges always take one step.
    feedback : tuple of (str, str)
        (source, destination) area pairs of long-range feedback, source above destination.
    image_steps : int or None
        Steps the image is shown, 1 … time_steps; mean grey (zeros) afterwards. None: the
        image at every step (the training default).
    decoder : {"last", "threshold", "max_confidence"}
        Which step's logits `forward` returns, per image (`DECODERS`).
    threshold : float
        Confidence the threshold decoder waits for, in (0, 1).

    Attributes
    ----------
    layer_names : tuple of str
        `area1`..`area4` (after pooling) and `readout`; `layer_outputs` returns each at every
        time step, (batch, time, ...). An area that has no input yet (``ff_delay=1``) outputs
        zeros.
    time_steps : int
        Marks the model as recurrent for `layer_outputs` and the activations store.
    """

    def __init__(self, n_classes: int, input_size: int, *, widths=(16, 32, 64, 128),
                 in_channels: int = 3, time_steps: int = 8, ff_delay: int = 1,
                 feedback=FEEDBACK, image_steps: int | None = None, decoder: str = "last",
                 threshold: float = 0.9):
        super().__init__()
        check_areas(widths, input_size)
        if ff_delay not in (0, 1):
            raise ValueError(f"ff_delay must be 0 or 1; got {ff_delay!r}")
        for src, dst in feedback:
            if src not in AREAS or dst not in AREAS or AREAS.index(src) <= AREAS.index(dst):
                raise ValueError(f"feedback edge ({src!r}, {dst!r}) must go from a higher to a "
                                 f"lower area among {AREAS}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}; got {decoder!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1); got {threshold!r}")
        self.ff_delay, self.feedback_edges = ff_delay, tuple(feedback)
        self.decoder, self.threshold = decoder, threshold
        self._set_steps(time_steps, image_steps)
        channels = dict(zip(AREAS, widths))
        n_in = (in_channels, *widths[:-1])
        for k, name in enumerate(AREAS):
            sources = tuple(channels[src] for src, dst in self.feedback_edges if dst == name)
            self.add_module(name, RecurrentArea(n_in[k], channels[name], input_size // 2 ** (k + 1),
                                                sources))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.readout = nn.Linear(widths[-1], n_classes)
        self.layer_names = (*AREAS, "readout")

    def _set_steps(self, time_steps, image_steps) -> None:
        if not (isinstance(time_steps, int) and time_steps >= 1):
            raise ValueError(f"time_steps must be an int >= 1; got {time_steps!r}")
        if image_steps is not None and not (isinstance(image_steps, int)
                                            and 1 <= image_steps <= time_steps):
            raise ValueError(f"image_steps must be None or an int in 1…time_steps "
                             f"({time_steps}); got {image_steps!r}")
        self.time_steps, self.image_steps = time_steps, image_steps

    def present(self, image_steps: int, grey_steps: int) -> ConvRNN:
        """Unroll `image_steps` steps of the image, then `grey_steps` of mean grey (in place).

        The weights are shared over steps, so a net trained on fewer steps can be evaluated on
        the spec's 10 image + 15 grey steps (§2.5.6). Returns the model.
        """
        if not (isinstance(image_steps, int) and image_steps >= 1):
            raise ValueError(f"image_steps must be an int >= 1; got {image_steps!r}")
        if not (isinstance(grey_steps, int) and grey_steps >= 0):
            raise ValueError(f"grey_steps must be an int >= 0; got {grey_steps!r}")
        self._set_steps(image_steps + grey_steps, image_steps)
        return self

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x), at the step `decoder`
        picks per image (the last step by default).

        Every area and the readout run once per step (silent areas output zeros), so forward
        hooks see one call per step. The image (and the grey screen) is the same at every step
        it is shown, so area1's feedforward drive is computed once for each.
        """
        image_drive, grey_drive = getattr(self, AREAS[0]).drive(x), None
        outputs = {name: None for name in AREAS}
        states = {name: None for name in AREAS}
        logits = []
        for t in range(self.time_steps):
            previous = dict(outputs)                 # outputs of step t - 1
            shown = self.image_steps is None or t < self.image_steps
            if not shown and grey_drive is None:
                grey = torch.zeros_like(x)           # standardised mean grey
                grey_drive = getattr(self, AREAS[0]).drive(grey)
            for k, name in enumerate(AREAS):
                if k == 0:
                    source, drive = (x, image_drive) if shown else (grey, grey_drive)
                elif self.ff_delay == 0:
                    source, drive = outputs[AREAS[k - 1]], None
                else:                               # area k first responds at step k
                    source, drive = (previous[AREAS[k - 1]] if t >= k else None), None
                fb = [previous[src] for src, dst in self.feedback_edges if dst == name]
                outputs[name], states[name] = getattr(self, name)(
                    source, states[name], fb, batch=x, drive=drive)
            logits.append(self.readout(self.pool(outputs[AREAS[-1]]).flatten(1)))
        if self.decoder == "last":
            return logits[-1]
        logits = torch.stack(logits, dim=1)         # (batch, time, class)
        with torch.no_grad():                        # the decision itself is not learned
            step = (threshold_decoder(logits, self.threshold)[0] if self.decoder == "threshold"
                    else max_confidence_decoder(logits)[0])
        return logits[torch.arange(len(logits)), step]
