"""kill -9 of the whole run at a random point of each rule, then the documented rerun command,
ends with the score tables and checkpoints of an uninterrupted run (floats to FLOAT_ATOL).

One working directory goes through the tiny config again and again: each attempt is killed
(SIGKILL to Snakemake's process group, jobs included) a random fraction of a second after the
first job of a rule not yet killed starts, then resumed with

    snakemake --unlock && snakemake --cores 2 --rerun-incomplete

until an attempt finishes. Every rule of the DAG is killed once.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.workflow.runner import REPO, TINY

RULE = re.compile(r"^(?:local)?rule (\w+):")
# Floats agree to this, not bit for bit: torch's CPU kernels are not bit-reproducible from run to
# run on every CPU, and a Hebbian layer's soft competition (temperature 0.003) amplified one such
# last-bit difference to 1e-6 in r after one epoch. A resume bug (a lost optimizer, generator or
# data-order state) moves weights and scores by orders of magnitude more.
FLOAT_ATOL = 1e-4


def start(workdir, *args):
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(workdir), "--configfile", str(workdir / "tiny.yaml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def attempt(workdir, killed, rng):
    """Run until the first job of a rule not in `killed` starts, then SIGKILL everything.

    Returns the rule killed, or None when the run finished without meeting a new rule.
    """
    process = start(workdir, "--cores", "2", "--rerun-incomplete")
    output = []
    for line in process.stdout:
        output.append(line)
        match = RULE.match(line)
        if match and match.group(1) not in killed and match.group(1) != "all":
            time.sleep(rng.uniform(0.0, 1.5))                 # somewhere inside the job
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return match.group(1)
    assert process.wait() == 0, "".join(output)[-4000:]
    return None


def assert_same(resumed, uninterrupted, where):
    """Two checkpoints' contents equal: tensors and floats to tolerance, everything else exactly."""
    if isinstance(uninterrupted, dict):
        assert resumed.keys() == uninterrupted.keys(), where
        for key, value in uninterrupted.items():
            assert_same(resumed[key], value, f"{where}[{key!r}]")
    elif isinstance(uninterrupted, (list, tuple)):
        assert len(resumed) == len(uninterrupted), where
        for i, value in enumerate(uninterrupted):
            assert_same(resumed[i], value, f"{where}[{i}]")
    elif isinstance(uninterrupted, torch.Tensor) and uninterrupted.is_floating_point():
        torch.testing.assert_close(resumed, uninterrupted, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{where}: {m}")
    elif isinstance(uninterrupted, torch.Tensor):
        assert torch.equal(resumed, uninterrupted), where
    elif isinstance(uninterrupted, float):
        assert resumed == pytest.approx(uninterrupted, rel=1e-4, abs=FLOAT_ATOL, nan_ok=True), where
    else:
        assert resumed == uninterrupted, where


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(40 * 60)
def test_kill_at_every_rule_then_rerun_gives_the_uninterrupted_tables(tiny_run, tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copy(TINY, tmp_path / "tiny.yaml")
    rng = random.Random(19)
    killed = []
    while (rule := attempt(tmp_path, set(killed), rng)) is not None:
        killed.append(rule)
        unlock = start(tmp_path, "--unlock")
        assert unlock.wait() == 0, unlock.stdout.read()
    expected = {"stimuli", "simulate_synthetic_mouse", "assemble_synthetic_mouse", "train", "transfer",
                "extract", "interanimal", "interanimal_curve", "predictivity", "summarize",
                "plot_learning_curves", "plot_alignment", "plot_predictivity", "plot_predictivity_by_rule",
                "plot_predictivity_by_model", "plot_performance_vs_predictivity", "plot_interanimal_curve",
                "plot_rdms", "recovery", "recovery_matrix", "recovery_summary", "plot_recovery_matrix",
                "plot_recovery_margin", "plot_layer_area"}
    expected |= {"synthesize_mec", "assemble_synthetic_mec", "train_mec", "mec_ratemaps", "mec_control",
                 "mec_interanimal", "mec_predictivity", "mec_scores", "mec_data_scores", "mec_ks",
                 "mec_decoding", "mec_knockouts", "plot_mec_predictivity", "plot_mec_score_distributions",
                 "plot_mec_ratemaps", "plot_mec_knockouts", "plot_mec_decoding_vs_predictivity"}  # MEC
    expected |= {"geometry", "rule_similarity", "plot_geometry", "plot_probe_accuracy", "plot_rule_similarity"}
    assert set(killed) == expected
    tables = sorted(p.relative_to(tiny_run) for folder in ("scores", "mec", "geometry")
                    for p in (tiny_run / "results" / folder).rglob("*.parquet"))
    assert tables == sorted(p.relative_to(tmp_path) for folder in ("scores", "mec", "geometry")
                            for p in (tmp_path / "results" / folder).rglob("*.parquet"))
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / table), pd.read_parquet(tiny_run / table),
                                      check_exact=False, rtol=0, atol=FLOAT_ATOL, obj=str(table))
    summary = "results/scores/summary/synthetic_mouse.csv"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / summary), pd.read_csv(tiny_run / summary),
                                  check_exact=False, rtol=0, atol=FLOAT_ATOL)
    for model in (tiny_run / "results/models").iterdir():
        for checkpoint in model.glob("epoch_*.pt"):
            assert_same(torch.load(tmp_path / checkpoint.relative_to(tiny_run), weights_only=True),
                        torch.load(checkpoint, weights_only=True), str(checkpoint))
