"""The learning rules by name: their hyperparameters, their layers and one training step.

`make_rule("wm", settings)` returns a `Rule` that converts a model's layers for the rule,
builds its optimizers (the task optimizer on W, biases and BatchNorm; for rules that learn B a
second, alignment optimizer on the B's, spec §A.10.5) and runs one training step:

    sync B (ss) → forward → task loss → backward (δ travels down through B;
    kp copies W's gradient into B) → alignment gradients of B from the cached activity →
    both optimizer steps → local Hebbian updates (hebb);

and, after each epoch's last step, `end_epoch` (hebb: refit the readout on frozen features).

Provenance of `RULE_DEFAULTS` (spec sections; [T] text, [R] released code, [S] our choice):
- primitive coefficients of wm, ia, sa, aa, kp: Neural-Alignment `params.py` defaults [R]
  (§A.7: SA decay 1e-3 / self 2e-3, AA sparse 1e-3 / amp 2e-3, IA amp 2e-3 / null 1e-3 /
  decay 1e-3), except WM amp 2e-3 (the code has 1e-3): with unit-variance noise
  amp = 2·decay puts B's fixed point at W (§A.5 stability condition β = αx²) [S]. Table 5.5's
  amp:decay ratios were tuned for the code's sum over positions on ImageNet and are not used.
- alignment optimizer Adam (§A.4.6, §A.7 Table 5.5 WM+Adam and IA columns) [T]; its LR
  0.0053 for wm and 0.0098 for ia (Table 5.5) [T]; for sa and aa the LR was stripped from the
  text and 1e-3 is the code's `alignment_learning_rate` default [R].
- input noise σ 0.95 (wm) and 0.8176 (ia): Table 5.5 "likely input-noise σ" rows [T/R].
- `samples` 32 (16 for ia, whose loss needs three convolutions instead of two): the activity
  primitives read that many images of each batch (or noise images), an unbiased estimate of
  the batch mean that keeps wm/ia/aa within 1.3× of a backprop step [S].
- sign-symmetry normalisation (Moskovitz et al. 2018, §A.4.9) [R/S].
- kp decay None = the task's weight decay / 2, so W and B decay alike (§A.4.7) [T]; B's
  optimizer is the task's SGD (same LR and momentum) so ‖W − B‖ shrinks geometrically.
- hebb (SoftHebb, pipeline.learning.hebbian): temperature 1, SoftHebb's t_invert = 1 [R];
  lr 0.1 [S], between SoftHebb's per-layer rates and tried on the embedded default against
  0.3 (the features kept changing under the readout) and softer (T 3, 10) or sharper (0.3;
  0.5 with the output centring) competition, all of which did worse. The spec gives no values.
  readout "fit" [S]: the readout is refit to convergence on the frozen features after every
  epoch (SoftHebb trains its classifier on frozen Hebbian layers). With SGD steps alone (sgd)
  the 125 steps of the default run left the Hebbian features level with random kernels
  (7.8 % vs 7.3 %), though a converged readout separates them (17 % vs 11 %).
- pc (pipeline.learning.predictive_coding): relaxation of Whittington & Bogacz 2017 [T];
  fixed_prediction True (Millidge et al. 2022's assumption) by default [S]: with predictions
  that follow the beliefs the relaxation of the ventral CNN (BatchNorm) diverged at γ = 0.2
  and at γ = 0.1 left its first three layers' updates uncorrelated with the gradient (cosine
  ≈ 0) after 20 steps, at 17× a bp step. iterations 20 and inference_lr 0.5 [S]: the spec
  gives no values (W&B use 20 steps of 0.1 on a 3-layer MLP); γ = 0.5 carries three quarters
  of the output error to the first of the ventral CNN's nine layers in twenty steps
  (P(Bin(20, ½) ≥ 9) ≈ 0.75).
- nmf (pipeline.learning.nmf, spec §C.3): Euclidean objective by default (its code update
  costs k² per image, KL's k·pixels) [S]; n_components None = the width the architecture's
  readout reads, so the arch part of the name sets the layer's width [S]; resolution 32 (the
  embedded default's size) and transform_iter 50 [S].
- burstprop, burstprop_kp (pipeline.learning.burstprop, spec §C.3): p_baseline 0.2, the
  code's default output baseline burst probability (jordan-g/Burstprop `train_*.py`) [R];
  recurrent cancellation Z off by default and recurrent_lr 1e-3 [S] (Payeur et al. use it
  only in some experiments); burstprop_kp's decay None = half the task's weight decay, as kp.
- ddtp (pipeline.learning.target_propagation, spec §C.3): DDTP-linear with the authors' conv
  settings rounded (`final_configs/cifar10_DDTPConv.py`: σ 0.0092, feedback_wd 6e-5;
  target_stepsize 0.016–0.061 across their configs) [R]; Adam lr of Q 5e-4 [S], between their
  MLP (1.6e-4) and conv (4.5e-3) values: with 16 images per feedback step instead of their
  128, 5e-3 left Q noisy (5.5 % vs 6.9 % test accuracy after the default 5 epochs); feedback_samples
  16 per perturbed copy, one feedback step per training step and 50 pretraining steps [S]
  (the authors pretrain Q for 6–10 epochs and add one feedback epoch per epoch).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.alignments import (Activation, Alignment, Feedback, Information,
                                          KolenPollack, Mirror, SignSymmetry, Symmetric)
from pipeline.learning.convert import feedback_layers, hebbian_layers, to_feedback, to_hebbian
from pipeline.learning.hebbian import HEBBIAN_READOUTS
from pipeline.learning.nmf import BETA_LOSSES, NMFLayer, NMFNet
from pipeline.learning.predictive_coding import bound_generators, node_layers, relax_and_backward

log = logging.getLogger(__name__)

RULE_DEFAULTS: dict[str, dict] = {
    "bp": {},
    "fa": {},
    "ss": {"normalize": True},
    "wm": {"amp": 2e-3, "decay": 1e-3, "input_noise": 0.95, "samples": 32,
           "optimizer": "adam", "lr": 0.0053},
    "ia": {"amp": 2e-3, "null": 1e-3, "decay": 1e-3, "input_noise": 0.8176, "samples": 16,
           "optimizer": "adam", "lr": 0.0098},
    "sa": {"self": 2e-3, "decay": 1e-3, "optimizer": "adam", "lr": 1e-3},
    "aa": {"amp": 2e-3, "sparse": 1e-3, "samples": 32, "optimizer": "adam", "lr": 1e-3},
    "kp": {"decay": None},
    "hebb": {"lr": 0.1, "temperature": 1.0, "readout": "fit", "readout_iterations": 100},
    "pc": {"iterations": 20, "inference_lr": 0.5, "fixed_prediction": True},
    "nmf": {"beta_loss": "frobenius", "n_components": None, "resolution": 32,
            "transform_iter": 50},
    "burstprop": {"p_baseline": 0.2, "gain": 1.0, "recurrent": False, "recurrent_lr": 1e-3},
    "burstprop_kp": {"p_baseline": 0.2, "gain": 1.0, "recurrent": False, "recurrent_lr": 1e-3,
                     "decay": None},
    "ddtp": {"target_stepsize": 0.05, "sigma": 0.01, "feedback_lr": 5e-4,
             "feedback_decay": 6e-5, "feedback_samples": 16, "feedback_steps": 1,
             "pretrain_steps": 50},
}

ALIGNMENT_OPTIMIZERS = ("adam", "sgd")
# Task optimizers (TrainSettings.optimizer): SGD with momentum, SGD with Nesterov momentum,
# Adam. Spec_ch5-6 B.2's classes SGDM and Adam are bp under nesterov and adam.
TASK_OPTIMIZERS = ("sgd", "nesterov", "adam")


def resolve_rule_settings(rule: str, settings: dict | None = None) -> dict:
    """The rule's hyperparameters: `RULE_DEFAULTS[rule]` overridden key by key by `settings`.

    Raises
    ------
    ValueError
        For an unknown rule, or keys the rule does not have (all of them named).
    """
    if rule not in RULE_DEFAULTS:
        raise ValueError(f"unknown learning rule {rule!r}; known rules: {', '.join(RULE_DEFAULTS)}")
    defaults = RULE_DEFAULTS[rule]
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise ValueError(
            f"rule_settings for rule {rule!r} have unknown key(s) {unknown}; "
            f"the rule's hyperparameters are: {known}"
        )
    resolved = {**copy.deepcopy(defaults), **settings}
    if "optimizer" in resolved and resolved["optimizer"] not in ALIGNMENT_OPTIMIZERS:
        raise ValueError(
            f"rule_settings for rule {rule!r}: optimizer must be one of "
            f"{', '.join(ALIGNMENT_OPTIMIZERS)}; got {resolved['optimizer']!r}"
        )
    return resolved


def _sgd(params, lr, momentum, weight_decay):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_task_optimizer(kind: str, params, lr: float, momentum: float, weight_decay: float
                        ) -> torch.optim.Optimizer:
    """The task optimizer `kind` (one of `TASK_OPTIMIZERS`) over `params`; weight_decay is
    L2 added to the gradient in all three, `momentum` is unused by Adam."""
    if kind == "sgd":
        return _sgd(params, lr, momentum, weight_decay)
    if kind == "nesterov":
        if momentum <= 0:
            raise ValueError(f"optimizer 'nesterov' needs momentum > 0; got {momentum!r}")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=True)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(TASK_OPTIMIZERS)}; got {kind!r}")


def task_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=None):
    """(output, loss) of the objective's forward pass; None is cross-entropy of `model(x)`."""
    if loss_fn is None:
        logits = model(x)
        return logits, F.cross_entropy(logits, y)
    return loss_fn(model, x, y)


class Rule:
    """Backprop on the model's own layers: nothing converted, one optimizer.

    Subclasses change the layers (`convert`), add an alignment optimizer (`optimizers`) and
    hook into the step (`before_forward`, `after_backward`, `after_step`).

    Parameters
    ----------
    name : str
        Rule name, a key of `RULE_DEFAULTS`.
    settings : dict
        Resolved hyperparameters.

    Attributes
    ----------
    task_optimizer : str
        Kind of the task optimizer, one of `TASK_OPTIMIZERS` (`make_rule` sets it).
    """

    task_optimizer = "sgd"

    def __init__(self, name: str, settings: dict):
        self.name = name
        self.settings = settings

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {self.settings!r})"

    def convert(self, model: nn.Module) -> nn.Module:
        """Swap the model's layers for this rule's, in place; returns the model."""
        return model

    def feedback_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The B's this rule trains (by the alignment optimizer)."""
        return []

    def optimizers(self, model: nn.Module, *, lr: float, momentum: float, weight_decay: float
                   ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """(task optimizer, alignment optimizer or None).

        The task optimizer (`task_optimizer`: SGD, Nesterov SGD or Adam) is over every
        parameter with gradient except the B's.
        """
        own = {id(p) for p in self.feedback_parameters(model)}
        params = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
        return make_task_optimizer(self.task_optimizer, params, lr, momentum, weight_decay), None

    def before_forward(self, model: nn.Module) -> None:
        """Prepare the layers for a training forward pass."""

    def after_backward(self, model: nn.Module, generator: torch.Generator | None) -> None:
        """Add the alignment gradients once the task gradients are in place."""

    def after_step(self, model: nn.Module) -> None:
        """Local updates after the optimizer steps."""

    def end_epoch(self, model: nn.Module, data, objective, *, weight_decay: float) -> None:
        """Work after an epoch's last step, on the training split `data` (a Split)."""

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizers,
             generator: torch.Generator | None = None, loss_fn=None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on images x (batch, channel, y, x) and labels y (batch,).

        Parameters
        ----------
        optimizers : tuple
            As `optimizers` returns.
        generator : torch.Generator, optional
            Draws the alignment's input noise (on x's device).
        loss_fn : callable, optional
            `loss_fn(model, x, y) -> (output, loss)`: the objective's forward pass and loss
            (pipeline.objectives); None is cross-entropy of `model(x)` against y, output the
            logits.

        Returns
        -------
        (output, loss), detached.
        """
        task, alignment = optimizers
        self.before_forward(model)
        logits, loss = task_loss(model, x, y, loss_fn)
        task.zero_grad(set_to_none=True)
        if alignment is not None:
            alignment.zero_grad(set_to_none=True)
        loss.backward()
        self.after_backward(model, generator)
        task.step()
        if alignment is not None:
            alignment.step()
        self.after_step(model)
        return logits.detach(), loss.detach()


class FeedbackRule(Rule):
    """A rule on FB layers: B per `alignment`, learned by a second optimizer when it learns.

    Parameters
    ----------
    alignment : Alignment
    optimizer : {"adam", "sgd"}, optional
        Alignment optimizer for rules whose B follows an alignment loss ("sgd" is plain
        gradient descent, Table 5.5's "vanilla GD"). Kolen–Pollack's B always uses the
        task optimizer's kind.
    lr : float, optional
        Its learning rate.
    """

    def __init__(self, name, settings, alignment: Alignment, *, optimizer: str | None = None,
                 lr: float | None = None):
        super().__init__(name, settings)
        self.alignment = alignment
        self.optimizer = optimizer
        self.lr = lr

    def convert(self, model):
        to_feedback(model, self.alignment)
        layers = feedback_layers(model)
        if not layers:
            raise ValueError(f"rule {self.name!r}: the model has no Linear or Conv2d layer")
        for _, layer in layers:                          # layers converted earlier too
            layer.set_alignment(self.alignment)
        log.info("rule %s: %d layers with feedback weights (%r)", self.name, len(layers),
                 self.alignment)
        return model

    def feedback_parameters(self, model):
        return [layer.weight_fb for _, layer in feedback_layers(model)]

    def optimizers(self, model, *, lr, momentum, weight_decay):
        task, _ = super().optimizers(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
        if not self.alignment.learns_feedback:
            return task, None
        params = self.feedback_parameters(model)
        if self.alignment.tie_grad:            # KP: B moves exactly as W, decay aside (§A.4.7)
            return task, make_task_optimizer(self.task_optimizer, params, lr, momentum, 0.0)
        if self.optimizer == "adam":
            return task, torch.optim.Adam(params, lr=self.lr)
        return task, _sgd(params, self.lr, 0.0, 0.0)

    def before_forward(self, model):
        for _, layer in feedback_layers(model):
            self.alignment.sync(layer)

    def after_backward(self, model, generator):
        if not self.alignment.primitives:
            return
        layers = [layer for _, layer in feedback_layers(model)]
        noise = None
        if self.alignment.input_noise is not None:
            # One standard-normal buffer per step, shared by all layers (each reads its first
            # entries): a third of the draws, and each layer's estimate stays unbiased.
            x = layers[0].cache[0]
            n = max(self.alignment.noise_shape(layer.cache[0]).numel() for layer in layers)
            noise = torch.randn(n, generator=generator, device=x.device, dtype=x.dtype)
        for layer in layers:
            grad = self.alignment.grad(self.alignment.tensors(layer, noise))
            layer.cache = None
            if grad is not None:
                fb = layer.weight_fb
                fb.grad = grad if fb.grad is None else fb.grad + grad


class HebbianRule(Rule):
    """Hebbian conv layers (SoftHebb) under linear layers trained by SGD (spec §C.3); with
    `readout: fit` and the supervised objective, the readout is also refit to convergence on
    the frozen features after every epoch (`Supervised.fit_readout`)."""

    def __init__(self, name, settings, *, lr: float, temperature: float, readout: str,
                 readout_iterations: int):
        super().__init__(name, settings)
        if readout not in HEBBIAN_READOUTS:
            raise ValueError(f"rule_settings for rule {name!r}: readout must be one of "
                             f"{', '.join(HEBBIAN_READOUTS)}; got {readout!r}")
        if (isinstance(readout_iterations, bool) or not isinstance(readout_iterations, int)
                or readout_iterations < 1):
            raise ValueError(f"rule_settings for rule {name!r}: readout_iterations must be an "
                             f"int ≥ 1; got {readout_iterations!r}")
        self.lr, self.temperature = lr, temperature
        self.readout, self.readout_iterations = readout, readout_iterations

    def convert(self, model):
        count = to_hebbian(model, lr=self.lr, temperature=self.temperature)
        if not count:
            raise ValueError(f"rule {self.name!r}: the model has no Conv2d layer to make "
                             "Hebbian (its Linear layers alone would train by backprop)")
        log.info("rule %s: %d Hebbian conv layers (lr %g, temperature %g, readout %s)",
                 self.name, count, self.lr, self.temperature, self.readout)
        return model

    def after_step(self, model):
        for _, layer in hebbian_layers(model):
            layer.hebbian_step()

    def end_epoch(self, model, data, objective, *, weight_decay):
        # Only a supervised readout has class labels to fit; a self-supervised objective
        # trains its readout and heads by its own loss.
        if self.readout == "fit" and objective.name == "supervised":
            objective.fit_readout(model, data, weight_decay=weight_decay,
                                  iterations=self.readout_iterations)


class PredictiveCodingRule(Rule):
    """Predictive coding: relax the layers' beliefs, then update every layer from its own
    error and input (pipeline.learning.predictive_coding); the model is not converted."""

    def __init__(self, name, settings, *, iterations: int, inference_lr: float,
                 fixed_prediction: bool):
        super().__init__(name, settings)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"rule_settings for rule {name!r}: iterations must be an int ≥ 1; "
                             f"got {iterations!r}")
        if not inference_lr > 0:
            raise ValueError(f"rule_settings for rule {name!r}: inference_lr must be > 0; "
                             f"got {inference_lr!r}")
        self.iterations, self.inference_lr = iterations, inference_lr
        self.fixed_prediction = bool(fixed_prediction)

    def convert(self, model):
        count = len(node_layers(model))
        if not count:
            raise ValueError(f"rule {self.name!r}: the model has no Linear or Conv2d layer")
        log.info("rule %s: %d layers hold beliefs (%d iterations of rate %g%s)", self.name,
                 count, self.iterations, self.inference_lr,
                 ", fixed predictions" if self.fixed_prediction else "")
        return model

    def step(self, model, x, y, optimizers, generator=None, loss_fn=None):
        task, _ = optimizers
        if loss_fn is None:
            def loss_of(net):
                logits = net(x)
                return logits, F.cross_entropy(logits, y)
        else:
            def loss_of(net):
                return loss_fn(net, x, y)
        task.zero_grad(set_to_none=True)
        relaxed = relax_and_backward(
            model, loss_of, iterations=self.iterations, inference_lr=self.inference_lr,
            fixed_prediction=self.fixed_prediction, generators=bound_generators(loss_fn))
        task.step()
        return relaxed.output, relaxed.loss


class NMFRule(Rule):
    """NMF features (multiplicative updates) under a readout trained by SGD (spec §C.3).

    `convert` replaces the architecture by `NMFNet`: one NMF layer of `n_components` (None:
    the width of the architecture's readout input) and a readout of the same classes.
    """

    def __init__(self, name, settings, *, beta_loss: str, n_components: int | None,
                 resolution: int, transform_iter: int):
        super().__init__(name, settings)
        if beta_loss not in BETA_LOSSES:
            raise ValueError(f"rule_settings for rule {name!r}: beta_loss must be one of "
                             f"{', '.join(BETA_LOSSES)}; got {beta_loss!r}")
        for key, value in (("resolution", resolution), ("transform_iter", transform_iter),
                           ("n_components", 1 if n_components is None else n_components)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"rule_settings for rule {name!r}: {key} must be a positive "
                                 f"int{' or null' if key == 'n_components' else ''}; "
                                 f"got {value!r}")
        self.beta_loss, self.n_components = beta_loss, n_components
        self.resolution, self.transform_iter = resolution, transform_iter

    def convert(self, model):
        backbone = getattr(model, "backbone", model)
        readout = getattr(backbone, "readout", None)
        if not isinstance(readout, nn.Linear):
            raise ValueError(f"rule {self.name!r}: the model needs a final nn.Linear named "
                             f"'readout' (its width sets the classes); got {type(readout)}")
        convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
        in_channels = convs[0].in_channels if convs else 3
        k = readout.in_features if self.n_components is None else self.n_components
        net = NMFNet(readout.out_features, k, self.resolution, in_channels,
                     beta_loss=self.beta_loss, transform_iter=self.transform_iter,
                     device=readout.weight.device)
        log.info("rule %s: %s replaced by %d NMF components (%s) of %d px images and a "
                 "linear readout", self.name, type(backbone).__name__, k, self.beta_loss,
                 self.resolution)
        if backbone is model:
            return net
        model.backbone = net
        model.layer_names = net.layer_names
        return model

    def after_step(self, model):
        for layer in model.modules():
            if isinstance(layer, NMFLayer):
                layer.nmf_step()


def _kp_decay(settings, weight_decay):
    return weight_decay / 2 if settings["decay"] is None else settings["decay"]


def _burstprop(name, settings, **kwargs):
    # imported here: pipeline.learning.burstprop builds on FeedbackRule above
    from pipeline.learning.burstprop import BurstpropRule
    return BurstpropRule(name, settings, **kwargs)


def _ddtp(settings):
    # imported here: pipeline.learning.target_propagation builds on Rule above
    from pipeline.learning.target_propagation import DDTPRule
    return DDTPRule("ddtp", settings)


# Rule name -> factory(resolved settings, task weight decay) -> Rule.
RULE_FACTORIES = {
    "bp": lambda s, wd: Rule("bp", s),
    "fa": lambda s, wd: FeedbackRule("fa", s, Feedback()),
    "ss": lambda s, wd: FeedbackRule("ss", s, SignSymmetry(normalize=s["normalize"])),
    "wm": lambda s, wd: FeedbackRule(
        "wm", s, Mirror(s["amp"], s["decay"], input_noise=s["input_noise"], samples=s["samples"]),
        optimizer=s["optimizer"], lr=s["lr"]),
    "ia": lambda s, wd: FeedbackRule(
        "ia", s, Information(s["amp"], s["null"], s["decay"], input_noise=s["input_noise"],
                             samples=s["samples"]),
        optimizer=s["optimizer"], lr=s["lr"]),
    "sa": lambda s, wd: FeedbackRule("sa", s, Symmetric(s["self"], s["decay"]),
                                     optimizer=s["optimizer"], lr=s["lr"]),
    "aa": lambda s, wd: FeedbackRule("aa", s, Activation(s["amp"], s["sparse"],
                                                         samples=s["samples"]),
                                     optimizer=s["optimizer"], lr=s["lr"]),
    "kp": lambda s, wd: FeedbackRule("kp", s, KolenPollack(_kp_decay(s, wd))),
    "hebb": lambda s, wd: HebbianRule("hebb", s, lr=s["lr"], temperature=s["temperature"],
                                      readout=s["readout"],
                                      readout_iterations=s["readout_iterations"]),
    "pc": lambda s, wd: PredictiveCodingRule("pc", s, iterations=s["iterations"],
                                             inference_lr=s["inference_lr"],
                                             fixed_prediction=s["fixed_prediction"]),
    "nmf": lambda s, wd: NMFRule("nmf", s, beta_loss=s["beta_loss"],
                                 n_components=s["n_components"], resolution=s["resolution"],
                                 transform_iter=s["transform_iter"]),
    "burstprop": lambda s, wd: _burstprop("burstprop", s, learn_feedback=False),
    "burstprop_kp": lambda s, wd: _burstprop("burstprop_kp", s, learn_feedback=True,
                                             decay=_kp_decay(s, wd)),
    "ddtp": lambda s, wd: _ddtp(s),
}


def make_rule(name: str, settings: dict | None = None, *, weight_decay: float = 5e-4,
              optimizer: str = "sgd") -> Rule:
    """The named rule with `settings` over its defaults and its task optimizer.

    Parameters
    ----------
    name : str
        One of `RULE_DEFAULTS`.
    settings : dict, optional
        Hyperparameters overriding the defaults (unknown keys raise ValueError).
    weight_decay : float
        The task optimizer's L2 weight decay; Kolen–Pollack's default B decay matches it.
    optimizer : str
        The task optimizer, one of `TASK_OPTIMIZERS` (ValueError otherwise).
    """
    if optimizer not in TASK_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(TASK_OPTIMIZERS)}; "
                         f"got {optimizer!r}")
    rule = RULE_FACTORIES[name](resolve_rule_settings(name, settings), weight_decay)
    rule.task_optimizer = optimizer
    return rule
