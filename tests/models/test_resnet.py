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
