"""The MEC chapter end to end (slow): virtual MEC animals → path integrators, controls, rate maps,
predictivity, scores, KS, decoding, knockouts and figures, through the real Snakefile; and its
start-up checks."""

import shutil

import pandas as pd
import pytest
import yaml

from tests.workflow.runner import REPO, snakemake

MODELS = ["ugrnn_relu-placecell-bp-s0", "rnn_tanh-position-fa-s0"]
CONTROLS = ["placecells", "nmf_r9", "velocity"]
MEC_ONLY = {
    "datasets": {"synthetic_mouse": None,
                 "synthetic_mec": {"simulate": {"animals": 3, "cells_per_animal": 16,
                                                "duration_s": 600.0}}},
    "mec": {"datasets": ["synthetic_mec"], "models": MODELS,
            "train": {"epochs": 1, "steps_per_epoch": 300, "batch_size": 64, "n_units": 64,
                      "n_input": 16, "n_place_cells": 128, "arena": 1.0, "lr": 0.003,
                      "eval_batches": 1},
            "ratemaps": {"n_batches": 10, "batch_size": 200},
            "controls": {"placecells": True, "nmf_ranks": [9], "velocity": True},
            "compare": {"n_splits": 3},
            "decoding": {"n_batches": 4, "batch_size": 100},
            "knockouts": {"models": MODELS[:1],
                          "settings": {"n_draws": 5, "n_batches": 2, "batch_size": 100,
                                       "thresholds": {"grid": [0.0], "border": [0.3]}}}},
    "dask": {"scheduler": None, "workers": 1},
    "figures": {"format": "png", "dpi": 60},
}


@pytest.fixture(scope="module")
def mec_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mec")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    (workdir / "mec.yaml").write_text(yaml.safe_dump(MEC_ONLY))
    done = snakemake(workdir, "--cores", "2", "--configfile", workdir / "mec.yaml", timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir / "results"


@pytest.mark.slow
@pytest.mark.timeout(30 * 60)
def test_mec_chapter_runs_from_spikes_to_model_ranking(mec_run):
    ceiling = pd.read_parquet(mec_run / "mec/interanimal/synthetic_mec.parquet")
    assert set(ceiling.mapping) == {"ridge", "one_to_one"} and ceiling.score.notna().any()
    for source in MODELS + CONTROLS:
        scores = pd.read_parquet(mec_run / f"mec/predictivity/{source}/synthetic_mec.parquet")
        assert {"model", "arch", "objective", "rule", "layer", "epoch", "score"} <= set(scores.columns)
        assert scores.query("stage == 'test'").score.notna().any(), source
    ugrnn = pd.read_parquet(mec_run / f"mec/predictivity/{MODELS[0]}/synthetic_mec.parquet")
    assert set(ugrnn.layer) == {"pre_g", "g", "dc"} and set(ugrnn.epoch) == {0, 1}
    assert set(pd.read_parquet(mec_run / f"mec/predictivity/{MODELS[1]}/synthetic_mec.parquet")
               .layer) == {"g", "dc"}                                   # rnn: its state is g
    decoding = pd.read_parquet(mec_run / f"mec/decoding/{MODELS[0]}.parquet")
    assert decoding.set_index("epoch").error_cm[1] < 0.5 * decoding.set_index("epoch").error_cm[0]
    ks = pd.read_parquet(mec_run / "mec/ks/synthetic_mec.parquet")
    assert set(ks.model) == set(MODELS + CONTROLS) and ks.ks_distance.between(0, 1).all()
    knockouts = pd.read_parquet(mec_run / f"mec/knockouts/{MODELS[0]}/synthetic_mec.parquet")
    assert knockouts.query("kind == 'intact'").relative_degradation.eq(0).all()
    for name in ["predictivity_synthetic_mec", "score_distributions_synthetic_mec",
                 "knockouts_synthetic_mec", "decoding_vs_predictivity_synthetic_mec",
                 *[f"ratemaps/{m}/synthetic_mec" for m in MODELS]]:
        assert (mec_run / f"figures/mec/{name}.png").stat().st_size > 1_000, name


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    ({"knockouts": {"models": ["lstm_relu-placecell-bp-s0"]}}, "not in mec.models"),
    ({"datasets": ["mec_openfield"]}, "datasets.mec_openfield is not configured"),
    ({"models": ["ventral_cnn-supervised-bp-s0"]}, "mec.models"),
])
def test_bad_mec_config_stops_at_start_up(tmp_path, edit, message):
    config = yaml.safe_load(yaml.safe_dump(MEC_ONLY))
    config["mec"].update(edit)
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--configfile", tmp_path / "bad.yaml")
    assert dry.returncode != 0 and message in dry.stderr + dry.stdout
