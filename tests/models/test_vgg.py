import pytest
import torch

from pipeline.models import build_model, layer_outputs
from pipeline.models.vgg import VGG16
from tests.models.rule_checks import check_rule_step

WIDTHS = (64, 128, 256, 512, 512)
LAYERS = ("features.4", "features.9", "features.16", "features.23", "features.30",
          "classifier.1", "classifier.4", "readout")


def _vgg16_params(n_classes):
    """VGG-16's parameter count from its layer specs: 13 3×3 convs, fc 25088-4096-4096-n."""
    widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    convs = sum(n_in * n_out * 9 + n_out for n_in, n_out in zip((3, *widths[:-1]), widths))
    return convs + (512 * 49 + 1) * 4096 + 4097 * 4096 + 4097 * n_classes


def test_parameter_count_matches_torchvision_vgg16():
    with torch.device("meta"):
        model = VGG16(1000, 224)
    assert _vgg16_params(1000) == 138_357_544                    # torchvision vgg16
    assert sum(p.numel() for p in model.parameters()) == 138_357_544
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 13


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return build_model("vgg16", n_classes=6, input_size=64).eval()


@pytest.mark.parametrize("size, last", [(64, 2), (32, 1)])
def test_layer_shapes(vgg, size, last):
    assert vgg.layer_names == LAYERS and vgg.feature_dim == 4096
    with torch.no_grad():
        outputs = layer_outputs(vgg, torch.randn(2, 3, size, size))
    for index, (name, width) in enumerate(zip(LAYERS, WIDTHS)):
        side = last * 2 ** (4 - index)
        assert tuple(outputs[name].shape) == (2, width, side, side), name
    assert tuple(outputs["classifier.1"].shape) == tuple(outputs["classifier.4"].shape) == (2, 4096)
    assert tuple(outputs["readout"].shape) == (2, 6)


def test_minimum_input_size():
    with pytest.raises(ValueError, match="input_size must be at least 32 for vgg16"):
        VGG16(3, 31)


@pytest.mark.parametrize("rule", ["bp", pytest.param("fa", marks=pytest.mark.slow),
                                  pytest.param("hebb", marks=pytest.mark.slow)])
def test_trains_under_rule(rule, torch_one_thread):
    check_rule_step("vgg16", n_classes=3, size=32, rule=rule)
