"""Running the repository's Snakefile from tests, as a user's shell would."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).with_name("config_tiny.yaml")
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def snakemake(workdir, *args, timeout=900):
    """Run the repository's Snakefile in `workdir` with this interpreter's environment."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
