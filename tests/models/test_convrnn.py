import pytest
import torch

from pipeline.learning import make_rule
from pipeline.models import build_model, layer_outputs
from pipeline.models.convrnn import (ConvRNN, max_confidence_decoder, threshold_decoder)
from pipeline.models.ventral_cnn import AREAS, VentralCNN

WIDTHS = (4, 6, 8, 10)


def _with_backbone_weights(backbone, **kwargs):
    """A ConvRNN whose feedforward convs and batch norms are the backbone's (same tensors' values)."""
    model = ConvRNN(3, 16, widths=WIDTHS, **kwargs)
    state = {}
    for key, value in backbone.state_dict().items():
        name, index, rest = key.split(".", 2) if key.startswith("area") else (None, None, key)
        if name is None:
            state[key] = value
        elif int(index) < 5:                      # conv, bn, relu, conv, bn; then relu, pool
            state[f"{name}.ff.{index}.{rest}"] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(".cell." in k or ".feedback." in k for k in missing)
    return model


@pytest.fixture
def backbone():
    torch.manual_seed(0)
    model = VentralCNN(3, 16, widths=WIDTHS)
    with torch.no_grad():                            # non-trivial batch-norm statistics
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _zero_recurrence_and_feedback(model):
    """No memory: decays shut (sigmoid(-200) is 0 in float32), gate and feedback convs 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".feedback." in name or ".cell." in name:
                p.zero_()
            if name.endswith("_tau.bias"):
                p.fill_(-200.0)
    assert torch.sigmoid(torch.tensor(-200.0)) == 0


def _without_recurrence(backbone, time_steps, n):
    """Layer outputs of a ConvRNN with the backbone's weights, no recurrence or feedback and
    the sweep inside each step, and of the backbone, on the same n random images."""
    model = _with_backbone_weights(backbone, time_steps=time_steps, ff_delay=0).eval()
    _zero_recurrence_and_feedback(model)
    x = torch.randn(n, 3, 16, 16)
    with torch.no_grad():
        return layer_outputs(model, x), layer_outputs(backbone, x)


def test_one_step_with_sweep_inside_the_step_equals_the_backbone(backbone):
    ours, theirs = _without_recurrence(backbone, 1, 5)
    for name in (*AREAS, "readout"):
        assert ours[name].shape == (5, 1, *theirs[name].shape[1:])
        assert torch.equal(ours[name][:, 0], theirs[name]), name


def test_a_fresh_cell_passes_its_input_through(backbone):
    # Zero state: the gates are 1 at their initial (zero) biases, whatever the conv weights.
    model = _with_backbone_weights(backbone, time_steps=1, ff_delay=0).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), backbone(x))
        model.area2.cell.out_gate.bias.fill_(0.3)
        assert not torch.allclose(model(x), backbone(x))


def test_biological_unrolling_reaches_area_k_at_step_k(backbone):
    model = _with_backbone_weights(backbone, time_steps=6, ff_delay=1).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ours, theirs = layer_outputs(model, x), layer_outputs(backbone, x)
    for k, name in enumerate(AREAS):
        assert torch.count_nonzero(ours[name][:, :k]) == 0, name        # no input yet
        assert torch.equal(ours[name][:, k], theirs[name]), name       # first response
        assert not torch.allclose(ours[name][:, -1], ours[name][:, k]), name  # recurrence
    assert torch.equal(ours["readout"][:, len(AREAS) - 1], theirs["readout"])
    torch.testing.assert_close(ours["readout"][:, -1], model(x))


def test_zero_recurrence_is_the_feedforward_net_at_every_step(backbone):
    ours, theirs = _without_recurrence(backbone, 4, 2)
    for t in range(4):
        assert torch.equal(ours["area3"][:, t], theirs["area3"])


def test_feedback_reaches_the_lower_area_one_step_later():
    torch.manual_seed(1)
    model = ConvRNN(3, 16, widths=WIDTHS, time_steps=6, ff_delay=1).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = layer_outputs(model, x)["area2"]
        model.area2.feedback[0].weight.mul_(3.0)              # the area4 -> area2 edge
        after = layer_outputs(model, x)["area2"]
    # area4 first responds at step 3, so area2 first feels it at step 4.
    assert torch.equal(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4], after[:, 4])


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_forward_and_backward_under_a_rule(rule):
    torch.manual_seed(0)
    model = make_rule(rule).convert(build_model("convrnn", 4, 16))
    assert model.time_steps >= len(AREAS) and model.layer_names[-1] == "readout"
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 4, (6,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    for name in ("area1.ff.0.weight", "area1.cell.out_gate.weight", "area2.feedback.0.weight",
                 "readout.weight"):
        assert grads[name] is not None and torch.isfinite(grads[name]).all(), name
        assert grads[name].abs().sum() > 0, name
    if rule == "fa":
        assert hasattr(model.area1.cell.out_gate, "weight_fb")


def _manual_unroll(model, x, image_steps, steps):
    """Every area's output at every step, stepping the area modules by hand: the image for
    `image_steps` steps, then zeros (standardised mean grey); area k reads area k - 1's output
    of the previous step from step k on, feedback the previous step's outputs."""
    outputs, states = {name: None for name in AREAS}, {name: None for name in AREAS}
    trace = {name: [] for name in AREAS}
    for t in range(steps):
        previous = dict(outputs)
        for k, name in enumerate(AREAS):
            if k == 0:
                source = x if t < image_steps else torch.zeros_like(x)
            else:
                source = previous[AREAS[k - 1]] if t >= k else None
            fb = [previous[src] for src, dst in model.feedback_edges if dst == name]
            outputs[name], states[name] = getattr(model, name)(source, states[name], fb, batch=x)
            trace[name].append(outputs[name])
    return {name: torch.stack(trace[name], dim=1) for name in AREAS}


def test_grey_after_n_steps_changes_the_later_steps_as_a_manual_unroll_does():
    torch.manual_seed(2)
    n, grey = 3, 5
    model = ConvRNN(3, 16, widths=WIDTHS, time_steps=n + grey, image_steps=n).eval()
    continued = ConvRNN(3, 16, widths=WIDTHS, time_steps=n + grey).eval()
    continued.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ours, image_on = layer_outputs(model, x), layer_outputs(continued, x)
        manual = _manual_unroll(model, x, n, n + grey)
    for k, name in enumerate(AREAS):
        torch.testing.assert_close(ours[name], manual[name], rtol=1e-6, atol=1e-6)
        assert torch.equal(ours[name][:, :n + k], image_on[name][:, :n + k]), name  # not reached yet
        for t in range(n + k, n + grey):           # grey reaches area k at step n + k
            assert not torch.allclose(ours[name][:, t], image_on[name][:, t]), (name, t)


def test_present_sets_the_spec_presentation_without_touching_weights():
    torch.manual_seed(0)
    model = ConvRNN(3, 16, widths=WIDTHS)
    assert (model.time_steps, model.image_steps) == (8, None)         # the training default
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.present(10, 15) is model
    assert (model.time_steps, model.image_steps) == (25, 10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert layer_outputs(model.eval(), torch.randn(1, 3, 16, 16))["area1"].shape[1] == 25


def _trajectory(confidences):
    """Two-class logits (time, 2) whose top softmax probability at each step is `confidences`
    (class 1 on top at odd steps): p = sigmoid(z) for logits (0, z)."""
    c = torch.tensor(confidences, dtype=torch.float64)
    z = torch.log(c / (1 - c))
    sign = torch.tensor([1.0 if t % 2 else -1.0 for t in range(len(c))], dtype=torch.float64)
    return torch.stack([torch.zeros_like(z), sign * z], dim=-1)


def test_threshold_decoder_decides_at_the_first_step_past_the_threshold():
    logits = torch.stack([_trajectory([0.6, 0.85, 0.95, 0.99, 0.7]),     # passes 0.9 at step 2
                          _trajectory([0.6, 0.7, 0.8, 0.85, 0.89]),      # never: the last step
                          _trajectory([0.91, 0.5, 0.95, 0.6, 0.6])])     # at once
    step, prediction = threshold_decoder(logits, threshold=0.9)
    assert step.tolist() == [2, 4, 0]
    assert prediction.tolist() == [0, 0, 0]                               # class 1 tops odd steps
    assert threshold_decoder(logits, threshold=0.8)[0].tolist() == [1, 3, 0]


def test_max_confidence_decoder_decides_where_confidence_peaks():
    logits = torch.stack([_trajectory([0.6, 0.97, 0.8, 0.9, 0.7]),
                          _trajectory([0.6, 0.7, 0.8, 0.85, 0.89]),
                          _trajectory([0.9, 0.6, 0.9, 0.6, 0.6])])       # a tie: the first
    step, prediction = max_confidence_decoder(logits)
    assert step.tolist() == [1, 4, 0]
    assert prediction.tolist() == [1, 0, 0]


@pytest.mark.parametrize("decoder", ["threshold", "max_confidence"])
def test_forward_returns_the_logits_of_the_decided_step(decoder):
    torch.manual_seed(3)
    model = ConvRNN(3, 16, widths=WIDTHS, time_steps=6, decoder=decoder, threshold=0.4).eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        readout = layer_outputs(model, x)["readout"]                      # (batch, time, class)
        step = (threshold_decoder(readout, 0.4) if decoder == "threshold"
                else max_confidence_decoder(readout))[0]
        torch.testing.assert_close(model(x), readout[torch.arange(5), step])


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="ff_delay must be 0 or 1"):
        ConvRNN(3, 16, ff_delay=2)
    with pytest.raises(ValueError, match="time_steps must be an int >= 1"):
        ConvRNN(3, 16, time_steps=0)
    with pytest.raises(ValueError, match=r"feedback edge \('area1', 'area3'\) must go from a higher"):
        ConvRNN(3, 16, feedback=(("area1", "area3"),))
    with pytest.raises(ValueError, match=r"image_steps must be None or an int in 1…time_steps \(8\)"):
        ConvRNN(3, 16, image_steps=9)
    with pytest.raises(ValueError, match="decoder must be one of"):
        ConvRNN(3, 16, decoder="first")
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
        ConvRNN(3, 16, threshold=1.0)
    with pytest.raises(ValueError, match="grey_steps must be an int >= 0"):
        ConvRNN(3, 16).present(10, -1)
