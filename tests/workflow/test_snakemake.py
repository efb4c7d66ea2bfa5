"""End to end: the real Snakefile on a tiny config, then rerun planning, bad config, profiles."""

import re
import shutil
import time

import pandas as pd
import pytest
import yaml
from scipy.stats import binom

from pipeline.compare.aggregate import median_over_units
from tests.workflow.runner import TINY, snakemake

MODELS = [f"ventral_cnn-supervised-{rule}-s{seed}" for rule in ("bp", "kp", "hebb") for seed in (0, 1)]
SCORE_COLUMNS = {"dataset", "area", "animal", "neuroid_id", "mapping", "split", "r", "r_mapping",
                 "r_target", "score", "score_full", "score_thesis"}


def planned_outputs(dry_run_log: str) -> list[str]:
    return re.findall(r"^\s+output: (.+)$", dry_run_log, flags=re.M)


def test_tiny_run_leaves_scores_figures_and_report(tiny_run):
    results = tiny_run / "results"
    assert (results / "report.html").stat().st_size > 10_000
    for name in ["learning_curves.png", "alignment.png", "predictivity_synthetic_mouse.png",
                 "predictivity_by_rule_synthetic_mouse.png", "predictivity_by_model_synthetic_mouse.png",
                 "performance_vs_predictivity_synthetic_mouse.png",
                 *[f"rdms/{m}/synthetic_mouse.png" for m in MODELS]]:
        assert (results / "figures" / name).stat().st_size > 1_000, name
    ceiling = pd.read_parquet(results / "scores/interanimal/synthetic_mouse.parquet")
    assert SCORE_COLUMNS <= set(ceiling.columns)
    assert set(ceiling["mapping"]) == {"ridge", "pls", "rsa"}
    for model in MODELS:
        scores = pd.read_parquet(results / f"scores/predictivity/{model}/synthetic_mouse.parquet")
        assert SCORE_COLUMNS | {"model", "arch", "objective", "rule", "seed", "epoch", "layer"} \
            <= set(scores.columns)
        assert set(scores["epoch"]) == {0, 1}
        assert scores["score"].notna().any()
        checkpoints = sorted(p.name for p in (results / "models" / model).glob("epoch_*.pt"))
        assert checkpoints == ["epoch_000.pt", "epoch_001.pt"]
        alignment = pd.read_csv(results / "models" / model / "alignment.csv")
        assert set(alignment["epoch"]) <= {0, 1}


def test_tiny_run_recovers_its_generator_and_the_report_opens_with_it(tiny_run):
    """config.yaml's generator (a held-out seed, trained by the run) made the virtual animals;
    the recovery table covers every area and mapping and the report opens with its summary."""
    results = tiny_run / "results"
    assert (results / "models/ventral_cnn-supervised-bp-s101/run.json").exists()
    assert not (results / "scores/predictivity/ventral_cnn-supervised-bp-s101").exists()  # not a candidate
    table = pd.read_csv(results / "recovery/synthetic_mouse/recovery.csv")
    # one row per area and mapping with a defined score (a tiny RSA cell can be undefined throughout)
    assert len(table) >= 6 * 2 and set(table["area"]) == {"VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm"}
    assert set(table["mapping"]) == {"ridge", "pls", "rsa"}
    assert set(table["generator"]) == {"ventral_cnn-supervised-bp-s101"}
    assert set(table["true_class"]) == {"ventral_cnn-supervised-bp"} and table["rank"].between(1, 3).all()
    for name in ["recovery_matrix.png", "recovery_margin_synthetic_mouse.png", "layer_area_synthetic_mouse.png"]:
        assert (results / "figures" / name).stat().st_size > 1_000, name
    assert "Model recovery" in (results / "report.html").read_text()


def test_the_report_saw_the_run_config(tiny_run):
    """The report run gets the run's validated config: config.yaml with the tiny file on top."""
    seen = yaml.safe_load((tiny_run / "results/.report_config.yaml").read_text())
    assert seen["models"]["rules"] == ["bp", "kp", "hebb"] and seen["models"]["include"] == []
    assert seen["compare"]["predictivity"]["epochs"] == "ends"          # from config.yaml


def test_nothing_left_to_do_after_a_complete_run(tiny_run):
    dry = snakemake(tiny_run, "-n", "--configfile", tiny_run / "tiny.yaml")
    assert dry.returncode == 0, dry.stderr
    assert planned_outputs(dry.stdout + dry.stderr) == []


def test_editing_one_model_plans_only_its_downstream_jobs(tiny_run):
    config = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    config["models"]["overrides"] = {MODELS[1]: {"lr": 0.05}}
    (tiny_run / "edited.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tiny_run, "-n", "--configfile", tiny_run / "edited.yaml")
    assert dry.returncode == 0, dry.stderr
    outputs = planned_outputs(dry.stdout + dry.stderr)
    assert f"results/models/{MODELS[1]}" in outputs
    shared = {"results/figures/learning_curves.png", "results/figures/alignment.png",
              "results/figures/predictivity_synthetic_mouse.png", "results/scores/summary/synthetic_mouse.csv",
              "results/figures/predictivity_by_rule_synthetic_mouse.png",
              "results/figures/predictivity_by_model_synthetic_mouse.png",
              "results/figures/performance_vs_predictivity_synthetic_mouse.png",
              # model recovery gathers every model's scores on the virtual animals
              "results/recovery/synthetic_mouse/recovery.csv", "results/recovery/synthetic_mouse/classes.csv",
              "results/recovery/synthetic_mouse/depth.csv", "results/recovery/matrix.csv",
              "results/recovery/summary.rst", "results/figures/recovery_matrix.png",
              "results/figures/recovery_margin_synthetic_mouse.png", "results/figures/layer_area_synthetic_mouse.png",
              # geometry gathers every model's tables; rule similarity every model's activations
              "results/geometry/rule_similarity/shapes_probe.parquet", "results/figures/geometry_shapes_probe.png",
              "results/figures/probe_accuracy_shapes_probe.png", "results/figures/rule_similarity_shapes_probe.png"}
    assert all(MODELS[1] in out or set(out.split(", ")) <= shared for out in outputs), outputs
    assert not any(MODELS[0] in out for out in outputs)


@pytest.mark.parametrize("text, field", [
    ("models:\n  train:\n    epochs: -2\n", "'models.train.epochs'"),
    ("models:\n  train:\n    lr: .nan\n", "'models.train.lr'"),
    ("models:\n  overrides: {ventral_cnn-supervised-ss-s0: {lr: 0.1}}\n",
     "'models.overrides.ventral_cnn-supervised-ss-s0'"),
    ("models:\n  include: [ventral_cnn-autoencoder-hebb-s0]\n",
     "model 'ventral_cnn-autoencoder-hebb-s0': objective 'autoencoder' cannot be trained with rule 'hebb'"),
    ("models:\n  transfer: {epochs: [9]}\n", "models.transfer.epochs [9] are outside the trained epochs"),
    ("models:\n  include: [alexnet64-supervised-bp-s0]\n", "input_size must be at least 63 for arch 'alexnet64'"),
    ("datasets:\n  synthetic_mouse: null\nrecovery:\n  generators: [ventral_cnn-supervised-fa-s101]\n",
     "'recovery.generators' needs datasets.synthetic_mouse"),
])
def test_bad_config_field_stops_the_run_with_its_name(tmp_path, text, field):
    (tmp_path / "bad.yaml").write_text(text)
    dry = snakemake(tmp_path, "-n", "--configfile", tmp_path / "bad.yaml")
    assert dry.returncode != 0
    assert field in dry.stdout + dry.stderr


def test_slurm_profile_dry_run_asks_a_gpu_for_training(tmp_path, repo):
    shutil.copy(TINY, tmp_path / "config.yaml")
    dry = snakemake(tmp_path, "-n", "--profile", str(repo / "profiles/slurm"),
                    "--configfile", tmp_path / "config.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    profile = yaml.safe_load((repo / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["set-resources"]["train"]["gres"] == "gpu:1"
    assert "results/models/ventral_cnn-supervised-bp-s0" in planned_outputs(dry.stdout + dry.stderr)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(40 * 60)
def test_embedded_default_runs_end_to_end(tmp_path, repo):
    """`snakemake --cores 2` on config.yaml as shipped leaves every output (under 12 min idle)."""
    shutil.copy(repo / "config.yaml", tmp_path / "config.yaml")
    start = time.monotonic()
    done = snakemake(tmp_path, "--cores", "2", "--configfile", tmp_path / "config.yaml",
                     timeout=35 * 60)
    print(f"embedded default: {time.monotonic() - start:.0f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    results = tmp_path / "results"
    assert (results / "report.html").stat().st_size > 10_000
    summary = pd.read_csv(results / "scores/summary/synthetic_mouse.csv")
    assert set(summary["area"]) == {"VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm"}
    assert summary["score_ceiling"].between(0.3, 1.2).all(), summary
    n_test, chance = 640, 1 / 32
    threshold = binom.ppf(0.99, n_test, chance) / n_test      # fewer than 1% of guessers reach it
    for rule in ("bp", "fa", "kp", "wm", "hebb"):
        metrics = pd.read_csv(results / f"models/ventral_cnn-supervised-{rule}-s0/metrics.csv")
        assert metrics["test_acc"].iloc[-1] > threshold, rule
    # The README's figures for the default run: bp test accuracy 28 %, linear-evaluation 60 %.
    bp = "ventral_cnn-supervised-bp-s0"
    assert pd.read_csv(results / f"models/{bp}/metrics.csv")["test_acc"].iloc[-1] == pytest.approx(0.28, abs=0.03)
    assert pd.read_csv(results / f"transfer/{bp}.csv")["top1"].iloc[-1] == pytest.approx(0.60, abs=0.05)
    assert (results / "figures/alignment.png").stat().st_size > 10_000
    recovery = pd.read_csv(results / "recovery/synthetic_mouse/recovery.csv")
    assert set(recovery["generator"]) == {"ventral_cnn-supervised-bp-s101"} and len(recovery) == 6 * 3
    assert recovery["rank"].between(1, 7).all() and recovery["margin_low"].le(recovery["margin_high"]).all()
    # The README's MEC branch: training makes the UGRNN-ReLU a better model of the virtual MEC.
    ugrnn = "ugrnn_relu-placecell-bp-s0"
    mec = median_over_units(pd.read_parquet(results / f"mec/predictivity/{ugrnn}/synthetic_mec.parquet")
                            .query("mapping == 'ridge'"), by=["epoch", "layer"])
    best = mec.groupby("epoch")["score"].max()
    print(f"MEC {ugrnn}: best-layer ridge median by epoch {best.round(2).to_dict()}")
    assert best.iloc[-1] > best.iloc[0] + 0.2, best
    decoding = pd.read_parquet(results / f"mec/decoding/{ugrnn}.parquet").groupby("epoch")["error_cm"].mean()
    assert decoding.iloc[-1] < 0.5 * decoding.iloc[0], decoding
    assert (results / "figures/mec/predictivity_synthetic_mec.png").stat().st_size > 10_000
