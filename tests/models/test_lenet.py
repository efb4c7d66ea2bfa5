import pytest
import torch

from pipeline.models import build_model, layer_outputs


@pytest.mark.parametrize("size, flat", [(28, 9216), (32, 12544), (16, 2304)])
def test_lenet_layout_follows_the_input_size(size, flat):
    model = build_model("lenet", n_classes=10, input_size=size).eval()
    assert model.fc1[1].in_features == flat                  # 9216 at 28 px, as in P3
    outputs = layer_outputs(model, torch.randn(2, 3, size, size))
    side = (size - 4) // 2
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "conv1": (2, 32, size - 2, size - 2), "conv2": (2, 64, side, side),
        "fc1": (2, 128), "readout": (2, 10)}
    assert all((outputs[k] >= 0).all() for k in ("conv1", "conv2", "fc1"))   # after ReLU


def test_lenet_rejects_tiny_inputs():
    with pytest.raises(ValueError, match="input_size must be at least 6"):
        build_model("lenet", 3, 5)
