"""Model architectures: their names (`names`, no torch) and their construction (`zoo`).

`build_model` and `layer_outputs` are imported from `zoo` when first asked for, so importing
this package for the names (the Snakefile, comparison and figure jobs) does not import torch.
"""

from __future__ import annotations

from pipeline.models.names import (ARCHS, MIN_INPUT_SIZE, OBJECTIVES, RULES, ModelSpec,
                                   check_model, parse_model_name)

__all__ = ["ARCHS", "MIN_INPUT_SIZE", "OBJECTIVES", "RULES", "ModelSpec", "build_model",
           "check_model", "layer_outputs", "parse_model_name"]


def __getattr__(name: str):
    """`build_model` and `layer_outputs` from `pipeline.models.zoo` (PEP 562)."""
    if name in ("build_model", "layer_outputs"):
        from pipeline.models import zoo

        return getattr(zoo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
