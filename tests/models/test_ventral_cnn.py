import pytest
import torch

from pipeline.models import ARCHS, build_model, layer_outputs


@pytest.mark.parametrize("arch", ARCHS)
def test_every_registered_arch_builds(arch):
    model = build_model(arch, n_classes=5, input_size=64)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)
    assert model.layer_names[-1] == "readout"


def test_layer_shapes_for_32px_input():
    model = build_model("ventral_cnn", n_classes=7, input_size=32).eval()
    outputs = layer_outputs(model, torch.randn(3, 3, 32, 32))
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        "area1": (3, 16, 16, 16),
        "area2": (3, 32, 8, 8),
        "area3": (3, 64, 4, 4),
        "area4": (3, 128, 2, 2),
        "readout": (3, 7),
    }


def test_layer_outputs_match_forward_and_leave_no_hooks():
    torch.manual_seed(0)
    model = build_model("ventral_cnn", n_classes=4, input_size=16).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        outputs = layer_outputs(model, x)
        torch.testing.assert_close(outputs["readout"], model(x))
        torch.testing.assert_close(outputs["area2"], model.area2(model.area1(x)))
    assert all(not m._forward_hooks for m in model.modules())


def test_widths_are_configurable():
    from pipeline.models.ventral_cnn import VentralCNN

    model = VentralCNN(3, 32, widths=(4, 8, 8, 12)).eval()
    outputs = layer_outputs(model, torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outputs.values()] == [4, 8, 8, 12, 3]


def test_unknown_arch_and_bad_sizes_raise():
    with pytest.raises(ValueError, match="unknown arch 'nope'; known archs: ventral_cnn"):
        build_model("nope", 3, 32)
    with pytest.raises(ValueError, match="input_size must be at least 16"):
        build_model("ventral_cnn", 3, 8)
