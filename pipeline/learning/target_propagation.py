"""Direct difference target propagation, DDTP-linear (Meulemans et al. 2020), on any backbone.

Spec §C.3, checked against the authors' code (meulemansalex/theoretical_framework_for_target_
propagation, `lib/direct_feedback_layers.py`, `lib/conv_layers.py`). Each training step
alternates two phases on one batch:

- *feedback phase*: each hidden layer ℓ learns a linear map Q_ℓ from the output to itself by
  the difference reconstruction loss. Its output a_ℓ is perturbed by σε, the perturbation is
  carried to the output h_L, and Q_ℓ descends (1/σ²)‖Q_ℓ(h_L^ε − h_L) − σε‖² (+ weight decay
  in Adam), which drives Q_ℓ toward a Gauss–Newton-like inverse of the layer-to-output
  Jacobian. All layers are perturbed in one forward pass of a replicated batch (one copy of
  `feedback_samples` images per hidden layer and a clean copy).
- *forward phase*: the output target is the gradient step τ_L = h_L − η̂ ∂L/∂h_L (per image),
  every hidden layer's target is τ_ℓ = h_ℓ + Q_ℓ(τ_L − h_L), and every layer descends its own
  local loss ½‖τ_ℓ − h_ℓ‖² / η̂ with its input held fixed (the authors' `normalize_lr`: the
  output layer's step then equals backprop's at the task learning rate).

Choices for any architecture [ours]: h_ℓ is the output of each Linear/Conv2d of the backbone
(its pre-activation; the authors' conv layers put the target after activation and pooling);
h_L is the backbone's `readout`, whose gradient the objective's heads (not brain layers)
deliver by backprop; parameters between weight layers (BatchNorm's affine ones) are frozen,
since no local loss reaches them; Q_ℓ starts at zero and is created at the layer's first
forward pass (its shape needs the layer's output size) and `pretrain_steps` feedback steps
precede the first forward update (the authors pretrain Q for several epochs).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from pipeline.learning.rules import Rule, task_loss

log = logging.getLogger(__name__)

__all__ = ["DDTPRule", "output_target", "hidden_target"]

_Q = "feedback_q"


def output_target(h_out: torch.Tensor, grad: torch.Tensor, stepsize: float) -> torch.Tensor:
    """τ_L = h_L − η̂ ∂L/∂h_L, with `grad` the per-image loss gradient (batch, d_L)."""
    return h_out - stepsize * grad


def hidden_target(h: torch.Tensor, q: torch.Tensor, target_out: torch.Tensor,
                  h_out: torch.Tensor) -> torch.Tensor:
    """τ_ℓ = h_ℓ + Q_ℓ(τ_L − h_L): DDTP-linear's g_ℓ(τ_L) − g_ℓ(h_L) + h_ℓ with g_ℓ = Q_ℓ·.

    h (batch, ...), q (h's units, d_L), target_out and h_out (batch, d_L).
    """
    return h + ((target_out - h_out) @ q.T).view_as(h)


def _layers(model: nn.Module) -> tuple[nn.Module, nn.Module, list[tuple[str, nn.Module]]]:
    """(backbone, readout, hidden weight layers in module order) of a model or ObjectiveNet."""
    backbone = getattr(model, "backbone", model)
    readout = getattr(backbone, "readout", None)
    if not isinstance(readout, nn.Linear):
        raise ValueError(f"rule 'ddtp' needs a backbone whose output layer is an nn.Linear "
                         f"named 'readout'; {type(backbone).__name__} has {readout!r}")
    hidden = [(n, m) for n, m in backbone.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv2d)) and m is not readout]
    return backbone, readout, hidden


class DDTPRule(Rule):
    """DDTP-linear: Q_ℓ learned by the difference reconstruction loss, local forward updates.

    Parameters
    ----------
    name : str
    settings : dict
        Resolved settings: target_stepsize (η̂), sigma (σ), feedback_lr and feedback_decay
        (Adam on Q), feedback_samples (images per perturbed copy), feedback_steps (per
        training step), pretrain_steps (before the first forward update).

    Attributes
    ----------
    reconstruction_loss_ : dict of str to float
        Last feedback step's ‖Q_ℓΔ − σε‖² / ‖σε‖² per hidden layer (module path).
    """

    def __init__(self, name, settings):
        super().__init__(name, settings)
        s = settings
        for key in ("target_stepsize", "sigma", "feedback_lr"):
            if not s[key] > 0:
                raise ValueError(f"rule_settings for rule {name!r}: {key} must be > 0; "
                                 f"got {s[key]!r}")
        for key in ("feedback_samples", "feedback_steps", "pretrain_steps"):
            if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 0:
                raise ValueError(f"rule_settings for rule {name!r}: {key} must be an int ≥ 0; "
                                 f"got {s[key]!r}")
        self.mode = None             # None (hooks off) | "forward" | "feedback"
        self.reconstruction_loss_: dict[str, float] = {}
        self._records: list[tuple[nn.Module, torch.Tensor]] = []
        self._inputs: list[torch.Tensor] = []
        self._noise: dict[int, tuple[int, int, float]] = {}   # layer -> (copy, images, σ)
        self._eps: dict[int, torch.Tensor] = {}
        self._generator = None

    # -- conversion ----------------------------------------------------------------------------

    def convert(self, model):
        backbone, readout, hidden = _layers(model)
        if not hidden:
            raise ValueError("rule 'ddtp': the backbone has no hidden Linear or Conv2d layer")
        layer_params = {id(p) for _, m in hidden for p in m.parameters()}
        layer_params |= {id(p) for p in readout.parameters()}
        for p in backbone.parameters():            # BatchNorm's γ, β: no local loss reaches them
            if id(p) not in layer_params:
                p.requires_grad_(False)
        if not getattr(backbone, "_ddtp_hooked", False):
            backbone.register_forward_pre_hook(_keep_input)
            backbone.register_buffer("ddtp_feedback_steps", torch.zeros((), dtype=torch.long))
            for _, layer in [*hidden, ("readout", readout)]:
                layer.register_forward_pre_hook(_detach_input)
                layer.register_forward_hook(_record_output)
            for _, layer in hidden:
                # not an attribute Module.__setattr__ would register: it has no shape yet
                layer.__dict__["_ddtp_q"] = UninitializedParameter(requires_grad=False)
                layer._ddtp_out = readout.out_features
                layer.register_load_state_dict_pre_hook(_materialize_on_load)
            backbone._ddtp_hooked = True
        backbone._ddtp_rule = self
        for _, layer in [*hidden, ("readout", readout)]:
            layer._ddtp_rule = self
        readout._ddtp_readout = True
        log.info("rule %s: %d hidden layers with direct feedback from a %d-unit readout",
                 self.name, len(hidden), readout.out_features)
        return model

    def feedback_parameters(self, model):
        _, _, hidden = _layers(model)
        return [layer._ddtp_q for _, layer in hidden]

    def optimizers(self, model, *, lr, momentum, weight_decay):
        task, _ = super().optimizers(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
        feedback = torch.optim.Adam(self.feedback_parameters(model),
                                    lr=self.settings["feedback_lr"],
                                    weight_decay=self.settings["feedback_decay"])
        return task, feedback

    # -- the step ------------------------------------------------------------------------------

    def step(self, model, x, y, optimizers, generator=None, loss_fn=None):
        """Forward pass, feedback phase (Q), then the local forward updates (W)."""
        task, feedback = optimizers
        backbone, readout, hidden = _layers(model)
        for module in (backbone, readout, *(layer for _, layer in hidden)):
            module._ddtp_rule = self              # the rule that steps may not be the converter
        self._records, self._inputs = [], []
        self.mode = "forward"
        try:
            output, loss = task_loss(model, x, y, loss_fn)
        finally:
            self.mode = None
        outs = [(i, h) for i, (layer, h) in enumerate(self._records) if layer is readout]
        if not outs:
            raise RuntimeError("rule 'ddtp': the loss did not run the backbone's readout")
        for _, h in outs:
            h.retain_grad()
        task.zero_grad(set_to_none=True)
        loss.backward()                          # readout (input detached) and heads: backprop

        n_steps = self.settings["feedback_steps"]
        if int(backbone.ddtp_feedback_steps) == 0:
            n_steps += self.settings["pretrain_steps"]
        for _ in range(n_steps):
            self.feedback_step(backbone, hidden, self._inputs[0], feedback, generator)
        backbone.ddtp_feedback_steps += n_steps

        # the readout calls the loss reads (a recurrent net reads only its last step's)
        outs = [(i, h) for i, h in outs if h.grad is not None]
        local = []
        stepsize = self.settings["target_stepsize"]
        images = len(x)
        for index, (layer, h) in enumerate(self._records):
            if layer is readout:
                continue
            call = next((j for j, _ in outs if j > index), None)
            if call is None:                     # ran after the last readout the loss reads
                continue
            h_out = self._records[call][1]
            target_out = output_target(h_out.detach(), h_out.grad * images, stepsize)
            target = hidden_target(h.detach(), layer._ddtp_q, target_out, h_out.detach())
            local.append(((target - h) ** 2).sum() / (2 * stepsize * images))
        if local:
            torch.stack(local).sum().backward()
        task.step()
        self._records, self._inputs = [], []
        return output.detach(), loss.detach()

    @torch.no_grad()
    def feedback_step(self, backbone, hidden, x, optimizer, generator=None):
        """One Adam step of every Q_ℓ on the difference reconstruction loss.

        The first `feedback_samples` images of the backbone input x are repeated once per
        hidden layer plus a clean copy; layer j's copy gets σε at layer j's output; one forward
        pass (training mode, BatchNorm statistics restored afterwards) gives every Δ_j.

        Returns
        -------
        dict of str to (Δ (m, d_L), σε (m, d_ℓ)), per hidden layer, before Q's step.
        """
        sigma = self.settings["sigma"]
        m = min(self.settings["feedback_samples"], len(x))
        copies = x[:m].repeat(len(hidden) + 1, *([1] * (x.dim() - 1)))
        self._noise = {}
        for j, (_, layer) in enumerate(hidden):
            self._noise[id(layer)] = (j + 1, m, sigma)
        saved = [b.clone() for b in backbone.buffers()]
        self.mode, self._eps, self._generator = "feedback", {}, generator
        try:
            out = backbone(copies)
        finally:
            self.mode = None
            for b, v in zip(backbone.buffers(), saved):
                b.copy_(v)
        clean = out[:m]
        optimizer.zero_grad(set_to_none=True)
        pairs = {}
        for j, (name, layer) in enumerate(hidden):
            delta = out[(j + 1) * m:(j + 2) * m] - clean                  # (m, d_L)
            noise = sigma * self._eps[id(layer)].flatten(1)               # (m, d_ℓ)
            residual = delta @ layer._ddtp_q.T - noise
            layer._ddtp_q.grad = (2 / (m * sigma ** 2)) * residual.T @ delta
            self.reconstruction_loss_[name] = float(residual.square().sum()
                                                    / noise.square().sum())
            pairs[name] = (delta, noise)
        optimizer.step()
        self._generator = None
        return pairs

    def _noise_for(self, layer, out, generator):
        """`out` with σε added to the layer's own perturbed copy; ε is kept for the loss."""
        block, m, sigma = self._noise[id(layer)]
        eps = torch.randn((m, *out.shape[1:]), generator=generator, device=out.device,
                          dtype=out.dtype)
        self._eps[id(layer)] = eps
        out = out.clone()
        out[block * m:(block + 1) * m] += sigma * eps
        return out


def _keep_input(backbone, args):
    """Keep the backbone's (preprocessed) input of a training step for the feedback phase."""
    rule = getattr(backbone, "_ddtp_rule", None)
    if rule is not None and rule.mode == "forward":
        rule._inputs.append(args[0].detach())


def _detach_input(layer, args):
    """Cut the graph at every layer's input in a training step: updates stay local."""
    rule = getattr(layer, "_ddtp_rule", None)
    if rule is not None and rule.mode == "forward":
        return (args[0].detach(), *args[1:])
    return None


def _record_output(layer, _args, out):
    """Create Q at the first call; record outputs (forward) or add noise (feedback phase)."""
    q = getattr(layer, "_ddtp_q", None)
    if isinstance(q, UninitializedParameter):
        q.materialize((out[0].numel(), layer._ddtp_out), device=out.device, dtype=out.dtype)
        with torch.no_grad():
            q.zero_()
        layer.register_parameter(_Q, q)
    rule = getattr(layer, "_ddtp_rule", None)
    if rule is None or rule.mode is None:
        return None
    if rule.mode == "feedback":
        if id(layer) in rule._noise:
            return rule._noise_for(layer, out, rule._generator)
        return None
    rule._records.append((layer, out.clone() if getattr(layer, "_ddtp_readout", False) else out))
    if getattr(layer, "_ddtp_readout", False):
        return rule._records[-1][1]
    return out.clone()                 # in-place activations downstream leave h_ℓ intact


def _materialize_on_load(module, state_dict, prefix, *_args):
    """Give Q its stored shape before `load_state_dict` copies into it (resume, extraction)."""
    q = getattr(module, "_ddtp_q", None)
    key = prefix + _Q
    if isinstance(q, UninitializedParameter) and key in state_dict:
        q.materialize(state_dict[key].shape, dtype=state_dict[key].dtype)
        module.register_parameter(_Q, q)
