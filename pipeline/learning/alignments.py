"""What each feedback rule does with a layer's backward weight B: its start and its updates.

One class per rule (spec §A.10.4). `Feedback` keeps a fixed random B; `SignSymmetry` sets
B from W before every step; the others learn B by gradient descent on a
per-layer alignment loss R = Σ_k c_k R_k of the primitives of spec Table 5.2, run by a second
optimizer (`pipeline.learning.rules`). `KolenPollack` also receives W's task gradient in B
(tie_grad). Coefficients follow the released code's convention (no ½; see primitives).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.learning.primitives import GRADIENTS, PRIMITIVES, LayerTensors, project

# primitives that read the layer's activity (its input x, or input noise)
_ACTIVITY = ("amp", "null", "sparse")


class Alignment:
    """Feedback alignment's base: a fixed random B with W's norm, and no alignment loss.

    Attributes
    ----------
    learns_feedback : bool
        B is a trained parameter (of the alignment optimizer).
    tie_grad : bool
        B receives W's task gradient in the backward pass (Kolen–Pollack).
    primitives : dict of str to float
        Coefficient of each primitive in the alignment loss; empty for no loss.
    input_noise : float or None
        Std of the Gaussian noise that replaces the layer input in the alignment loss
        (Akrout's mirror step, spec §A.4.3); None uses the layer's actual input.
    samples : int or None
        Samples of each batch (the first ones; batches are shuffled) read by the activity
        primitives, or the size of the noise batch; None reads the whole batch.
    """

    learns_feedback = False
    tie_grad = False
    primitives: dict[str, float] = {}
    input_noise: float | None = None
    samples: int | None = None

    def init_feedback(self, weight: torch.Tensor) -> torch.Tensor:
        """B at conversion: PyTorch's default layer init, rescaled to ‖W‖_F [our choice].

        The same norm keeps the downward signal at backprop's scale whatever W's init was.
        """
        fb = torch.empty_like(weight)
        nn.init.kaiming_uniform_(fb, a=math.sqrt(5))
        norm = fb.norm()
        return fb * (weight.norm() / norm) if norm > 0 and weight.norm() > 0 else fb

    @torch.no_grad()
    def sync(self, layer) -> None:
        """Set B from W before a training forward pass (rules that transport W)."""

    @property
    def reads_activity(self) -> bool:
        """The loss reads the layer's input (or noise of its shape)."""
        return any(self.primitives.get(k, 0) != 0 for k in _ACTIVITY)

    @property
    def reads_output(self) -> bool:
        """The loss reads the layer's output W x on its actual input (cached in the forward)."""
        return self.reads_activity and self.input_noise is None and any(
            self.primitives.get(k, 0) != 0 for k in ("amp", "null"))

    def tensors(self, layer, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> LayerTensors:
        """The alignment loss's inputs for `layer` after a training forward pass.

        Reads the input and output the layer cached or, with `input_noise`, replaces the input
        by Gaussian noise of its shape (`samples` images) and projects it with W. The noise is
        the first entries of `noise` (a flat standard-normal buffer the caller may share
        between layers) or, without one, drawn from `generator`.
        """
        weight = layer.weight.detach()
        if not self.reads_activity:
            return LayerTensors(None, weight, layer.weight_fb, None, layer.conv)
        if layer.cache is None:
            raise RuntimeError(f"{layer}: no cached input; the alignment loss needs a training "
                               "forward pass first")
        x, y_f = layer.cache
        if self.input_noise is not None:
            shape = self.noise_shape(x)
            if noise is None:
                noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = noise[:shape.numel()].view(shape) * self.input_noise
            y_f = project(x, weight, layer.conv)
        elif y_f is None:
            y_f = project(x, weight, layer.conv)
        return LayerTensors(x, weight, layer.weight_fb, y_f, layer.conv)

    def noise_shape(self, x: torch.Tensor) -> torch.Size:
        """Shape of the input noise standing in for the cached input `x`."""
        return torch.Size((min(self.samples or len(x), len(x)), *x.shape[1:]))

    def loss(self, t: LayerTensors) -> torch.Tensor:
        """R = Σ_k c_k R_k(t), differentiable in `t.weight_fb` (the reference for `grad`)."""
        total = t.weight_fb.new_zeros(())
        for name, coef in self.primitives.items():
            if coef:
                total = total + coef * PRIMITIVES[name](t)
        return total

    @torch.no_grad()
    def grad(self, t: LayerTensors) -> torch.Tensor | None:
        """∂R/∂B in closed form; None when the rule has no alignment loss.

        The activity terms share one weight-gradient call: it is bilinear in (input, output),
        so amp + sparse = G(x, −amp·W x + 2·sparse·B x) and amp + null =
        G(2·null·Bᵀ W x − amp·x, W x). On `samples` images, WM thus costs one call (plus the
        projection W ξ of its input noise), AA one projection and one call, IA the noise
        projection, one transposed projection and one call.
        """
        c = self.primitives
        if not any(c.values()):
            return None
        amp, null, sparse = (c.get(k, 0) for k in _ACTIVITY)
        g = None
        if null:                                   # amp rides along unless sparse takes it
            inputs = 2 * null * t.r_f - amp * t.x if amp and not sparse else 2 * null * t.r_f
            g = t.weight_grad(inputs, t.y_f)
        if sparse or (amp and not null):
            out = 2 * sparse * t.y_b - amp * t.y_f if sparse else -amp * t.y_f
            term = t.weight_grad(t.x, out)
            g = term if g is None else g + term
        if g is not None:
            g = g / t.n_samples
        for name in ("decay", "self"):
            if c.get(name):
                term = c[name] * GRADIENTS[name](t)
                g = term if g is None else g + term
        return g


class Feedback(Alignment):
    """Feedback alignment (Lillicrap et al. 2016; spec §A.4.2): R = 0, B fixed and random."""


class SignSymmetry(Alignment):
    """Sign symmetry (Liao et al. 2016; spec §A.4.9): B = sign(W)·s, recomputed every step.

    Parameters
    ----------
    normalize : bool
        s = ‖W‖_F / √numel, so ‖B‖_F = ‖W‖_F (Moskovitz et al. 2018's normalisation);
        False uses s = 1, whose downward signal grows with each layer's fan-in.
    """

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def init_feedback(self, weight):
        weight = weight.detach()
        scale = weight.norm() / math.sqrt(weight.numel()) if self.normalize else 1.0
        return torch.sign(weight) * scale

    @torch.no_grad()
    def sync(self, layer):
        layer.weight_fb.copy_(self.init_feedback(layer.weight))


class _Learned(Alignment):
    learns_feedback = True

    def __repr__(self):
        args = {**self.primitives, "input_noise": self.input_noise, "samples": self.samples}
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
        return f"{type(self).__name__}({shown})"


class Mirror(_Learned):
    """Weight mirror (Akrout et al. 2019; spec §A.4.3): R = amp·R_amp + decay·R_decay.

    With unit-variance input noise E[(W ξ) ξᵀ] = W, so B → (amp / 2·decay)·W: amp = 2·decay
    is the stable point β = αx² of §A.5 in the code's convention.
    """

    def __init__(self, amp: float, decay: float, *, input_noise: float | None = None,
                 samples: int | None = None):
        self.amp, self.decay = amp, decay
        self.input_noise, self.samples = input_noise, samples
        self.primitives = {"amp": amp, "decay": decay}


class Information(_Learned):
    """Information alignment (spec §A.4.4): R = amp·R_amp + null·R_null + decay·R_decay.

    Argument order as in the released code: amp, null, decay.
    """

    def __init__(self, amp: float, null: float, decay: float, *,
                 input_noise: float | None = None, samples: int | None = None):
        self.amp, self.null, self.decay = amp, null, decay
        self.input_noise, self.samples = input_noise, samples
        self.primitives = {"amp": amp, "null": null, "decay": decay}


class Symmetric(_Learned):
    """Symmetric alignment (spec §A.4.5): R = self·R_self + decay·R_decay; ∇_B = 2·decay·B − self·W.

    self = 2·decay is α = β of the paper, ∇_B R ∝ B − W.
    """

    def __init__(self, self_: float, decay: float):
        self.self_, self.decay = self_, decay
        self.primitives = {"self": self_, "decay": decay}


class Activation(_Learned):
    """Activation alignment (spec §A.4.6): R = amp·R_amp + sparse·R_sparse, on the layer input.

    amp = 2·sparse makes ∇_B R ∝ mean_n (B x − W x) xᵀ: B x is fitted to W x.
    """

    def __init__(self, amp: float, sparse: float, *, samples: int | None = None):
        self.amp, self.sparse, self.samples = amp, sparse, samples
        self.primitives = {"amp": amp, "sparse": sparse}


class KolenPollack(_Learned):
    """Kolen–Pollack (spec §A.4.7): B receives W's gradient (tie_grad) plus decay·R_decay.

    ΔB = −η(∇̃_W J + 2·decay·B); with W's L2 weight decay λ = 2·decay and the same optimizer
    settings, W − B shrinks by a constant factor every step.
    """

    tie_grad = True

    def __init__(self, decay: float):
        self.decay = decay
        self.primitives = {"decay": decay}
