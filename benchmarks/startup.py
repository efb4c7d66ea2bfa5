"""Benchmark: what a Snakemake job pays before its first line of work.

Every rule is one `python -m pipeline <verb>` process, so the modules a verb imports are paid
once per job, and a run has tens to hundreds of jobs. Two figures, each the best of
`--repeats` fresh processes:

- `snakemake -n` on the tiny test config in a scratch folder: parsing the Snakefile, validating
  the config, checking every model name and planning the DAG (what every `snakemake` call
  pays before it starts a job);
- wall seconds to import the modules of a few verbs, and whether they import torch, against
  the bare interpreter (`python -c pass`) and `import torch` alone.

    PYTHONPATH=. python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# verb (or reader) -> the modules its job imports (pipeline/cli.py)
JOBS = {
    "model names (Snakefile)": ["pipeline.models.names", "pipeline.config"],
    "predictivity": ["pipeline.compare.consistency", "pipeline.data.assembly", "pipeline.io",
                     "pipeline.models.names"],
    "plot_rdms": ["pipeline.figures.rdms"],
    "assemble_synthetic_mouse": ["pipeline.data.synthetic_mouse", "pipeline.io"],
    "recovery, recovery_matrix": ["pipeline.compare.recovery", "pipeline.io"],
    "mec_predictivity, mec_scores, mec_ks": ["pipeline.mec.comparison", "pipeline.data.assembly",
                                             "pipeline.io"],
    "extract": ["pipeline.activations"],
    "train": ["pipeline.train"],
}


def best_wall(command, repeats, **kwargs) -> float:
    """Fewest wall seconds of `repeats` runs of `command` (each must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def imports(modules, repeats) -> tuple[float, bool]:
    """(best wall seconds, torch imported) of a fresh interpreter importing `modules`."""
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    torch = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                           text=True).stdout.strip() == "True"
    return best_wall([sys.executable, "-c", code], repeats), torch


def dry_run(repeats) -> float:
    """Best wall seconds of `snakemake -n` on the tiny test config."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(REPO / "config.yaml", Path(tmp) / "config.yaml")
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                   "--directory", tmp, "--cores", "2", "--configfile",
                   str(REPO / "tests/workflow/config_tiny.yaml"), "-n"]
        env = dict(os.environ, PYTHONPATH=str(REPO),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        return best_wall(command, repeats, env=env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bare = best_wall([sys.executable, "-c", "pass"], args.repeats)
    torch = best_wall([sys.executable, "-c", "import torch"], args.repeats)
    print(f"`snakemake -n`, tiny config: {dry_run(args.repeats):.2f} s\n")
    print(f"bare interpreter {bare:.2f} s; `import torch` {torch:.2f} s\n")
    print("| job | imports | imports torch | / `import torch` |")
    print("|---|---|---|---|")
    for job, modules in JOBS.items():
        seconds, with_torch = imports(modules, args.repeats)
        print(f"| {job} | {seconds:.2f} s | {'yes' if with_torch else 'no'} "
              f"| {seconds / torch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
