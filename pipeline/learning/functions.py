"""Linear and conv2d with a forward weight W and a backward weight B, as autograd Functions.

Spec §A.10.1–2. The forward pass is the ordinary layer, y = W x (+ b). The backward pass
sends δ_x = Bᵀ δ_y downward where backprop would send Wᵀ δ_y, and forms W's own update
exactly as backprop does, ∇̃_W = δ_y xᵀ. With `tie_grad` (Kolen–Pollack, §A.4.7) B receives
that same update. B has W's shape, so B = W is backprop.

Under bf16 autocast the forward pass runs in bf16 and δ_y arrives in bf16; the backward pass
casts the saved input and B to δ_y's dtype (`_as_grad`), as autocast's own casts do for
backprop's backward, and autograd hands each gradient to its parameter in the parameter's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import Function


def _as_grad(grad: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`tensors` in `grad`'s dtype (bf16 under autocast; unchanged, not copied, in fp32)."""
    return tuple(t.to(grad.dtype) for t in tensors)


class FBLinearFn(Function):
    """`F.linear(x, weight, bias)` whose backward pass uses `weight_fb` for the input gradient.

    Inputs x (..., in), weight and weight_fb (out, in), bias (out,) or None, tie_grad bool.
    Gradients: x ← δ_y B; weight ← δ_yᵀ x summed over all leading dims; bias ← Σ δ_y;
    weight_fb ← the weight gradient if `tie_grad`, else none.
    """

    @staticmethod
    def forward(ctx, x, weight, weight_fb, bias, tie_grad):
        ctx.save_for_backward(x, weight_fb)
        ctx.has_bias = bias is not None
        ctx.tie_grad = tie_grad
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight_fb = _as_grad(grad_y, *ctx.saved_tensors)
        need_x, need_w, need_fb, _, _ = ctx.needs_input_grad
        need_fb = need_fb and ctx.tie_grad
        grad_x = grad_w = grad_b = grad_fb = None
        if need_x:
            grad_x = grad_y @ weight_fb                                   # δ_x = Bᵀ δ_y
        if need_w or need_fb:
            rows = grad_y.reshape(-1, grad_y.shape[-1])
            grad_w = rows.T @ x.reshape(-1, x.shape[-1])                  # δ_y xᵀ
            grad_fb = grad_w.clone() if need_fb else None
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_y.reshape(-1, grad_y.shape[-1]).sum(0)
        return grad_x, grad_w if need_w else None, grad_fb, grad_b, None


class FBConv2dFn(Function):
    """`F.conv2d` whose backward pass uses `weight_fb` for the input gradient.

    Inputs x (batch, channel_in, y, x), weight and weight_fb (channel_out, channel_in/groups,
    kh, kw), bias or None, then stride, padding, dilation (int pairs), groups, tie_grad.
    One `aten.convolution_backward` call gives all gradients: its input gradient is the
    transposed convolution with the weight it is handed (B), and its weight gradient depends
    on that weight's shape only, which W and B share.
    """

    @staticmethod
    def forward(ctx, x, weight, weight_fb, bias, stride, padding, dilation, groups, tie_grad):
        ctx.save_for_backward(x, weight_fb)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        ctx.tie_grad = tie_grad
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight_fb = _as_grad(grad_y, *ctx.saved_tensors)
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w, need_fb = ctx.needs_input_grad[:3]
        need_fb = need_fb and ctx.tie_grad
        need_b = ctx.has_bias and ctx.needs_input_grad[3]
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_y, x, weight_fb, [weight_fb.shape[0]] if ctx.has_bias else None,
            list(stride), list(padding), list(dilation), False, [0, 0], groups,
            [need_x, need_w or need_fb, need_b],
        )
        grad_fb = grad_w.clone() if need_fb else None
        return (grad_x, grad_w if need_w else None, grad_fb, grad_b,
                None, None, None, None, None)
