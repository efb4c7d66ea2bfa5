import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning import make_rule
from pipeline.learning.predictive_coding import relax_and_backward
from pipeline.models import build_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _batch(n_classes=5, size=16, n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, size, size, generator=generator),
            torch.randint(0, n_classes, (n,), generator=generator))


def _loss_of(x, y):
    def loss_of(net):
        logits = net(x)
        return logits, F.cross_entropy(logits, y)
    return loss_of


def _autograd_grads(model, x, y):
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    return [p.grad for p in reference.parameters()]


@pytest.mark.parametrize("arch", ["lenet", "ventral_cnn", "pcn"])
@pytest.mark.parametrize("iterations, rate", [(12, 1.0), (150, 0.2)])
def test_fixed_prediction_limit_equals_backprop(arch, iterations, rate):
    """Relaxed to its fixed point, every conv/linear weight, bias and BatchNorm gradient is
    autograd's: exactly after the depth (γ = 1, Z-IL), to float tolerance by convergence."""
    torch.manual_seed(0)
    model = build_model(arch, 5, 16).train()
    x, y = _batch()
    expected = _autograd_grads(model, x, y)
    errors = relax_and_backward(model, _loss_of(x, y), iterations=iterations,
                                inference_lr=rate, fixed_prediction=True).errors
    assert errors and all(e.abs().sum() > 0 for e in errors)
    for (name, p), grad in zip(model.named_parameters(), expected):
        # float32 rounding of two summation orders: 1e-5 of the gradient's scale
        torch.testing.assert_close(p.grad, grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()))


def test_errors_converge_to_the_backprop_errors():
    """ε_ℓ at the fixed point is −dL/dv_ℓ: the loss's gradient at each layer's output."""
    torch.manual_seed(0)
    model = build_model("lenet", 5, 16).train()
    x, y = _batch()
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out) or out.retain_grad())
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    F.cross_entropy(model(x), y).backward()
    for hook in hooks:
        hook.remove()
    model.zero_grad()
    errors = relax_and_backward(model, _loss_of(x, y), iterations=4, inference_lr=1.0,
                                fixed_prediction=True).errors
    for error, out in zip(errors, outputs, strict=True):
        torch.testing.assert_close(error, -out.grad, rtol=1e-5, atol=1e-8)


def test_truncated_relaxation_is_not_backprop():
    """Too few iterations leave the first layers without error: the test above can fail."""
    torch.manual_seed(0)
    model = build_model("ventral_cnn", 5, 16).train()
    x, y = _batch()
    expected = _autograd_grads(model, x, y)
    relax_and_backward(model, _loss_of(x, y), iterations=3, inference_lr=1.0,
                       fixed_prediction=True)
    first = model.area1[0].weight
    assert first.grad.abs().max() == 0 and expected[0].abs().max() > 0
    torch.testing.assert_close(model.readout.weight.grad, expected[-2])


def test_relaxation_descends_the_energy():
    """With predictions that follow the beliefs, small steps lower F = L + Σ½‖ε‖² at every
    iteration, from F = L at the feedforward pass."""
    torch.manual_seed(0)
    model = build_model("lenet", 5, 16).train()
    x, y = _batch()
    relaxed = relax_and_backward(model, _loss_of(x, y), iterations=15, inference_lr=0.1,
                                 fixed_prediction=False)
    energies = relaxed.energies
    assert energies.shape == (16,) and energies[0] == relaxed.loss
    assert (energies.diff() < 0).all(), energies


def test_full_relaxation_learns_near_but_not_at_backprop():
    """Predictions that follow the beliefs: the update is −Σ ε ∂μ/∂θ at equilibrium, close to
    backprop's direction on a small loss, not equal to it."""
    torch.manual_seed(0)
    model = build_model("lenet", 5, 16).train()
    x, y = _batch()
    expected = _autograd_grads(model, x, y)
    relax_and_backward(model, _loss_of(x, y), iterations=40, inference_lr=0.1,
                       fixed_prediction=False)
    for p, grad in zip(model.parameters(), expected):
        cosine = F.cosine_similarity(p.grad.flatten(), grad.flatten(), 0)
        assert 0.9 < cosine < 1 - 1e-5


def test_replays_keep_random_views_and_buffers_of_one_step():
    """A step changes BatchNorm statistics and the view generator as one forward pass does,
    and every replay sees the same random flips as the first pass."""
    torch.manual_seed(0)
    model = build_model("ventral_cnn", 5, 16).train()
    reference = copy.deepcopy(model)
    x, y = _batch()
    seen = []

    def loss(net, x, y, *, generator):
        flip = torch.rand(len(x), generator=generator) < 0.5
        seen.append(flip)
        logits = net(torch.where(flip[:, None, None, None], x.flip(-1), x))
        return logits, F.cross_entropy(logits, y)

    rule = make_rule("pc", {"iterations": 4, "inference_lr": 0.1, "fixed_prediction": False})
    generator, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    rule.step(model, x, y, rule.optimizers(model, lr=0.0, momentum=0.0, weight_decay=0.0),
              loss_fn=functools.partial(loss, generator=generator))
    assert len(seen) == 5 and all(torch.equal(s, seen[0]) for s in seen)
    loss(reference, x, y, generator=twin)
    assert torch.equal(generator.get_state(), twin.get_state())
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_pc_step_moves_every_weight_and_keeps_the_model_plain():
    torch.manual_seed(0)
    x, y = _batch(3)
    rule = make_rule("pc")
    model = rule.convert(build_model("lenet", 3, 16)).train()
    before = copy.deepcopy(model.state_dict())
    logits, loss = rule.step(model, x, y, rule.optimizers(model, lr=0.1, momentum=0.0,
                                                          weight_decay=0.0))
    assert logits.shape == (8, 3) and torch.isfinite(loss)
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert not any(m._forward_hooks for m in model.modules())
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(before)


def test_pc_settings_are_checked():
    with pytest.raises(ValueError, match="iterations must be an int ≥ 1; got 0"):
        make_rule("pc", {"iterations": 0})
    with pytest.raises(ValueError, match="inference_lr must be > 0"):
        make_rule("pc", {"inference_lr": 0.0})


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("vgg16", marks=pytest.mark.slow),
                                  "convrnn", "streamnet_dual"])
def test_pc_steps_any_architecture(arch):
    """Residual sums, in-place ReLUs, dropout, layers called at several time steps."""
    from pipeline.models import MIN_INPUT_SIZE
    from tests.models.rule_checks import check_rule_step

    check_rule_step(arch, 3, max(MIN_INPUT_SIZE[arch], 16), "pc")


def test_fixed_prediction_limit_equals_backprop_on_a_resnet():
    torch.manual_seed(0)
    model = build_model("resnet18", 5, 16).train()
    x, y = _batch()
    expected = _autograd_grads(model, x, y)
    relax_and_backward(model, _loss_of(x, y), iterations=40, inference_lr=1.0,
                       fixed_prediction=True)
    for p, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()))
