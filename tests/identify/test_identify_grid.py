"""The run grid: names, settings per run (spec_ch5-6 B.2–B.3) and checks before anything runs."""

import copy

import pytest

from pipeline.identify.grid import Run, check_grid, expand_grid, parse_run, run_settings
from pipeline.train import TrainSettings

BLOCK = {
    "grid": {"rules": ["sgdm", "adam", "fa", "ia"], "archs": ["ventral_cnn", "lenet"],
             "tasks": ["supervised", "vectors"], "batch_sizes": [64, 128], "init_seeds": [0, 1],
             "data_seeds": [0, 3]},
    "classes": {"sgdm": {"rule": "bp", "optimizer": "nesterov", "lr": 0.05, "scale_lr": True},
                "adam": {"rule": "bp", "optimizer": "adam", "lr": 0.001},
                "fa": {"rule": "fa", "optimizer": "adam", "lr": 0.001},
                "ia": {"rule": "ia", "optimizer": "nesterov", "lr": 0.05, "scale_lr": True,
                       "rule_settings": {"samples": 8}}},
    "tasks": {"supervised": {"data": "stimuli", "objective": "supervised"},
              "vectors": {"data": "vectors", "objective": "supervised",
                          "objective_settings": {}}},
    "train": {"epochs": 4, "base_batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4,
              "lr_milestones": [], "lr_gamma": 0.1, "label_level": "basic"},
    "vectors": {"size": 16},
}


def test_names_round_trip_and_the_grid_is_the_product():
    runs = expand_grid(BLOCK["grid"])
    assert len(runs) == 4 * 2 * 2 * 2 * 2 * 2
    assert len({run.name for run in runs}) == len(runs)
    run = Run("vectors", "lenet", "ia", 128, 1, 3)
    assert run.name == "vectors-lenet-ia-b128-i1-d3" and parse_run(run.name) == run
    assert run.model(BLOCK["classes"], BLOCK["tasks"]) == "lenet-supervised-ia-s1"
    assert run.labels()["curriculum"] == "b128-d3"
    with pytest.raises(ValueError, match="must look like"):
        parse_run("lenet-supervised-ia-s1")


def test_settings_scale_the_rate_and_carry_optimizer_and_data_seed():
    sgdm = run_settings(Run("supervised", "lenet", "sgdm", 128, 0, 3), BLOCK)
    assert sgdm["lr"] == pytest.approx(0.1) and sgdm["optimizer"] == "nesterov"
    assert sgdm["data_seed"] == 3 and sgdm["batch_size"] == 128 and "base_batch_size" not in sgdm
    adam = run_settings(Run("supervised", "lenet", "adam", 128, 0, 0), BLOCK)
    assert adam["lr"] == 0.001                                       # not rescaled (B.3)
    ia = run_settings(Run("supervised", "lenet", "ia", 64, 0, 0), BLOCK)
    assert ia["rule_settings"] == {"samples": 8}
    TrainSettings.from_dict(sgdm)                                    # a valid training run


def test_check_grid_names_the_field():
    assert len(check_grid(BLOCK, stimulus_size=32)) == 128
    bad = copy.deepcopy(BLOCK)
    bad["grid"]["rules"].append("hebbian")
    with pytest.raises(ValueError, match="identify.grid.rules' lists 'hebbian'"):
        check_grid(bad, stimulus_size=32)
    bad = copy.deepcopy(BLOCK)
    bad["grid"]["tasks"] = ["speech"]
    with pytest.raises(ValueError, match="identify.tasks does not define"):
        check_grid(bad, stimulus_size=32)
    small = copy.deepcopy(BLOCK)
    small["vectors"]["size"] = 8                                     # below ventral_cnn's 16 px
    with pytest.raises(ValueError, match="vectors-ventral_cnn-.*input_size must be at least 16"):
        check_grid(small, stimulus_size=32)


def test_units_outside_the_grid_are_refused():
    bad = copy.deepcopy(BLOCK)
    bad["observables"] = {"units": {"rules": ["fa", "kp"], "archs": ["lenet"]}}
    with pytest.raises(ValueError, match="observables.units.rules' lists 'kp'"):
        check_grid(bad, stimulus_size=32)
    bad["observables"]["units"] = {"rules": ["fa"], "archs": ["resnet18"]}
    with pytest.raises(ValueError, match="observables.units.archs' lists 'resnet18'"):
        check_grid(bad, stimulus_size=32)


@pytest.mark.parametrize("name, runs, checkpoints", [("identify", 4 * 3 * 2 * 2, 7),
                                                     ("full", 4 * 3 * 3 * 3 * 2 * 2, 21)])
def test_shipped_grids_pass_their_checks_and_checkpoint_at_train_time(name, runs, checkpoints):
    """configs/identify.yaml and full.yaml: every run is a valid training job whose
    checkpoint_every gives the trajectory's points (B.5: 21 of 100 epochs); the small grid
    holds a fully connected arch beside the conv nets, for the architecture holdout."""
    import yaml

    from pipeline.checkpoints import checkpoint_epochs
    from pipeline.config import validate_config
    from tests.workflow.runner import REPO, SCHEMA

    config = validate_config(yaml.safe_load((REPO / f"configs/{name}.yaml").read_text()), SCHEMA)
    block = config["identify"]
    grid = check_grid(block, stimulus_size=config["stimuli"]["size"])
    assert len(grid) == runs
    settings = TrainSettings.from_dict(run_settings(grid[0], block))
    assert len(checkpoint_epochs(settings.epochs, settings.checkpoint_every)) == checkpoints
    if name == "identify":
        assert {"mlp", "lenet"} <= set(block["grid"]["archs"])
