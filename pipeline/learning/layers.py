"""Drop-in nn.Linear and nn.Conv2d that hold a backward weight B beside the forward weight W.

Spec §A.10.3. `weight` and `bias` are the wrapped layer's own parameters; `weight_fb` (B) is a
parameter too, trained only by the alignment optimizer when the rule learns it. The layer's
`alignment` (pipeline.learning.alignments) says how B starts and changes. In training the
layer keeps what its alignment loss reads (a detached view of its input, a copy of its output
without bias) until the rule's step consumes it, so the loss needs no extra forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.alignments import Alignment, Feedback
from pipeline.learning.functions import FBConv2dFn, FBLinearFn


class _FeedbackMixin:
    """Shared state of the FB layers: the alignment, B and the activity cache."""

    def _init_feedback(self, alignment: Alignment | None):
        self.alignment = alignment if alignment is not None else Feedback()
        weight = self.weight.detach()
        fb = torch.empty_like(weight) if weight.is_meta else self.alignment.init_feedback(weight)
        self.weight_fb = nn.Parameter(fb, requires_grad=self.alignment.learns_feedback)
        self.cache = None

    def set_alignment(self, alignment: Alignment) -> None:
        """Attach another rule's alignment to this layer, keeping the current B."""
        self.alignment = alignment
        self.weight_fb.requires_grad_(alignment.learns_feedback)
        self.cache = None

    def _keep(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Cache the first `samples` inputs and, if read, the outputs less the bias, in W's
        dtype: under bf16 autocast the alignment loss still runs in fp32 on the bf16 activity."""
        m, dtype = self.alignment.samples, self.weight.dtype
        y_f = None
        if self.alignment.reads_output:
            y = y[:m].detach().to(dtype)
            y_f = y - self._bias_view() if self.bias is not None else y.clone()
        self.cache = (x[:m].detach().to(dtype), y_f)

    def _adopt(self, module: nn.Module) -> None:
        """Take over `module`'s parameters and mode (conversion keeps the same tensors)."""
        self.weight = module.weight
        self.bias = module.bias
        self.train(module.training)


class FBLinear(_FeedbackMixin, nn.Linear):
    """nn.Linear whose backward pass sends δ B instead of δ W (spec §A.10.1).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    alignment : Alignment, optional
        How B starts and learns; default `Feedback()` (fixed random B).
    """

    conv = None

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 alignment: Alignment | None = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_feedback(alignment)

    @classmethod
    def from_module(cls, linear: nn.Linear, alignment: Alignment) -> "FBLinear":
        """An FBLinear sharing `linear`'s weight and bias, with B from `alignment`."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    alignment=Feedback(), device="meta")           # meta: draws nothing
        layer._adopt(linear)
        layer._init_feedback(alignment)
        return layer

    def _bias_view(self):
        return self.bias

    def forward(self, x):
        if not torch.is_grad_enabled():            # evaluation and extraction: B plays no part
            return F.linear(x, self.weight, self.bias)
        y = FBLinearFn.apply(x, self.weight, self.weight_fb, self.bias, self.alignment.tie_grad)
        if self.training and self.alignment.reads_activity:
            self._keep(x, y)
        return y


def symmetric_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """Symmetric integer padding equivalent to `conv.padding` ('valid', 'same' or ints)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in totals):
            raise ValueError(
                f"{conv}: padding='same' with an even kernel pads asymmetrically, which the "
                "feedback conv does not support; give integer padding instead"
            )
        return tuple(t // 2 for t in totals)
    return tuple(conv.padding)


class FBConv2d(_FeedbackMixin, nn.Conv2d):
    """nn.Conv2d whose backward pass sends the transposed convolution with B (spec §A.10.2).

    Parameters are those of nn.Conv2d plus `alignment` (default `Feedback()`). Any padding
    mode works; non-zero modes pad the input explicitly, as nn.Conv2d does.

    Attributes
    ----------
    conv : tuple
        (stride, padding, dilation, groups) of the convolution proper, as the primitives and
        `FBConv2dFn` take them.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros",
                 alignment: Alignment | None = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        inner = (0, 0) if padding_mode != "zeros" else symmetric_padding(self)
        self.conv = (tuple(self.stride), inner, tuple(self.dilation), self.groups)
        self._init_feedback(alignment)

    @classmethod
    def from_module(cls, conv: nn.Conv2d, alignment: Alignment) -> "FBConv2d":
        """An FBConv2d sharing `conv`'s weight and bias, with B from `alignment`."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                    conv.padding_mode, alignment=Feedback(), device="meta")
        layer._adopt(conv)
        layer._init_feedback(alignment)
        return layer

    def _bias_view(self):
        return self.bias.view(1, -1, 1, 1)

    def forward(self, x):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        if not torch.is_grad_enabled():
            return F.conv2d(x, self.weight, self.bias, *self.conv)
        y = FBConv2dFn.apply(x, self.weight, self.weight_fb, self.bias, *self.conv,
                             self.alignment.tie_grad)
        if self.training and self.alignment.reads_activity:
            self._keep(x, y)
        return y
