import pytest
import torch

from pipeline.models import build_model, layer_outputs
from tests.models.rule_checks import check_rule_step

ARCHS = ("streamnet_single", "streamnet_dual", "streamnet_six")
STREAMS = {"streamnet_single": ("ventral",), "streamnet_dual": ("ventral", "dorsal"),
           "streamnet_six": ("VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl")}
# Thesis Table 3.4 at 64 px, readout excluded: (backbone parameters, units of the compared layers).
TABLE_3_4 = {"streamnet_single": (2_029_632, 8_896), "streamnet_dual": (5_806_848, 14_656),
             "streamnet_six": (16_780_800, 28_480)}
# Sides of VISp, the streams and the deep areas: conv1 (s+4-11)//4+1, then 3/2 max-pools.
SIDES = {64: (7, 3, 3), 32: (3, 1, 1)}


def _deep(arch):
    return ("VISpor",) if arch == "streamnet_single" else ("VISpor", "VISam")


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_and_unit_counts_match_table_3_4(arch):
    model = build_model(arch, n_classes=10, input_size=64).eval()
    readout = sum(p.numel() for p in model.readout.parameters())
    assert model.feature_dim == len(_deep(arch)) * 256 * 36
    assert readout == (model.feature_dim + 1) * 10
    params, units = TABLE_3_4[arch]
    assert sum(p.numel() for p in model.parameters()) - readout == params
    with torch.no_grad():
        outputs = layer_outputs(model, torch.randn(1, 3, 64, 64))
    assert sum(out[0].numel() for name, out in outputs.items() if name != "readout") == units


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", sorted(SIDES))
def test_layer_shapes(arch, size):
    model = build_model(arch, n_classes=5, input_size=size).eval()
    assert model.layer_names == ("VISp", *STREAMS[arch], *_deep(arch), "readout")
    with torch.no_grad():
        x = torch.randn(2, 3, size, size)
        outputs = layer_outputs(model, x)
        torch.testing.assert_close(outputs["readout"], model(x))
    visp, stream, deep = SIDES[size]
    assert tuple(outputs["VISp"].shape) == (2, 64, visp, visp)
    for name in STREAMS[arch]:
        assert tuple(outputs[name].shape) == (2, 384, stream, stream), name
    for name in _deep(arch):
        assert tuple(outputs[name].shape) == (2, 256, deep, deep), name
    assert tuple(outputs["readout"].shape) == (2, 5)


def test_deep_area_sums_its_inputs():
    torch.manual_seed(0)
    model = build_model("streamnet_dual", n_classes=3, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outputs = layer_outputs(model, x)
        paths = model.VISam.paths
        expected = (paths["VISp"](model.VISp(x)) + paths["ventral"](outputs["ventral"])
                    + paths["dorsal"](outputs["dorsal"]))
    torch.testing.assert_close(outputs["VISam"], expected)


def test_minimum_input_size():
    build_model("streamnet_dual", 3, 31)
    with pytest.raises(ValueError, match="input_size must be at least 31 for a StreamNet"):
        build_model("streamnet_dual", 3, 30)


@pytest.mark.parametrize("arch, rule", [("streamnet_single", "bp"), ("streamnet_dual", "bp"),
                                        ("streamnet_dual", "fa"), ("streamnet_dual", "hebb"),
                                        ("streamnet_six", "fa")])
def test_trains_under_rule(arch, rule, torch_one_thread):
    check_rule_step(arch, n_classes=3, size=32, rule=rule)
