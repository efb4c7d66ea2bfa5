"""Predictive coding as inference learning, on the Linear and Conv2d layers of any model.

After Whittington & Bogacz 2017 (Neural Comput. 29: 1229, eqs. 5–12) and, for arbitrary
computation graphs and losses, Millidge, Tschantz & Buckley 2022 (Neural Comput. 34: 1329,
"predictive coding approximates backprop along arbitrary computation graphs"). Every output
of an nn.Linear or nn.Conv2d (one value node per call, so a layer run at several time steps
has a node per step) holds a belief v_ℓ; the model's own code between layers (BatchNorm,
ReLU, pooling, residual sums, the objective's loss) gives each layer's prediction μ_ℓ from the
beliefs upstream, μ_ℓ = W_ℓ ⋆ g_ℓ(v_upstream). With ε_ℓ = v_ℓ − μ_ℓ the energy is

    F(v, θ) = Σ_ℓ ½ ‖ε_ℓ‖² + L(v)                 L the objective's loss (a batch mean)

Beliefs start at the feedforward pass (v = μ, ε = 0) and relax by `iterations` Euler steps of
gradient descent on F, v ← v − γ ∂F/∂v, with

    ∂F/∂v_i = ε_i − Σ_j (∂μ_j/∂v_i)ᵀ ε_j + ∂L/∂v_i        (error minus the errors it predicts)

γ the inference rate. Then every parameter takes one step of the task optimizer on
∂F/∂θ = −Σ_ℓ (∂μ_ℓ/∂θ)ᵀ ε_ℓ (+ ∂L/∂θ for parameters between the last layer and the loss):
each layer's update is its own error times its own input, a local rule.

Two ways to relax (the `fixed_prediction` setting):
- False (Whittington & Bogacz): predictions and their Jacobians follow the current
  beliefs, so every iteration reruns the model's forward pass from the beliefs (the loss is
  replayed with the same random views, dropout masks and buffers) and the weights learn from
  the inputs at equilibrium.
- True (the rule's default; the fixed-prediction assumption, Millidge et al. 2022 §3;
  Song et al. 2020's Z-IL is its γ = 1 case): μ, the Jacobians and the output error stay at
  their feedforward values, so each iteration is one vector-Jacobian product through the retained graph. The fixed point is
  ε_ℓ = −dL/dv_ℓ exactly, the backprop error, and the weight update is then the backprop
  gradient; with γ = 1 it is reached after as many iterations as the longest chain of layers.
  These dynamics hold μ fixed but keep its Jacobian, so they descend no energy; after t steps
  a layer d layers below the loss has the fraction P(Bin(t, γ) ≥ d) of its backprop error.

The model stays a plain model (nothing is converted; hooks live only inside a step), so its
checkpoints, extraction and diagnostics are those of backprop's.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


def node_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose outputs are value nodes: every nn.Linear and nn.Conv2d, module order."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class _Nodes:
    """Forward hooks that cut the model's graph at every node layer's output.

    Recording, a layer's output is kept as its prediction μ and a detached leaf copy v is
    passed on, so each μ depends on the beliefs upstream only through one block of the
    model's code. Replaying, the layer computes μ from its (belief-derived) input but passes
    on the given belief instead. Layers called with gradients disabled are left alone.
    """

    def __init__(self, model: nn.Module):
        self.layers = node_layers(model)
        if not self.layers:
            raise ValueError("predictive coding needs at least one nn.Linear or nn.Conv2d layer")
        self.beliefs = None
        self.mus, self.leaves = [], []

    def _hook(self, _module, _inputs, output):
        if not torch.is_grad_enabled():
            return None
        k = len(self.mus)
        if self.beliefs is None:
            value = output.detach()
        else:
            if k >= len(self.beliefs) or self.beliefs[k].shape != output.shape:
                raise RuntimeError(
                    f"predictive coding: node {k} of the replayed forward pass has shape "
                    f"{tuple(output.shape)}, not that of the recorded pass; the model's "
                    "forward pass must call its layers in the same order every time")
            value = self.beliefs[k]
        leaf = value.detach().requires_grad_()
        self.mus.append(output)
        self.leaves.append(leaf)
        return leaf.clone()                    # a non-leaf, so in-place ReLUs may follow

    @contextmanager
    def run(self, beliefs=None):
        """Hooks on for one call of the loss: record (beliefs None) or replay `beliefs`."""
        self.beliefs = beliefs
        self.mus, self.leaves = [], []
        handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
        if beliefs is not None and len(self.mus) != len(beliefs):
            raise RuntimeError(f"predictive coding: the replayed forward pass made "
                               f"{len(self.mus)} nodes, the recorded one {len(beliefs)}")


def _grads(outputs, inputs, grad_outputs=None, retain_graph=True):
    """autograd.grad with zeros where an input does not reach the outputs."""
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs,
                                retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)]


def _energy(loss, mus, leaves):
    """F = L + Σ ½‖v − μ‖² of one (replayed) pass."""
    return loss + sum(0.5 * (v - mu).pow(2).sum() for v, mu in zip(leaves, mus))


def bound_generators(fn) -> list[torch.Generator]:
    """The torch.Generators bound into a functools.partial (pipeline.train binds the
    objective's view generator into its loss this way); [] for anything else."""
    if not isinstance(fn, functools.partial):
        return []
    return [g for g in (*fn.args, *fn.keywords.values()) if isinstance(g, torch.Generator)]


class _Replay:
    """Reruns a loss with the randomness and buffers of its first call.

    Restores torch's default generators (CPU, and CUDA when initialised) and the loss's own
    `generators` before each replay, and the model's buffers (BatchNorm running statistics,
    memory banks) after it, so the step changes them once, as backprop's does.
    """

    def __init__(self, model: nn.Module, generators=()):
        self.model, self.generators = model, list(generators)
        self.before = self._rng()

    def _rng(self):
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return torch.get_rng_state(), cuda, [g.get_state() for g in self.generators]

    def _set_rng(self, state):
        cpu, cuda, bound = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for generator, s in zip(self.generators, bound):
            generator.set_state(s)

    def after_first_call(self):
        """Remember the state the first call left: it is the state the step leaves."""
        self.after = self._rng()
        self.buffers = [(b, b.detach().clone()) for b in self.model.buffers()]

    def start(self):
        """Before a replay: the randomness of the first call."""
        self._set_rng(self.before)

    @torch.no_grad()
    def finish(self):
        """After a replay's gradients (BatchNorm saves its running statistics for backward):
        the buffers and randomness the first call left."""
        for buffer, saved in self.buffers:
            buffer.copy_(saved)
        self._set_rng(self.after)


@dataclass(frozen=True)
class Relaxation:
    """What one relaxation leaves besides the gradients (all detached).

    Attributes
    ----------
    output, loss : torch.Tensor
        The feedforward pass's output and loss.
    errors : list of torch.Tensor
        ε_ℓ = v_ℓ − μ_ℓ at the last beliefs, one per node in call order, each of its node's
        shape (batch, ...).
    energies : torch.Tensor
        (iterations + 1,) F at the feedforward pass (= L) and after every iteration; under
        fixed predictions F with L linearised at the feedforward pass, which those dynamics
        need not lower.
    """

    output: torch.Tensor
    loss: torch.Tensor
    errors: list
    energies: torch.Tensor


def _linear_energy(loss, errors, grad_loss):
    """F under fixed predictions: v − v_ff = ε, so L(v) ≈ L + Σ ∂L/∂v · ε."""
    return loss + sum((g * e).sum() + 0.5 * e.pow(2).sum() for e, g in zip(errors, grad_loss))


def relax_and_backward(model: nn.Module, loss_fn, *, iterations: int, inference_lr: float,
                       fixed_prediction: bool, generators=()) -> Relaxation:
    """Relax the beliefs of one batch and leave ∂F/∂θ in every parameter's .grad.

    Parameters
    ----------
    model : nn.Module
        Any model whose Linear/Conv2d layers run inside `loss_fn`.
    loss_fn : callable
        `loss_fn(model) -> (output, loss)`, the feedforward pass and the objective's loss.
    iterations : int
        Euler steps of the relaxation (≥ 1).
    inference_lr : float
        Step size γ of the beliefs.
    fixed_prediction : bool
        Keep predictions, Jacobians and the output error at their feedforward values.
    generators : sequence of torch.Generator
        Generators `loss_fn` draws random views from; replays restore them (full relaxation).

    Returns
    -------
    Relaxation
    """
    if iterations < 1:
        raise ValueError(f"predictive coding needs iterations ≥ 1; got {iterations}")
    params = [p for p in model.parameters() if p.requires_grad]
    nodes = _Nodes(model)
    replay = None if fixed_prediction else _Replay(model, generators)
    with nodes.run():
        output, loss = loss_fn(model)
    mus, leaves = nodes.mus, nodes.leaves
    # ∂L/∂v at the feedforward pass; iteration 1 starts from ε = 0, where ∂F/∂v = ∂L/∂v
    grad_loss = _grads(loss, leaves, retain_graph=fixed_prediction)
    energies = [loss.detach()]
    if fixed_prediction:
        errors = [-inference_lr * g for g in grad_loss]
        energies.append(_linear_energy(energies[0], errors, grad_loss))
        for _ in range(iterations - 1):
            predicted = _grads(mus, leaves, grad_outputs=errors)   # Σ_j (∂μ_j/∂v_i)ᵀ ε_j
            errors = [e - inference_lr * (e - p + g)
                      for e, p, g in zip(errors, predicted, grad_loss)]
            energies.append(_linear_energy(energies[0], errors, grad_loss))
        # ∂F/∂θ = ∂L/∂θ − Σ_ℓ (∂μ_ℓ/∂θ)ᵀ ε_ℓ, all at the feedforward pass
        torch.autograd.backward([loss, *mus], [torch.ones_like(loss), *(-e for e in errors)],
                                inputs=params)
        return Relaxation(output.detach(), loss.detach(), errors, torch.stack(energies))
    replay.after_first_call()
    beliefs = [(v - inference_lr * g).detach() for v, g in zip(leaves, grad_loss)]
    del mus, leaves, grad_loss
    for step in range(iterations):
        replay.start()
        with nodes.run(beliefs):
            _, replayed = loss_fn(model)
        energy = _energy(replayed, nodes.mus, nodes.leaves)
        energies.append(energy.detach())
        if step == iterations - 1:                 # the weights learn at the last beliefs
            errors = [(v - mu).detach() for v, mu in zip(nodes.leaves, nodes.mus)]
            torch.autograd.backward(energy, inputs=params)
        else:
            grads = _grads(energy, nodes.leaves, retain_graph=False)
            beliefs = [b - inference_lr * g for b, g in zip(beliefs, grads)]
        replay.finish()
    return Relaxation(output.detach(), loss.detach(), errors, torch.stack(energies))
