"""Burstprop: rate-based burst-dependent plasticity (Payeur et al. 2021) on any model's layers.

Spec §C.3, checked against the authors' rate-based code (jordan-g/Burstprop, `layers.py`,
`networks.py`). Every Linear and Conv2d becomes a feedback layer (`FBLinear`/`FBConv2d`, its B
the feedback weights Y) whose output passes through a burst gate. One forward pass gives the
event rates; two top-down passes share it, a *baseline* pass without the teacher and a
*teacher* pass. In each, a layer's gate turns the apical input u arriving from above into a
burst probability and sends the burst rate b down through Y:

    output layers   p = p̄ (1 + u − g̃)        (g̃ = the teacher, in the teacher pass only)
    hidden layers   p = σ(β (u − Z b_pre))      (β = `gain`, 1 in the paper)
    b = p,   ΔW = η (b^t − b) e_{ℓ−1}ᵀ,   ΔY = ΔW (burstprop_kp).

The teacher g̃ is the loss gradient at the output layer's output per image (M·∂L/∂a_L for a
batch-mean loss of M images), so with the sigmoid-MSE loss of the paper
p^t − p = p̄ (y* − e)(1 − e)·… and δ_L = −(b^t − b) = p̄ · (the sigmoid-MSE backprop delta),
and with any other objective its gradient plays y* − e. Output layers are found once per model:
those whose outputs no other weight layer reads (a layer read by both the loss and
other layers, such as the autoencoder's code under its L1 penalty, is hidden: its direct loss
term is not taught).

Generalisation to any architecture [our choice]: the gates sit at the Linear/Conv2d outputs
(pre-activations), and the apical signal reaches them through the backward pass of whatever
lies between layers (ReLU, BatchNorm, pooling, additions) and through Y. The factor
(1 − e_ℓ) of the paper's u and the factor e_ℓ of its b = p e multiply to σ'(a_ℓ); here the
backward pass of the model's own nonlinearity supplies f'(a_ℓ) in u, and b = p. Both give
b^t − b ≈ σ'(u) f'(a) Yᵀ(b^t_{ℓ+1} − b_{ℓ+1}) to first order; only the baseline operating
point of σ differs. The optional recurrent weights Z (1×1 across channels for convs, the
code's full matrix would be (C·H·W)²) cancel the baseline apical input: b_pre = σ(u) of the
baseline pass, ΔZ = η_Z · mean(u b_preᵀ) (the code's −∇ of `grad_weight_r`), as in the paper.
"""

from __future__ import annotations

import logging
import weakref

import torch
from torch import nn
from torch.autograd import Function

from pipeline.learning.alignments import Feedback, KolenPollack
from pipeline.learning.convert import feedback_layers
from pipeline.learning.rules import FeedbackRule, task_loss

log = logging.getLogger(__name__)

__all__ = ["BurstpropRule"]


class _Gate(Function):
    """Identity forward (a copy, so in-place activations after a layer leave its output
    alone); backward hands the incoming apical signal to the call's record.

    The record is held weakly: it holds the gate's output, whose graph holds this node, and
    Python's collector cannot break a cycle through autograd's nodes, so a strong reference kept
    every step's records alive. The rule holds them for the step (`BurstpropRule._calls`)."""

    @staticmethod
    def forward(ctx, a, call):
        ctx.call = weakref.ref(call)
        return a.clone()

    @staticmethod
    def backward(ctx, signal):
        return ctx.call().burst(signal), None


class _Call:
    """One call of one layer in a training step: its output and what its gate remembers.

    Attributes
    ----------
    layer : nn.Module
        The FB layer.
    output : torch.Tensor
        The gated output (batch, ...).
    leaf : torch.Tensor or None
        What the model reads of an output layer: a detached copy of `output` that requires
        grad, whose gradient is the teacher.
    teacher : torch.Tensor or None
        Per-image loss gradient at `output` (output layers, teacher pass).
    b_pre : torch.Tensor or None
        σ(u) of the baseline pass, read by Z (recurrent cancellation).
    u_baseline : torch.Tensor or None
        The baseline pass's apical input less Z b_pre, read by Z's update.
    """

    def __init__(self, rule: "BurstpropRule", layer: nn.Module):
        self.rule, self.layer = rule, layer
        self.output = self.leaf = None
        self.teacher = self.b_pre = self.u_baseline = None

    def burst(self, signal: torch.Tensor) -> torch.Tensor | None:
        """Burst rate b / M for the incoming signal (apical input / M) of the current pass."""
        rule = self.rule
        if rule.mode == "probe":                  # finding output layers: block everything
            return None
        m = rule.images
        u = signal * m
        if getattr(self.layer, "burst_output", False):
            p = u.add_(1).mul_(rule.p_baseline)                      # p̄ (1 + u)
            if rule.mode == "teacher" and self.teacher is not None:
                p = p.sub_(self.teacher, alpha=rule.p_baseline)      # − p̄ g̃
        else:
            z = getattr(self.layer, "burst_recurrent", None)
            if z is not None:
                if rule.mode == "baseline":
                    self.b_pre = torch.sigmoid(rule.gain * u)
                u = u - _recurrent(z, self.b_pre)
                if rule.mode == "baseline":
                    self.u_baseline = u
            p = torch.sigmoid(rule.gain * u)
        return p.div_(m)


def _recurrent(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Z b over the channel axis (dim 1): Linear (batch, C) or conv (batch, C, y, x)."""
    if b.dim() == 2:
        return b @ z.T
    return torch.einsum("oc,nc...->no...", z, b)


class BurstpropRule(FeedbackRule):
    """Burstprop on FB layers: fixed Y (`burstprop`) or Kolen–Pollack-learned Y (`burstprop_kp`).

    Parameters
    ----------
    name : str
    settings : dict
        Resolved settings: p_baseline, gain, recurrent, recurrent_lr (and decay for
        burstprop_kp, read by its factory).
    learn_feedback : bool
        Y receives W's update (Kolen–Pollack, spec §C.3 "learned with the same δ").
    decay : float
        Y's weight decay when learned (Kolen–Pollack's, W's is the task optimizer's).
    """

    def __init__(self, name, settings, *, learn_feedback: bool, decay: float = 0.0):
        super().__init__(name, settings, KolenPollack(decay) if learn_feedback else Feedback())
        self.p_baseline = float(settings["p_baseline"])
        self.recurrent = bool(settings["recurrent"])
        self.recurrent_lr = float(settings["recurrent_lr"])
        self.gain = float(settings["gain"])
        if not 0 < self.p_baseline < 1:
            raise ValueError(f"rule_settings for rule {name!r}: p_baseline must be in (0, 1); "
                             f"got {settings['p_baseline']!r}")
        self.mode = None              # None: gates off (evaluation, diagnostics)
        self.images = 1
        self._calls: list[_Call] = []

    def convert(self, model):
        super().convert(model)
        for _, layer in feedback_layers(model):
            if not getattr(layer, "_burst_hooked", False):
                layer.register_forward_hook(_gate_hook)
                layer._burst_hooked = True
            layer._burst_rule = self
            if self.recurrent and getattr(layer, "burst_recurrent", None) is None:
                channels = layer.weight.shape[0]
                layer.register_buffer("burst_recurrent", torch.zeros(
                    channels, channels, device=layer.weight.device, dtype=layer.weight.dtype))
        return model

    def _record(self, layer, output):
        call = _Call(self, layer)
        call.output = _Gate.apply(output, call)
        self._calls.append(call)
        if getattr(layer, "burst_output", False):
            # the loss reads a leaf copy, so its gradient (the teacher) costs the loss alone
            call.leaf = call.output.detach().requires_grad_()
            return call.leaf
        return call.output

    def _find_outputs(self) -> None:
        """Mark output layers (`burst_output`): those no other burst layer reads, found once
        by walking the autograd graph below every gate down to the next gates."""
        gates = {c.output.grad_fn: c for c in self._calls}
        read = set()
        for call in self._calls:
            stack, seen = [f for f, _ in call.output.grad_fn.next_functions if f is not None], set()
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                if node in gates:
                    read.add(id(gates[node].layer))
                    continue
                stack.extend(f for f, _ in node.next_functions if f is not None)
        layers = {id(c.layer): c.layer for c in self._calls}
        for key, layer in layers.items():
            layer.burst_output = key not in read
        log.info("rule %s: %d output and %d hidden burst layers", self.name,
                 len(layers) - len(read), len(read))

    def step(self, model, x, y, optimizers, generator=None, loss_fn=None):
        """Forward, teacher signal, baseline and teacher passes, both optimizer steps.

        The parameters' gradient is (b − b^t) e_{ℓ−1}ᵀ / M: the baseline pass's weight
        gradient less the teacher pass's, so a zero teacher gives exactly zero.
        """
        task, alignment = optimizers
        self.before_forward(model)
        for _, layer in feedback_layers(model):   # the rule that steps may not be the converter
            layer._burst_rule = self
        self._calls, self.mode = [], "forward"
        self.images = len(x)
        try:
            output, loss = task_loss(model, x, y, loss_fn)
            if not self._calls:
                raise RuntimeError(f"rule {self.name!r}: no burst layer ran in the forward pass")
            first = not all(hasattr(c.layer, "burst_output") for c in self._calls)
            if first:
                self._find_outputs()
            outs = [c for c in self._calls if c.layer.burst_output]
            self.mode = "probe"       # first step only: the gates below pass nothing on
            teachers = torch.autograd.grad(
                loss, [c.output if first else c.leaf for c in outs], retain_graph=True,
                allow_unused=True)
            for call, g in zip(outs, teachers):
                call.teacher = None if g is None else g.detach() * self.images
            task.zero_grad(set_to_none=True)
            if alignment is not None:
                alignment.zero_grad(set_to_none=True)
            seeds = [torch.zeros_like(c.output) for c in outs]
            params = [p for p in model.parameters() if p.requires_grad]
            self.mode = "baseline"
            torch.autograd.backward([c.output for c in outs], seeds, retain_graph=True)
            _negate(params)
            self.mode = "teacher"
            torch.autograd.backward([c.output for c in outs], seeds)
            _negate(params)                                  # baseline − teacher
        finally:
            self.mode = None
        self.after_backward(model, generator)
        task.step()
        if alignment is not None:
            alignment.step()
        self._update_recurrent()
        self._calls = []
        return output.detach(), loss.detach()

    @torch.no_grad()
    def _update_recurrent(self):
        """ΔZ = η_Z · mean over images and positions of u b_preᵀ (cancels baseline input)."""
        if not self.recurrent:
            return
        for call in self._calls:
            if call.b_pre is None:
                continue
            u, b = call.u_baseline, call.b_pre
            u, b = u.transpose(0, 1).flatten(1), b.transpose(0, 1).flatten(1)   # (C, n·pos)
            call.layer.burst_recurrent += self.recurrent_lr * (u @ b.T) / u.shape[1]


def _gate_hook(layer, _inputs, output):
    """Forward hook of every burst layer: gate the output while a training step runs."""
    rule = getattr(layer, "_burst_rule", None)
    if rule is None or rule.mode != "forward" or not torch.is_grad_enabled():
        return None
    return rule._record(layer, output)


def _negate(params) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.neg_()
