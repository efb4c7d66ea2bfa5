"""Learning rules: feedback-weight layers, alignment losses, a Hebbian layer, and diagnostics.

Layout after jsalbert/biotorch and neuroailab/Neural-Alignment (STYLE §5): `functions` holds
the backward maths, `layers` the modules owning W and B, `primitives` and `alignments` the
per-layer alignment losses, `convert` the layer swap for any model, `hebbian` the local rule,
`diagnostics` the angles of spec §A.9, and `rules` the named rules with their training step.
"""

from pipeline.learning.alignments import (Activation, Alignment, Feedback, Information,
                                          KolenPollack, Mirror, SignSymmetry, Symmetric)
from pipeline.learning.convert import feedback_layers, hebbian_layers, to_feedback, to_hebbian
from pipeline.learning.diagnostics import (alignment_table, gradient_angle, norm_ratio,
                                           weight_angle)
from pipeline.learning.functions import FBConv2dFn, FBLinearFn
from pipeline.learning.hebbian import HebbianConv2d
from pipeline.learning.layers import FBConv2d, FBLinear
from pipeline.learning.rules import (RULE_DEFAULTS, RULE_FACTORIES, Rule, make_rule,
                                     resolve_rule_settings)

__all__ = [
    "Activation", "Alignment", "FBConv2d", "FBConv2dFn", "FBLinear", "FBLinearFn",
    "Feedback", "HebbianConv2d", "Information", "KolenPollack", "Mirror", "RULE_DEFAULTS",
    "RULE_FACTORIES", "Rule", "SignSymmetry", "Symmetric", "alignment_table", "feedback_layers",
    "gradient_angle", "hebbian_layers", "make_rule", "norm_ratio", "resolve_rule_settings",
    "to_feedback", "to_hebbian", "weight_angle",
]
