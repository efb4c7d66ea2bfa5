import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning import make_rule
from pipeline.learning.target_propagation import hidden_target, output_target
from pipeline.models import build_model
from tests.learning.tasks import N_CLASSES, accuracy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class TanhNet(nn.Module):
    """fc1 → tanh → fc2 → tanh → readout, the hidden layers no wider than the output."""

    def __init__(self, dim=20, hidden=5, n_out=8):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, hidden)
        self.readout = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.readout(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def test_targets_at_the_output_are_the_gradient_step():
    torch.manual_seed(0)
    h = torch.randn(6, 4, requires_grad=True)
    y = torch.arange(6) % 4
    loss = F.cross_entropy(h, y)
    (grad,) = torch.autograd.grad(loss, h)
    stepsize = 0.05
    target = output_target(h.detach(), grad * len(h), stepsize)
    # the per-image loss's gradient step, independently: (softmax − onehot)
    expected = h.detach() - stepsize * (torch.softmax(h.detach(), 1) - F.one_hot(y, 4))
    torch.testing.assert_close(target, expected)
    q = torch.randn(12, 4)
    hidden = torch.randn(6, 3, 2, 2)
    moved = hidden_target(hidden, q, target, h.detach()) - hidden
    torch.testing.assert_close(moved.flatten(1), (target - h.detach()) @ q.T)


@pytest.mark.parametrize("arch", ["tanh", "ventral_cnn", "lenet"])
def test_the_readout_descends_its_target_as_backprop_does(arch):
    """The output layer's local loss ½‖τ_L − h_L‖²/η̂ with τ_L the gradient step gives the
    backprop gradient (autograd), so the output targets are the gradient step."""
    torch.manual_seed(0)
    model, x = {"tanh": (TanhNet(), torch.randn(8, 20)),
                "ventral_cnn": (build_model("ventral_cnn", 5, 16), torch.randn(8, 3, 16, 16)),
                "lenet": (build_model("lenet", 5, 12), torch.randn(8, 3, 12, 12))}[arch]
    y = torch.arange(8) % 5 % N_CLASSES
    reference = copy.deepcopy(model).train()
    expected = torch.autograd.grad(F.cross_entropy(reference(x), y),
                                   [reference.readout.weight, reference.readout.bias])
    r = make_rule("ddtp", {"pretrain_steps": 2})
    model = r.convert(model).train()
    task, feedback = r.optimizers(model, lr=1e-12, momentum=0.0, weight_decay=0.0)
    r.step(model, x, y, (task, feedback), torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.readout.weight.grad, expected[0])
    torch.testing.assert_close(model.readout.bias.grad, expected[1])
    hidden = [m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
              and m is not model.readout]
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in hidden)


def test_trained_feedback_maps_reconstruct_differences():
    """Threshold from the problem itself: the difference reconstruction loss is a least-squares
    problem in Q, so its best value on fresh perturbations is the loss of the least-squares Q*
    fitted to them (numpy-free: torch.linalg.lstsq). Hidden layers (5 units) narrower than the
    output (8) make J full column rank, so Q* nearly inverts it: its normalised loss
    ‖Q*Δ − σε‖²/‖σε‖² is what a single Q can reach across images whose tanh slopes differ.
    Starting from 1 (Q = 0), the trained Q must come within 0.05 of that optimum on held-out
    noise and predict what Q* predicts."""
    torch.manual_seed(0)
    r = make_rule("ddtp", {"feedback_samples": 64, "feedback_lr": 0.01,
                           "feedback_decay": 0.0, "pretrain_steps": 0})
    model = r.convert(TanhNet()).train()
    _, feedback = r.optimizers(model, lr=0.01, momentum=0.0, weight_decay=0.0)
    x = torch.randn(64, 20)
    model(x)                                               # Q gets its shape
    hidden = [("fc1", model.fc1), ("fc2", model.fc2)]
    generator = torch.Generator().manual_seed(0)
    r.feedback_step(model, hidden, x, feedback, generator)
    first = dict(r.reconstruction_loss_)
    for _ in range(2000):
        r.feedback_step(model, hidden, x, feedback, generator)
    assert first["fc1"] > 0.9 and first["fc2"] > 0.9
    frozen = torch.optim.SGD(r.feedback_parameters(model), lr=0.0)
    held_out = r.feedback_step(model, hidden, x.repeat(8, 1), frozen,
                               torch.Generator().manual_seed(1))
    for name, layer in hidden:
        delta, noise = held_out[name]
        optimum = torch.linalg.lstsq(delta, noise).solution.T          # Q* (5, 8)
        best = ((delta @ optimum.T - noise).square().sum() / noise.square().sum()).item()
        ours = r.reconstruction_loss_[name]
        assert best < 0.2 and ours < best + 0.05, (name, ours, best)
        # both reconstruct the same differences (Q is free off the range of J)
        gap = ((delta @ (layer.feedback_q - optimum).T).norm() / (delta @ optimum.T).norm())
        assert gap < 0.25, (name, float(gap))


def test_state_dict_round_trip_restores_q():
    torch.manual_seed(0)
    r = make_rule("ddtp", {"pretrain_steps": 3})
    model = r.convert(build_model("lenet", 4, 10)).train()
    optimizers = r.optimizers(model, lr=0.01, momentum=0.9, weight_decay=0.0)
    r.step(model, torch.randn(8, 3, 10, 10), torch.arange(8) % 4, optimizers)
    state = model.state_dict()
    assert state["conv1.0.feedback_q"].shape == (32 * 8 * 8, 4)
    assert state["conv1.0.feedback_q"].abs().sum() > 0
    with torch.device("meta"):               # as extraction builds a checkpoint's backbone
        fresh = make_rule("ddtp").convert(build_model("lenet", 4, 10))
    fresh.load_state_dict(state, assign=True)
    torch.testing.assert_close(fresh.conv1[0].feedback_q, state["conv1.0.feedback_q"])


def test_ddtp_learns_gaussian_clusters(task):
    (x, y), (x_test, y_test) = task
    torch.manual_seed(0)
    r = make_rule("ddtp")
    model = r.convert(TanhNet(hidden=32, n_out=N_CLASSES)).train()
    optimizers = r.optimizers(model, lr=0.1, momentum=0.9, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for start in range(0, len(x), 64):
            r.step(model, x[start:start + 64], y[start:start + 64], optimizers, generator)
    assert accuracy(model.eval(), x_test, y_test) > 0.9
