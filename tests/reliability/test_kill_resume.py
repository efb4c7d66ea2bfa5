"""kill -9 of the whole run at a random point of each rule, then the documented rerun command,
ends with score tables identical to an uninterrupted run.

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

from tests.workflow.runner import REPO, TINY

RULE = re.compile(r"^(?:local)?rule (\w+):")


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


@pytest.mark.slow
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
                "plot_rdms"}
    assert set(killed) == expected
    tables = sorted(p.relative_to(tiny_run) for p in (tiny_run / "results/scores").rglob("*.parquet"))
    assert tables == sorted(p.relative_to(tmp_path) for p in (tmp_path / "results/scores").rglob("*.parquet"))
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / table), pd.read_parquet(tiny_run / table),
                                      check_exact=True, obj=str(table))
        assert (tmp_path / table).read_bytes() == (tiny_run / table).read_bytes(), table
    summary = "results/scores/summary/synthetic_mouse.csv"
    assert (tmp_path / summary).read_bytes() == (tiny_run / summary).read_bytes()
    for model in (tiny_run / "results/models").iterdir():          # byte-identical checkpoints
        for checkpoint in model.glob("epoch_*.pt"):
            assert (tmp_path / checkpoint.relative_to(tiny_run)).read_bytes() == checkpoint.read_bytes()
