import pytest
import torch
from torch import nn

from pipeline.models import build_model, layer_outputs


def test_resnet18_has_torchvision_s_layer_and_parameter_counts():
    model = build_model("resnet18", n_classes=1000, input_size=224)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and model.conv1.kernel_size == (7, 7)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512     # torchvision resnet18


@pytest.mark.parametrize("size, stage_sides", [(32, (32, 16, 8, 4)), (112, (28, 14, 7, 4))])
def test_resnet18_stages_and_stem(size, stage_sides):
    model = build_model("resnet18", n_classes=5, input_size=size).eval()
    outputs = layer_outputs(model, torch.randn(1, 3, size, size))
    widths = (64, 128, 256, 512)
    for name, width, side in zip(model.layer_names[:4], widths, stage_sides):
        assert tuple(outputs[name].shape) == (1, width, side, side)
    assert tuple(outputs["readout"].shape) == (1, 5)
    assert isinstance(model.maxpool, nn.Identity) == (size < 112)


@pytest.mark.parametrize("arch, params, n_convs", [("resnet34", 21_797_672, 36),
                                                   ("resnet50", 25_557_032, 53)])
def test_deeper_resnets_have_torchvision_s_parameter_counts(arch, params, n_convs):
    from pipeline.models.resnet import resnet34, resnet50

    with torch.device("meta"):
        model = {"resnet34": resnet34, "resnet50": resnet50}[arch](1000, 224)
    assert sum(p.numel() for p in model.parameters()) == params      # torchvision
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == n_convs


@pytest.mark.parametrize("arch, blocks, expansion", [("resnet34", (3, 4, 6, 3), 1),
                                                     ("resnet50", (3, 4, 6, 3), 4)])
@pytest.mark.parametrize("size, stage_sides", [(32, (32, 16, 8, 4)), (112, (28, 14, 7, 4))])
def test_deeper_resnet_stages(arch, blocks, expansion, size, stage_sides):
    model = build_model(arch, n_classes=5, input_size=size).eval()
    assert model.layer_names == ("layer1", "layer2", "layer3", "layer4", "readout")
    assert tuple(len(getattr(model, name)) for name in model.layer_names[:4]) == blocks
    with torch.no_grad():
        outputs = layer_outputs(model, torch.randn(1, 3, size, size))
    for name, width, side in zip(model.layer_names[:4], (64, 128, 256, 512), stage_sides):
        assert tuple(outputs[name].shape) == (1, width * expansion, side, side), name
    assert tuple(outputs["readout"].shape) == (1, 5) and model.feature_dim == 512 * expansion


def test_bottleneck_computes_the_residual_sum():
    from pipeline.models.resnet import Bottleneck

    block = Bottleneck(64, 32, stride=2).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        relu = torch.relu
        out = relu(block.bn1(block.conv1(x)))
        out = relu(block.bn2(block.conv2(out)))
        expected = relu(block.bn3(block.conv3(out)) + block.downsample(x))
        torch.testing.assert_close(block(x), expected)
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)   # stride on the 3×3


def test_bad_depth_and_size_raise():
    from pipeline.models.resnet import ResNet

    with pytest.raises(ValueError, match="depth must be one of 18, 34, 50"):
        ResNet(3, 32, depth=101)
    with pytest.raises(ValueError, match="input_size must be at least 8"):
        build_model("resnet50", 3, 7)


@pytest.mark.parametrize("arch, rule", [("resnet18", "bp"), ("resnet34", "bp"), ("resnet34", "fa"),
                                        ("resnet34", "hebb"), ("resnet50", "bp"), ("resnet50", "fa"),
                                        ("resnet50", "hebb")])
def test_trains_under_rule(arch, rule, torch_one_thread):
    from tests.models.rule_checks import check_rule_step

    check_rule_step(arch, n_classes=3, size=8, rule=rule)
