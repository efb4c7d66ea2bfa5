"""Model names `{arch}-{objective}-{rule}-s{seed}` and the registries of their parts.

A model is a hypothesis: an architecture trained on an objective with a learning rule, from one
random seed. The name is the Snakemake wildcard and the folder under `results/models/`, so every
part uses `_` inside and `-` only as the separator. Adding a rule or an objective means adding
its name to the registry here (and its implementation where the registry is consumed).
The registries are plain names, so this module imports no torch: the Snakefile, the
comparison and the figure jobs read names without paying torch's import (about 1.5 s a
process); tests check each registry against what implements it (tests/models/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ARCHS = ("ventral_cnn", "lenet", "resnet18", "resnet34", "resnet50", "alexnet64",
         "streamnet_single", "streamnet_dual", "streamnet_six", "vgg16", "convrnn", "pcn", "mlp")
# pcn is Wen et al.'s predictive coding network, an inference *architecture* trained end to end
# by the rule in the name (pipeline.models.pcn); the learning rule `pc` is another thing.
# Image objectives, in the order of pipeline.objectives.OBJECTIVE_CLASSES (their classes).
OBJECTIVES = ("supervised", "simclr", "instance", "autoencoder", "rotation")
# Rules an objective cannot be trained with, and why (Objective.check_rule, check_model).
OBJECTIVE_UNSUPPORTED_RULES = {
    "autoencoder": {"hebb": "its decoder's convolutions would become Hebbian layers that learn "
                            "features of their input instead of reconstructing the image"},
}
# MEC path integrators (spec §3.5): archs {cell}_{nonlinearity} (pipeline.models.path_integrator)
# trained on placecell or position (pipeline.objectives.path_integration), e.g.
# ugrnn_relu-placecell-bp-s0. They pair only with each other and train with pipeline.mec.training.
PATH_CELLS = ("rnn", "srnn", "ugrnn", "gru", "lstm")
PATH_NONLINEARITIES = ("linear", "tanh", "sigmoid", "relu")
PATH_ARCHS = tuple(f"{cell}_{act}" for cell in PATH_CELLS for act in PATH_NONLINEARITIES)
PATH_OBJECTIVES = ("placecell", "position")
PATH_RULES = ("bp", "fa", "ss", "wm", "ia", "sa", "aa", "kp")    # hebb needs conv layers
# bp backprop, fa feedback alignment, ss sign symmetry, wm weight mirror, ia information
# alignment, sa symmetric alignment, aa activation alignment, kp Kolen-Pollack, hebb Hebbian
# soft winner-take-all conv layers under an SGD readout, pc predictive coding (relaxed beliefs,
# local updates), nmf NMF features under an SGD readout, burstprop / burstprop_kp Payeur et
# al.'s burst-dependent plasticity with fixed / learned feedback, ddtp direct difference
# target propagation (pipeline.learning).
RULES = ("bp", "fa", "ss", "wm", "ia", "sa", "aa", "kp", "hebb", "pc", "nmf", "burstprop",
         "burstprop_kp", "ddtp")
# Smallest square input each architecture's constructor accepts (its pools and strides keep at
# least one position); tests/models/test_check_model.py checks the table against the builders.
MIN_INPUT_SIZE = {"ventral_cnn": 16, "lenet": 6, "resnet18": 8, "resnet34": 8, "resnet50": 8,
                  "alexnet64": 63, "streamnet_single": 31, "streamnet_dual": 31,
                  "streamnet_six": 31, "vgg16": 32, "convrnn": 16, "pcn": 16, "mlp": 1}
# Rules an architecture cannot be trained with, and why (check_model refuses the pair).
UNSUPPORTED_RULES = {"mlp": {"hebb": "Hebbian layers are convolutional and the MLP has none"}}

_PART = re.compile(r"^[a-z0-9_]+$")
_SEED = re.compile(r"^s(\d+)$")


def _check_part(kind: str, value, known: tuple[str, ...]) -> None:
    """Raise ValueError if `value` is not a registered `kind` name."""
    if not isinstance(value, str) or not _PART.match(value):
        raise ValueError(
            f"model {kind} must be lower-case letters, digits and '_' (never '-'); got {value!r}"
        )
    if value not in known:
        raise ValueError(f"unknown model {kind} {value!r}; known {kind}s: {', '.join(known)}")


@dataclass(frozen=True)
class ModelSpec:
    """The four parts of a model name.

    Parameters
    ----------
    arch : str
        Architecture, one of `ARCHS`.
    objective : str
        Training objective, one of `OBJECTIVES`.
    rule : str
        Learning rule, one of `RULES`.
    seed : int
        Non-negative random seed for initialisation and data order.
    """

    arch: str
    objective: str
    rule: str
    seed: int

    def __post_init__(self):
        _check_part("arch", self.arch, ARCHS + PATH_ARCHS)
        _check_part("objective", self.objective, OBJECTIVES + PATH_OBJECTIVES)
        _check_part("rule", self.rule, RULES)
        if (self.arch in PATH_ARCHS) != (self.objective in PATH_OBJECTIVES):
            kind = "path-integration" if self.arch in PATH_ARCHS else "image"
            wanted = PATH_OBJECTIVES if self.arch in PATH_ARCHS else OBJECTIVES
            raise ValueError(f"{kind} arch {self.arch!r} cannot be trained on objective "
                             f"{self.objective!r}; its objectives are: {', '.join(wanted)}")
        if self.arch in PATH_ARCHS and self.rule not in PATH_RULES:
            raise ValueError(f"rule {self.rule!r} cannot train path integrator {self.arch!r} "
                             f"(Hebbian layers are convolutional); its rules are: "
                             f"{', '.join(PATH_RULES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"model seed must be a non-negative int; got {self.seed!r}")

    @property
    def name(self) -> str:
        """The model name `{arch}-{objective}-{rule}-s{seed}`."""
        return f"{self.arch}-{self.objective}-{self.rule}-s{self.seed}"

    @property
    def labels(self) -> dict:
        """The columns that label a model's rows in every table: model, arch, objective, rule,
        seed."""
        return {"model": self.name, "arch": self.arch, "objective": self.objective,
                "rule": self.rule, "seed": self.seed}


def parse_model_name(name: str) -> ModelSpec:
    """Split `{arch}-{objective}-{rule}-s{seed}` into a validated `ModelSpec`.

    Raises
    ------
    ValueError
        Naming the part that is malformed or unknown, and the registered alternatives.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a str; got {type(name).__name__} {name!r}")
    parts = name.split("-")
    if len(parts) != 4:
        raise ValueError(
            f"model name {name!r} must have 4 '-'-separated parts "
            f"{{arch}}-{{objective}}-{{rule}}-s{{seed}} (parts use '_', never '-'); "
            f"found {len(parts)} parts"
        )
    arch, objective, rule, seed = parts
    match = _SEED.match(seed)
    if match is None:
        raise ValueError(
            f"model name {name!r}: seed part must look like 's0', 's12'; got {seed!r}"
        )
    try:
        return ModelSpec(arch, objective, rule, int(match.group(1)))
    except ValueError as err:
        raise ValueError(f"model name {name!r}: {err}") from err


def control_names(controls: dict) -> list[str]:
    """Names of the MEC controls a ``mec.controls`` block asks for: sources compared like path
    integrators, whose rate maps `pipeline.mec.controls` computes."""
    names = ["placecells"] if controls.get("placecells") else []
    names += [f"nmf_r{k}" if k is not None else "nmf_full" for k in controls.get("nmf_ranks", [])]
    names += ["velocity"] if controls.get("velocity") else []
    return names


def _check_epochs(name: str, field: str, value, epochs: int, words: tuple[str, ...]) -> None:
    """Raise ValueError unless `value` is one of `words` or a list of epochs in 0 … epochs."""
    if isinstance(value, str):
        if value not in words:
            raise ValueError(f"model {name!r}: {field} must be {', '.join(map(repr, words))} or "
                             f"a list of epochs; got {value!r}")
        return
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in value):
        raise ValueError(f"model {name!r}: {field} must be {', '.join(map(repr, words))} or a "
                         f"list of int epochs; got {value!r}")
    beyond = sorted(e for e in value if not 0 <= e <= epochs)
    if beyond:
        raise ValueError(f"model {name!r}: {field} {beyond} are outside the trained epochs "
                         f"0…{epochs} (models.train.epochs = {epochs})")


def check_model(name: str, *, input_size: int, epochs: int, transfer_epochs="final",
                compare_epochs="all") -> ModelSpec:
    """Check a model of the config before anything runs; cheap (no model is built).

    Parameters
    ----------
    name : str
        `{arch}-{objective}-{rule}-s{seed}`.
    input_size : int
        Height = width the network will see: the model's `input_size` setting, or the
        stimuli's size when that is None.
    epochs : int
        The model's `models.train.epochs` (after its override).
    transfer_epochs : "final", "all" or list of int
        `models.transfer.epochs`.
    compare_epochs : "all", "final", "ends" or list of int
        The epochs the comparisons score (`compare.*.epochs`).

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        Naming the model and the problem: a malformed name, a rule its objective or
        architecture cannot be trained with (autoencoder × hebb, mlp × hebb:
        `OBJECTIVE_UNSUPPORTED_RULES`, `UNSUPPORTED_RULES`), an input size below the
        architecture's minimum (`MIN_INPUT_SIZE`), or requested epochs beyond training.
    """
    spec = parse_model_name(name)
    if spec.arch in PATH_ARCHS:
        raise ValueError(f"model {name!r} is a path integrator (MEC, spec §3.5), not an image "
                         f"model: list it under mec.models, not models.*")
    reason = OBJECTIVE_UNSUPPORTED_RULES.get(spec.objective, {}).get(spec.rule)
    if reason is not None:
        raise ValueError(f"model {name!r}: objective {spec.objective!r} cannot be trained with "
                         f"rule {spec.rule!r}: {reason}")
    reason = UNSUPPORTED_RULES.get(spec.arch, {}).get(spec.rule)
    if reason is not None:
        raise ValueError(f"model {name!r}: arch {spec.arch!r} cannot be trained with rule "
                         f"{spec.rule!r}: {reason}")
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"model {name!r}: input_size must be an int; got {input_size!r}")
    if input_size < MIN_INPUT_SIZE[spec.arch]:
        raise ValueError(f"model {name!r}: input_size must be at least "
                         f"{MIN_INPUT_SIZE[spec.arch]} for arch {spec.arch!r}; got {input_size}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"model {name!r}: epochs must be a non-negative int; got {epochs!r}")
    _check_epochs(name, "models.transfer.epochs", transfer_epochs, epochs, ("final", "all"))
    _check_epochs(name, "compare epochs", compare_epochs, epochs, ("all", "final", "ends"))
    return spec
