import pytest

from pipeline.models import ARCHS, OBJECTIVES, RULES, ModelSpec, parse_model_name
from pipeline.models.names import (OBJECTIVE_UNSUPPORTED_RULES, PATH_NONLINEARITIES,
                                   UNSUPPORTED_RULES, control_names)


def test_parse_and_format_round_trip():
    spec = parse_model_name("ventral_cnn-supervised-bp-s12")
    assert spec == ModelSpec("ventral_cnn", "supervised", "bp", 12)
    assert spec.name == "ventral_cnn-supervised-bp-s12"
    assert parse_model_name(spec.name) == spec


def test_labels_are_the_table_columns_of_a_model():
    assert parse_model_name("lenet-simclr-fa-s3").labels == {
        "model": "lenet-simclr-fa-s3", "arch": "lenet", "objective": "simclr", "rule": "fa",
        "seed": 3}


def test_every_registered_combination_round_trips():
    for arch in ARCHS:
        for objective in OBJECTIVES:
            for rule in RULES:
                spec = ModelSpec(arch, objective, rule, 0)
                assert parse_model_name(spec.name) == spec


@pytest.mark.parametrize("name, message", [
    ("ventral_cnn-supervised-bp", "4 '-'-separated parts"),
    ("ventral-cnn-supervised-bp-s0", "4 '-'-separated parts"),
    ("ventral_cnn-supervised-bp-0", "seed part"),
    ("ventral_cnn-supervised-bp-sX", "seed part"),
    ("resnet99-supervised-bp-s0", "unknown model arch 'resnet99'; known archs: ventral_cnn"),
    ("ventral_cnn-magic-bp-s0", "unknown model objective 'magic'; known objectives: supervised"),
    ("ventral_cnn-supervised-zz-s0", "unknown model rule 'zz'; known rules: bp"),
    ("Ventral_cnn-supervised-bp-s0", "lower-case letters"),
])
def test_bad_names_name_the_bad_part(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        parse_model_name(name)
    assert repr(name) in str(err.value)


def test_spec_rejects_hyphen_and_negative_seed():
    with pytest.raises(ValueError, match="never '-'"):
        ModelSpec("ventral-cnn", "supervised", "bp", 0)
    with pytest.raises(ValueError, match="non-negative int"):
        ModelSpec("ventral_cnn", "supervised", "bp", -1)


def test_spec_is_frozen():
    spec = ModelSpec("ventral_cnn", "supervised", "bp", 0)
    with pytest.raises(AttributeError):
        spec.seed = 1


def test_registries_name_what_the_implementations_build():
    from pipeline.models.path_integrator import NONLINEARITIES
    from pipeline.objectives import OBJECTIVE_CLASSES

    assert OBJECTIVES == tuple(OBJECTIVE_CLASSES)
    assert PATH_NONLINEARITIES == tuple(NONLINEARITIES)
    for objective, rules in OBJECTIVE_UNSUPPORTED_RULES.items():
        assert objective in OBJECTIVES and set(rules) <= set(RULES)
    for arch, rules in UNSUPPORTED_RULES.items():
        assert arch in ARCHS and set(rules) <= set(RULES)


def test_control_names_follow_the_controls_block():
    assert control_names({"placecells": True, "nmf_ranks": [9, None], "velocity": False}) == [
        "placecells", "nmf_r9", "nmf_full"]
    assert control_names({"placecells": False, "nmf_ranks": [], "velocity": True}) == ["velocity"]


def test_the_zoo_loads_when_asked_for():
    """`pipeline.models` gives the names without torch (tests/test_cli.py checks the import)
    and builds models on first use."""
    import pipeline.models

    assert pipeline.models.build_model("lenet", 10, 32).layer_names   # still there when asked for
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pipeline.models.nothing
