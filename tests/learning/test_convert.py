"""The converter on four architectures: same function, right layer count, B as the rule says."""

import pytest
import torch
from torch import nn

from pipeline.learning import (FBConv2d, FBLinear, HebbianConv2d, feedback_layers,
                               hebbian_layers, make_rule, to_feedback, weight_angle)
from pipeline.models import build_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def alexnet_style(n_classes=5):
    """AlexNet's layout at toy width: 5 convs (ReLU in place), 3 pools, dropout, 3 linears."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(32, 24, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(), nn.Linear(24, 48),
        nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(48, 48), nn.ReLU(inplace=True), nn.Linear(48, n_classes),
    )


MODELS = {  # name -> (constructor, number of Linear + Conv2d layers)
    "ventral_cnn": (lambda: build_model("ventral_cnn", 5, 32), 9),
    "lenet": (lambda: build_model("lenet", 5, 32), 4),
    "alexnet_style": (alexnet_style, 8),
    "resnet18": (lambda: build_model("resnet18", 5, 32), 21),    # 1 + 16 + 3 shortcut convs, fc
}


@pytest.mark.parametrize("rule", ["fa", "kp", "ss"])
@pytest.mark.parametrize("arch", MODELS)
def test_conversion_keeps_the_function_and_swaps_every_layer(arch, rule):
    build, n_layers = MODELS[arch]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    names = list(getattr(model, "layer_names", ()))
    count = to_feedback(model, make_rule(rule).alignment)
    assert count == n_layers == len(feedback_layers(model))
    assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules())
    assert list(getattr(model, "layer_names", ())) == names
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    with torch.enable_grad():                                   # the autograd-Function path
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    for _, layer in feedback_layers(model):
        w, fb = layer.weight.detach(), layer.weight_fb.detach()
        if rule == "bp_via_fb":
            assert torch.equal(fb, w)
        elif rule == "ss":
            assert torch.equal(fb.sign(), w.sign())
        else:                                                   # random, with W's norm
            torch.testing.assert_close(fb.norm(), w.norm(), rtol=1e-5, atol=0)
            if w.numel() >= 500:
                assert 75 < weight_angle(w, fb) < 105


@pytest.mark.parametrize("arch", MODELS)
def test_converted_state_dict_round_trips(arch):
    build, n_layers = MODELS[arch]
    torch.manual_seed(1)
    model = make_rule("wm").convert(build())
    state = model.state_dict()
    assert sum(k.endswith("weight_fb") for k in state) == n_layers
    torch.manual_seed(2)
    other = make_rule("wm").convert(build())
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key])


def test_conversion_is_idempotent_and_keeps_batchnorm():
    torch.manual_seed(3)
    model = make_rule("fa").convert(build_model("ventral_cnn", 4, 16))
    assert to_feedback(model, make_rule("fa").alignment) == 0
    assert type(model.area1[1]) is nn.BatchNorm2d
    assert isinstance(model.area1[0], FBConv2d) and isinstance(model.readout, FBLinear)


def test_hebbian_conversion_swaps_convs_and_freezes_all_but_linear_layers():
    torch.manual_seed(4)
    model = make_rule("hebb").convert(build_model("lenet", 3, 16))
    assert [n for n, _ in hebbian_layers(model)] == ["conv1.0", "conv2.0"]
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"fc1.1.weight", "fc1.1.bias", "readout.weight", "readout.bias"}
    assert all(isinstance(m, HebbianConv2d) for _, m in hebbian_layers(model))
    resnet = make_rule("hebb").convert(build_model("resnet18", 3, 32))
    assert len(hebbian_layers(resnet)) == 20
    assert {n for n, p in resnet.named_parameters() if p.requires_grad} == {"readout.weight",
                                                                          "readout.bias"}
