import pytest
import torch
from torch import nn

from pipeline.learning import make_rule
from pipeline.models import RULES, build_model, check_model, layer_outputs
from pipeline.models.mlp import MLP
from tests.models.rule_checks import check_rule_step

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("size", [1, 16, 32])
def test_mlp_layout_follows_the_input_size(size):
    model = build_model("mlp", n_classes=10, input_size=size).eval()
    assert model.layer_names == ("fc1", "fc2", "fc3", "readout")
    assert model.fc1[0].in_features == 3 * size * size
    outputs = layer_outputs(model, torch.randn(2, 3, size, size))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "fc1": (2, 256), "fc2": (2, 256), "fc3": (2, 128), "readout": (2, 10)}
    assert all((outputs[k] >= 0).all() for k in ("fc1", "fc2", "fc3"))       # after ReLU
    assert [type(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))] == [
        nn.Linear] * 4                                                          # no conv


def test_mlp_forward_is_its_layers_in_order():
    torch.manual_seed(0)
    model = MLP(3, 4, widths=(5, 6)).eval()
    x = torch.randn(2, 3, 4, 4)
    expected = model.readout(model.fc2(model.fc1(x.flatten(1))))
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert model.layer_names == ("fc1", "fc2", "readout")


@pytest.mark.parametrize("kw, message", [({"input_size": 0}, "input_size must be at least 1"),
                                         ({"widths": ()}, "widths must be one or more"),
                                         ({"widths": (8, 0)}, "widths must be one or more")])
def test_mlp_rejects_bad_sizes(kw, message):
    with pytest.raises(ValueError, match=message):
        MLP(3, **{"input_size": 8, **kw})


@pytest.mark.parametrize("rule", [r for r in RULES if r not in ("hebb", "nmf")])
def test_mlp_trains_under_rule(rule):
    check_rule_step("mlp", n_classes=3, size=8, rule=rule, batch=4)


def test_nmf_replaces_the_mlp_by_its_features_and_readout():
    model = make_rule("nmf").convert(build_model("mlp", 3, 8))
    assert model.readout.out_features == 3 and model.readout.in_features == 128


def test_hebb_is_refused_for_the_mlp():
    with pytest.raises(ValueError, match=r"arch 'mlp' cannot be trained with rule 'hebb': "
                                         r"Hebbian layers are convolutional"):
        check_model("mlp-supervised-hebb-s0", input_size=16, epochs=1)
    with pytest.raises(ValueError, match="rule 'hebb': the model has no Conv2d layer"):
        make_rule("hebb").convert(build_model("mlp", 3, 8))
