"""Model names `{arch}-{objective}-{rule}-s{seed}` and the registries of their parts.

A model is a hypothesis: an architecture trained on an objective with a learning rule, from one
random seed. The name is the Snakemake wildcard and the folder under `results/models/`, so every
part uses `_` inside and `-` only as the separator. Adding a rule or an objective means adding
its name to the registry here (and its implementation where the registry is consumed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.objectives import OBJECTIVE_CLASSES

ARCHS = ("ventral_cnn", "lenet", "resnet18", "resnet34", "resnet50", "alexnet64",
         "streamnet_single", "streamnet_dual", "streamnet_six", "vgg16", "convrnn")
OBJECTIVES = tuple(OBJECTIVE_CLASSES)      # pipeline.objectives: supervised, simclr, ...
# bp backprop, fa feedback alignment, ss sign symmetry, wm weight mirror, ia information
# alignment, sa symmetric alignment, aa activation alignment, kp Kolen-Pollack, hebb Hebbian
# soft winner-take-all conv layers under an SGD readout (pipeline.learning).
RULES = ("bp", "fa", "ss", "wm", "ia", "sa", "aa", "kp", "hebb")

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
        _check_part("arch", self.arch, ARCHS)
        _check_part("objective", self.objective, OBJECTIVES)
        _check_part("rule", self.rule, RULES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"model seed must be a non-negative int; got {self.seed!r}")

    @property
    def name(self) -> str:
        """The model name `{arch}-{objective}-{rule}-s{seed}`."""
        return f"{self.arch}-{self.objective}-{self.rule}-s{self.seed}"


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
