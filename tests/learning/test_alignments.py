"""Each rule's defining behaviour on a small MLP learning Gaussian clusters (spec §A.4, §A.10.6)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from tests.learning.tasks import accuracy, mlp
from pipeline.learning import feedback_layers, make_rule, weight_angle
from pipeline.learning.diagnostics import angle

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def train(rule, model, x, y, steps, *, lr=0.05, momentum=0.9, weight_decay=0.0, each=None):
    optimizers = rule.optimizers(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=generator)
        rule.step(model, x[idx], y[idx], optimizers, generator)
        if each is not None:
            each(step, model)
    return model


def angles(model):
    return [weight_angle(layer.weight, layer.weight_fb) for _, layer in feedback_layers(model)]


def hidden_update_angle(model, x, y):
    """Angle between the hidden layers' W-gradients under the model's B and under B := W."""
    def hidden_grads(m):
        hidden = [layer.weight for _, layer in feedback_layers(m)][:-1]
        grads = torch.autograd.grad(F.cross_entropy(m(x), y), hidden)
        return torch.cat([g.flatten() for g in grads])

    backprop = copy.deepcopy(model)
    for _, layer in feedback_layers(backprop):
        layer.weight_fb.data.copy_(layer.weight.data)
    return angle(hidden_grads(model), hidden_grads(backprop))


def test_feedback_layers_with_b_tied_to_w_train_like_plain_backprop(task):
    """The FB layers send δ down through B (spec §A.4.1): with B := W before every step, the
    feedback-alignment rule trains exactly as backprop on the plain layers."""
    (x, y), _ = task
    plain = train(make_rule("bp"), mlp(0), x, y, 20)
    rule = make_rule("fa")

    def tie(step, model):
        for _, layer in feedback_layers(model):
            layer.weight_fb.data.copy_(layer.weight.data)

    model = rule.convert(mlp(0))
    tie(None, model)
    via_fb = train(rule, model, x, y, 20, each=tie)
    for name, p in plain.named_parameters():
        torch.testing.assert_close(via_fb.get_parameter(name), p, rtol=1e-5, atol=1e-6)


def test_feedback_alignment_keeps_b_and_its_updates_come_to_align(task):
    (x, y), (x_test, y_test) = task
    rule = make_rule("fa")
    model = rule.convert(mlp(0))
    initial = [layer.weight_fb.detach().clone() for _, layer in feedback_layers(model)]
    start = hidden_update_angle(model, x[:128], y[:128])
    train(rule, model, x, y, 200)
    for fb, (_, layer) in zip(initial, feedback_layers(model)):
        assert torch.equal(layer.weight_fb, fb)
    end = hidden_update_angle(model, x[:128], y[:128])
    assert start > 80 and end < 75                   # from orthogonal to aligned with BP
    assert accuracy(model, x_test, y_test) > 0.9     # chance 0.25


def test_kolen_pollack_difference_shrinks_geometrically(task):
    (x, y), _ = task
    rule = make_rule("kp", weight_decay=0.1)         # B's decay = W's L2 (spec §A.4.7)
    model = rule.convert(mlp(0))
    norms = []

    def record(_step, m):
        norms.append([(layer.weight - layer.weight_fb).norm().item()
                      for _, layer in feedback_layers(m)])

    record(None, model)
    start = angles(model)
    train(rule, model, x, y, 600, lr=0.1, momentum=0.0, weight_decay=0.1, each=record)
    norms = torch.tensor(norms)
    ratios = norms[1:] / norms[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 1 - 0.1 * 0.1), rtol=1e-4, atol=0)
    assert min(start) > 80 and max(angles(model)) < 1.0


def test_kolen_pollack_b_follows_w_updates_with_momentum(task):
    (x, y), _ = task
    rule = make_rule("kp", weight_decay=0.01)
    model = rule.convert(mlp(1))
    start = angles(model)
    train(rule, model, x, y, 300, weight_decay=0.01)
    assert all(a < s - 40 for a, s in zip(angles(model), start))


@pytest.mark.parametrize("name, bound", [("wm", 30), ("sa", 45), ("ia", 60), ("aa", 75)])
def test_learned_feedback_rules_shrink_the_weight_angle(task, name, bound):
    (x, y), (x_test, y_test) = task
    rule = make_rule(name)
    model = rule.convert(mlp(0))
    assert min(angles(model)) > 80
    train(rule, model, x, y, 300)
    assert max(angles(model)) < bound
    assert accuracy(model, x_test, y_test) > 0.9


def test_sign_symmetry_transports_signs_every_step(task):
    (x, y), _ = task
    rule = make_rule("ss")
    model = train(rule, rule.convert(mlp(0)), x, y, 5)
    rule.before_forward(model)
    for _, layer in feedback_layers(model):
        w, fb = layer.weight.detach(), layer.weight_fb.detach()
        assert torch.equal(fb.sign(), w.sign())
        torch.testing.assert_close(fb.norm(), w.norm())
