"""The identification stage end to end through Snakemake, on a tiny grid (minutes: slow)."""

import re
import shutil

import pandas as pd
import pytest
import yaml

from tests.workflow.runner import REPO, snakemake

TINY_IDENTIFY = {
    "stimuli": {"name": "shapes", "size": 16, "train_per_class": 2, "test_per_class": 1, "probe": 8, "seed": 0},
    "datasets": {"synthetic_mouse": None, "synthetic_mec": None},
    "mec": None,
    "geometry": {"stimulus_sets": []},
    "models": {"archs": ["lenet"], "rules": ["bp"], "seeds": [0], "include": [], "train": {"epochs": 1}},
    "identify": {
        "grid": {"rules": ["sgdm", "fa"], "archs": ["lenet"], "tasks": ["supervised", "vectors"],
                 "batch_sizes": [32], "init_seeds": [0, 1], "data_seeds": [0]},
        "tasks": {"supervised": {"data": "stimuli", "objective": "supervised"},
                  "vectors": {"data": "vectors", "objective": "supervised"}},
        "train": {"epochs": 3, "checkpoint_every": 2, "base_batch_size": 32, "label_level": "basic"},
        "vectors": {"size": 8, "n_classes": 4, "train_per_class": 16, "test_per_class": 8},
        "observables": {"n_stimuli": 24, "units": {"rules": ["sgdm", "fa"], "archs": ["lenet"],
                                                   "fractions": [0.5, 1.0], "noise": [0.0], "draws": [1, 1]}},
        "classify": {"observables": ["weights", "all"], "classifiers": ["svm", "rf"], "n_splits": 2, "cv": 2,
                     "svm": {"C": [1.0], "pca": []}, "rf": {"n_estimators": [20], "max_features": ["sqrt"]},
                     "importance": {"n_repeats": 1},
                     "analyses": {"holdouts": ["task", "arch"],
                                  "trajectory": {"periods": {"dense": 1}, "samples": {"dense": [2, 3]}}}},
    },
    "figures": {"format": "png", "dpi": 50},
}


@pytest.mark.slow
def test_tiny_identify_grid_runs_end_to_end(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "identify.yaml").write_text(yaml.safe_dump(TINY_IDENTIFY))
    done = snakemake(tmp_path, "--cores", "2", "--configfile", tmp_path / "identify.yaml", timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = sorted(p.name for p in (tmp_path / "results/identify/runs").iterdir())
    assert len(runs) == 2 * 2 * 2 and "vectors-lenet-fa-b32-i1-d0" in runs
    observables = pd.read_parquet(tmp_path / "results/identify/observables/vectors-lenet-fa-b32-i1-d0.parquet")
    assert sorted(observables["epoch"].unique()) == [0, 2, 3]          # checkpoint_every 2 of 3 epochs
    assert sorted(p.name for p in (tmp_path / "results/identify/runs/vectors-lenet-fa-b32-i1-d0").glob("*.pt")) == [
        "epoch_000.pt", "epoch_002.pt", "epoch_003.pt"]
    assert set(observables["fraction"]) == {0.5, 1.0} and observables["rule"].eq("fa").all()
    accuracy = pd.read_parquet(tmp_path / "results/identify/accuracy.parquet")
    assert {"separability", "averaged", "holdout", "trajectory", "thirds", "units"} <= set(accuracy["analysis"])
    assert set(accuracy.loc[accuracy["analysis"] == "holdout", "held_out"]) == {"supervised", "vectors"}
    assert accuracy["accuracy"].between(0, 1).all() and (accuracy["chance"] == 0.5).all()
    for figure in ("accuracy", "confusion", "trajectory", "units", "importance"):
        assert (tmp_path / f"results/figures/identify/{figure}.png").stat().st_size > 0
    # an edit of one rule class reruns that class's runs and what follows, nothing else
    edited = {**TINY_IDENTIFY, "identify": {**TINY_IDENTIFY["identify"],
                                            "classes": {"sgdm": {"rule": "bp", "optimizer": "nesterov", "lr": 0.05,
                                                                 "scale_lr": True},
                                                        "fa": {"rule": "fa", "optimizer": "adam", "lr": 0.002}}}}
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    plan = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", tmp_path / "edited.yaml")
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = set(re.findall(r"wildcards: run=([\w-]+)", plan.stdout + plan.stderr))
    assert planned == {run for run in runs if "-fa-" in run}
