import pytest
import torch

from pipeline.models import build_model, layer_outputs
from pipeline.models.pcn import PCN
from tests.models.rule_checks import check_rule_step


@pytest.mark.parametrize("size", [16, 32])
def test_pcn_layout_follows_the_input_size(size):
    model = build_model("pcn", n_classes=10, input_size=size).eval()
    outputs = layer_outputs(model, torch.randn(2, 3, size, size))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "pc1": (2, 16, size // 2, size // 2), "pc2": (2, 32, size // 4, size // 4),
        "pc3": (2, 64, size // 8, size // 8), "pc4": (2, 128, size // 16, size // 16),
        "readout": (2, 10)}
    assert all((outputs[k] >= 0).all() for k in ("pc1", "pc2", "pc3", "pc4"))   # after ReLU


def test_zero_cycles_is_the_feedforward_cnn():
    """cycles=0 never touches the feedback convs; cycles>0 changes every layer's response."""
    torch.manual_seed(0)
    recurrent = PCN(5, 16, widths=(4, 6, 8, 10), cycles=2).eval()
    feedforward = PCN(5, 16, widths=(4, 6, 8, 10), cycles=0).eval()
    feedforward.load_state_dict(recurrent.state_dict())
    x = torch.randn(3, 3, 16, 16)
    ff = layer_outputs(feedforward, x)
    expected = torch.relu(torch.nn.functional.max_pool2d(feedforward.feedforward[0](x), 2))
    torch.testing.assert_close(ff["pc1"], expected)
    rec = layer_outputs(recurrent, x)
    assert all(not torch.allclose(rec[k], ff[k]) for k in ("pc1", "pc2", "pc3", "pc4"))
    feedforward(x).sum().backward()
    assert all(p.grad is None for p in feedforward.feedback.parameters())


def test_one_cycle_follows_the_update_equations():
    """One cycle by hand: top-down predictions, then bottom-up error correction (Wen et al.)."""
    torch.manual_seed(0)
    model = PCN(5, 16, widths=(4, 6, 8, 10), cycles=1).eval()
    with torch.no_grad():
        for p in (*model.a0, *model.b0):
            p.uniform_(0.2, 0.9)
    x = torch.randn(2, 3, 16, 16)
    relu, pool = torch.relu, torch.nn.functional.max_pool2d

    def up(i, r):
        return model.feedback[i](torch.nn.functional.interpolate(r, scale_factor=2,
                                                                 mode="bilinear"))

    with torch.no_grad():
        r = []
        for i in range(4):
            r.append(relu(pool(model.feedforward[i](x if i == 0 else r[-1]), 2)))
        p = [None] * 4
        for i in (3, 2, 1):
            p[i - 1] = up(i, r[i])
            a = relu(model.a0[i - 1])
            r[i - 1] = relu(a * p[i - 1] + (1 - a) * r[i - 1])
        r[0] = relu(r[0] + relu(model.b0[0]) * pool(model.feedforward[0](x - up(0, r[0])), 2))
        for i in (1, 2, 3):
            error = pool(model.feedforward[i](r[i - 1] - p[i - 1]), 2)
            r[i] = relu(r[i] + relu(model.b0[i]) * error)
        outputs = layer_outputs(model, x)
    for i in range(4):
        torch.testing.assert_close(outputs[f"pc{i + 1}"], r[i])
    torch.testing.assert_close(outputs["readout"], model.readout(r[3].mean((2, 3))))


@pytest.mark.parametrize("rule", ["bp", "fa"])   # pc: tests/learning/test_predictive_coding.py
def test_pcn_trains_under_rules(rule):
    model = check_rule_step("pcn", 10, 16, rule)
    # the feedback (transposed) convs are part of the inference, trained by the rule's gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.feedback.parameters())


def test_pcn_rejects_tiny_inputs():
    with pytest.raises(ValueError, match="input_size must be at least 16"):
        build_model("pcn", 3, 15)
