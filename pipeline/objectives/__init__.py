"""Training objectives by name: what the network is trained to do (spec §2.4).

`make_objective("simclr", settings)` returns an `Objective` that sets the backbone's readout
width, builds its heads, computes its loss on a batch (the loss `Rule.step` differentiates) and
reports a task accuracy. Every learning rule trains every objective, except where
`pipeline.models.names.OBJECTIVE_UNSUPPORTED_RULES` says why not. Scoring a trained backbone
by a linear classifier on its penultimate features is an evaluation, `pipeline.transfer`.
"""

from pipeline.objectives.autoencoder import Autoencoder
from pipeline.objectives.base import Objective, ObjectiveNet, Split, readout_features
from pipeline.objectives.instance import InstanceRecognition
from pipeline.objectives.rotation import Rotation
from pipeline.objectives.simclr import SimCLR
from pipeline.objectives.supervised import Supervised

# Objective name -> class; names.OBJECTIVES lists these names.
OBJECTIVE_CLASSES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Supervised, SimCLR, InstanceRecognition, Autoencoder, Rotation)
}
OBJECTIVE_DEFAULTS: dict[str, dict] = {name: cls.DEFAULTS for name, cls in
                                       OBJECTIVE_CLASSES.items()}

__all__ = ["OBJECTIVE_CLASSES", "OBJECTIVE_DEFAULTS", "Objective", "ObjectiveNet", "Split",
           "make_objective", "readout_features"]


def make_objective(name: str, settings: dict | None = None) -> Objective:
    """The named objective with `settings` over its defaults (unknown keys raise ValueError)."""
    if name not in OBJECTIVE_CLASSES:
        raise ValueError(f"unknown objective {name!r}; known objectives: "
                         f"{', '.join(OBJECTIVE_CLASSES)}")
    return OBJECTIVE_CLASSES[name](settings)
