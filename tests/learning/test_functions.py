import pytest
import torch
import torch.nn.functional as F

from pipeline.learning import FBConv2dFn, FBLinearFn

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CONVS = [  # (c_in, c_out, kernel, stride, padding, dilation, groups, bias)
    (3, 4, 3, 1, 1, 1, 1, True),
    (4, 6, 3, 2, 0, 1, 2, True),
    (4, 8, (3, 1), (2, 1), (1, 0), (2, 1), 4, False),
    (2, 5, 1, 1, 0, 1, 1, False),
]


def grads(output, inputs, seed=0):
    torch.manual_seed(seed)
    upstream = torch.randn_like(output)
    return torch.autograd.grad(output, inputs, upstream)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_with_b_equal_w_is_backprop(bias):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 7, requires_grad=True)          # extra leading dim on purpose
    w = torch.randn(4, 7, requires_grad=True)
    b = torch.randn(4, requires_grad=True) if bias else None
    inputs = [x, w] + ([b] if bias else [])
    ours = grads(FBLinearFn.apply(x, w, w.detach().clone(), b, False), inputs)
    reference = grads(F.linear(x, w, b), inputs)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, dilation, groups, bias", CONVS)
def test_conv_with_b_equal_w_is_backprop(c_in, c_out, k, stride, padding, dilation, groups, bias):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias)
    x = torch.randn(3, c_in, 9, 8, requires_grad=True)
    inputs = [x, *conv.parameters()]
    ours = grads(FBConv2dFn.apply(x, conv.weight, conv.weight.detach().clone(), conv.bias,
                                  conv.stride, conv.padding, conv.dilation, groups, False), inputs)
    reference = grads(conv(x), inputs)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_input_gradient_goes_through_b_and_weight_gradient_through_x():
    torch.manual_seed(2)
    x = torch.randn(6, 5, requires_grad=True)
    w = torch.randn(3, 5, requires_grad=True)
    fb = torch.randn(3, 5)
    gx, gw = grads(FBLinearFn.apply(x, w, fb, None, False), [x, w])
    torch.manual_seed(0)
    delta = torch.randn(6, 3)                                        # the δ_y grads() drew
    torch.testing.assert_close(gx, delta @ fb)
    torch.testing.assert_close(gw, delta.T @ x.detach())

    conv_x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    fb = torch.randn(4, 3, 3, 3)
    gx, gw = grads(FBConv2dFn.apply(conv_x, w, fb, None, (1, 1), (1, 1), (1, 1), 1, False),
                   [conv_x, w])
    # BP with W replaced by B gives the same input gradient, and BP with W the same weight one.
    expected_x, = grads(F.conv2d(conv_x, fb, None, 1, 1), [conv_x])
    expected_w, = grads(F.conv2d(conv_x, w, None, 1, 1), [w])
    torch.testing.assert_close(gx, expected_x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, expected_w, rtol=1e-5, atol=1e-5)


def test_tie_grad_gives_b_the_weight_gradient():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 5, 5)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    fb = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = FBConv2dFn.apply(x, w, fb, None, (1, 1), (0, 0), (1, 1), 1, True)
    y.square().sum().backward()
    torch.testing.assert_close(fb.grad, w.grad)
    assert fb.grad.data_ptr() != w.grad.data_ptr()           # separate tensors for two optimizers
    lin_w = torch.randn(3, 4, requires_grad=True)
    lin_fb = torch.randn(3, 4, requires_grad=True)
    FBLinearFn.apply(torch.randn(5, 4), lin_w, lin_fb, None, True).sum().backward()
    torch.testing.assert_close(lin_fb.grad, lin_w.grad)
    untied = torch.randn(3, 4, requires_grad=True)
    FBLinearFn.apply(torch.randn(5, 4), lin_w, untied, None, False).sum().backward()
    assert untied.grad is None


def test_gradcheck_in_double_precision():
    torch.manual_seed(4)
    x = torch.randn(2, 4, 5, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: FBConv2dFn.apply(x, w, w, b, (2, 2), (1, 1), (1, 1), 2, False), (x, w, b))
    xl = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    wl = torch.randn(2, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: FBLinearFn.apply(x, w, w, None, False), (xl, wl))


def test_under_bf16_autocast_b_equal_w_matches_backprop_under_autocast():
    """The forward runs in bf16 and δ_y arrives in bf16: the input gradient goes through B cast
    to bf16 and the parameters get their gradients in fp32, exactly as autocast's backprop."""
    torch.manual_seed(5)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    conv = torch.nn.Conv2d(3, 6, 3, 1, 1)
    lin_w = torch.randn(5, 6 * 8 * 8, requires_grad=True)
    fb = torch.randn(6, 3, 3, 3)
    inputs = [x, conv.weight, conv.bias, lin_w]

    def net(conv_fn, linear_fn):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return linear_fn(torch.relu(conv_fn(x)).flatten(1))

    ours = grads(net(lambda h: FBConv2dFn.apply(h, conv.weight, conv.weight.detach(), conv.bias,
                                                (1, 1), (1, 1), (1, 1), 1, False),
                     lambda h: FBLinearFn.apply(h, lin_w, lin_w.detach(), None, False)), inputs)
    reference = grads(net(conv, lambda h: F.linear(h, lin_w)), inputs)
    for got, expected, param in zip(ours, reference, inputs):
        assert got.dtype == expected.dtype == param.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):       # B ≠ W: the input gradient is
        ours = FBConv2dFn.apply(x, conv.weight, fb, None, (1, 1), (1, 1), (1, 1), 1, False)
        reference = F.conv2d(x, fb, None, 1, 1)               # autocast's backprop through B
    gx, = grads(ours, [x])
    expected_x, = grads(reference, [x])
    torch.testing.assert_close(gx, expected_x, rtol=0, atol=0)
