"""The config schema: defaults fill gaps, and a bad field fails once, naming the field."""

import pytest
import yaml

from pipeline.config import ConfigError, validate_config

SCHEMA = "workflow/schemas/config.schema.yaml"


@pytest.fixture
def schema(repo):
    return repo / SCHEMA


def test_embedded_default_is_valid_and_complete(repo, schema):
    config = validate_config(yaml.safe_load((repo / "config.yaml").read_text()), schema)
    assert config["models"]["rules"] == ["bp", "fa", "kp", "wm", "hebb"]
    assert config["compare"]["common"]["alpha"] == 1.0  # filled from the schema's default
    assert config["datasets"]["synthetic_mouse"]["assemble"]["window"] == [0.0, 0.25]


def test_empty_config_gets_every_default(schema):
    config = validate_config({}, schema)
    assert config["stimuli"] == {"name": "shapes", "size": 32, "train_per_class": 100,
                                 "test_per_class": 20, "probe": 120, "seed": 0}
    assert config["models"]["train"]["epochs"] == 5


def test_validation_does_not_modify_its_input(schema):
    raw = {"models": {"seeds": [3]}}
    validate_config(raw, schema)
    assert raw == {"models": {"seeds": [3]}}


def test_bad_field_is_named_with_its_source(schema):
    """One representative; tests/reliability/test_config.py holds the catalogue of bad configs."""
    with pytest.raises(ConfigError, match="'models.train.epochs'") as info:
        validate_config({"models": {"train": {"epochs": 0}}}, schema, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")


def test_model_part_enums_match_the_registries(schema):
    from pipeline.models.names import ARCHS, OBJECTIVES, RULES

    models = yaml.safe_load(schema.read_text())["properties"]["models"]["properties"]
    for key, registry in [("archs", ARCHS), ("objectives", OBJECTIVES), ("rules", RULES)]:
        assert set(models[key]["items"]["enum"]) == set(registry), key


def test_included_models_need_full_names(schema):
    config = validate_config({"models": {"include": ["lenet-simclr-fa-s2"]}}, schema)
    assert config["models"]["include"] == ["lenet-simclr-fa-s2"]
    with pytest.raises(ConfigError, match="'models.include.0'"):
        validate_config({"models": {"include": ["lenet-simclr-fa"]}}, schema)
