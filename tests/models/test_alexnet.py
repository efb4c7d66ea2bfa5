import pytest
import torch

from pipeline.models import build_model, layer_outputs
from pipeline.models.alexnet import AlexNet64, min_input_size
from tests.models.rule_checks import check_rule_step

# pool1, pool2, relu3, relu4, pool5 sides by hand: conv1 (s+4-11)//4+1, each pool (s-3)//2+1.
# 64 px: 15 -> 7 -> 3 -> 3 -> 3 -> 1;  104 px: 25 -> 12 -> 5 -> 5 -> 5 -> 2.
SIDES = {64: (7, 3, 3, 3, 1), 104: (12, 5, 5, 5, 2)}


def _conv_params(n_in, n_out, k):
    return n_in * n_out * k * k + n_out


def _alexnet_params(n_classes, batch_norm):
    """AlexNet's parameter count from its layer specs (convs, BN pairs, fc 9216-4096-4096-n)."""
    convs = (_conv_params(3, 64, 11) + _conv_params(64, 192, 5) + _conv_params(192, 384, 3)
             + _conv_params(384, 256, 3) + _conv_params(256, 256, 3))
    fcs = (256 * 36 + 1) * 4096 + 4097 * 4096 + 4097 * n_classes
    bn = 2 * (64 + 192 + 384 + 256 + 256) + 2 * 2 * 4096 if batch_norm else 0
    return convs + fcs + bn


def test_parameter_count_matches_torchvision_alexnet():
    with torch.device("meta"):
        plain = AlexNet64(1000, 224, batch_norm=False)
        bn = AlexNet64(1000, 64)
    assert _alexnet_params(1000, False) == 61_100_840          # torchvision alexnet
    assert sum(p.numel() for p in plain.parameters()) == 61_100_840
    assert sum(p.numel() for p in bn.parameters()) == _alexnet_params(1000, True)


@pytest.mark.parametrize("size", sorted(SIDES))
def test_layer_shapes(size):
    model = build_model("alexnet64", n_classes=7, input_size=size).eval()
    assert model.layer_names == ("features.3", "features.7", "features.10", "features.13",
                                 "features.17", "classifier.3", "classifier.7", "readout")
    with torch.no_grad():
        outputs = layer_outputs(model, torch.randn(2, 3, size, size))
    widths = (64, 192, 384, 256, 256)
    for name, width, side in zip(model.layer_names, widths, SIDES[size]):
        assert tuple(outputs[name].shape) == (2, width, side, side), name
    assert tuple(outputs["classifier.3"].shape) == tuple(outputs["classifier.7"].shape) == (2, 4096)
    assert tuple(outputs["readout"].shape) == (2, 7) and model.feature_dim == 4096


def test_plain_variant_exposes_torchvision_indices():
    model = AlexNet64(3, 64, batch_norm=False)
    assert model.layer_names[:-1] == ("features.2", "features.5", "features.7", "features.9",
                                      "features.12", "classifier.2", "classifier.5")


def test_minimum_input_size():
    assert min_input_size() == 63
    build_model("alexnet64", 3, 63)
    with pytest.raises(ValueError, match="input_size must be at least 63 for alexnet64"):
        build_model("alexnet64", 3, 62)


@pytest.mark.parametrize("rule", ["bp", "fa", pytest.param("hebb", marks=pytest.mark.slow)])
def test_trains_under_rule(rule, torch_one_thread):
    check_rule_step("alexnet64", n_classes=3, size=64, rule=rule)
