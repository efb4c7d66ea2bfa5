# Input functions and helpers shared by the rule files; no rules here.

import itertools
import json
import shlex
import subprocess
import sys
from pathlib import Path

from pipeline.models.names import parse_model_name


MODELS = [
    f"{arch}-{objective}-{rule}-s{seed}"
    for arch, objective, rule, seed in itertools.product(
        config["models"]["archs"],
        config["models"]["objectives"],
        config["models"]["rules"],
        config["models"]["seeds"],
    )
]
DATASETS = [name for name, block in config["datasets"].items() if block is not None]
FIG = config["figures"]["format"]



def config_block(*keys):
    """The config sub-tree one rule reads, as canonical JSON: editing it reruns that rule only."""
    block = config
    for key in keys:
        block = block[key]
    return json.dumps(block, sort_keys=True)


def train_settings(wildcards):
    """Training settings of one model: the shared block updated by that model's override,
    plus the hyperparameters of its learning rule (the third part of the model name)."""
    settings = dict(config["models"]["train"])
    settings.update(config["models"]["overrides"].get(wildcards.model, {}))
    learning_rule = parse_model_name(wildcards.model).rule
    settings["rule_settings"] = config["models"]["rule_settings"].get(learning_rule, {})
    return json.dumps(settings, sort_keys=True)


def stimulus_set_of(dataset):
    """The stimulus set a dataset's animals were shown: the probe set for virtual animals,
    the Allen natural scenes (results/stimuli/{dataset}_scenes.zarr) for real Allen data."""
    if dataset.startswith("synthetic_"):
        return f"{config['stimuli']['name']}_probe"
    if dataset == "allen_psailamul":
        return "allen_psailamul_scenes"
    return f"{dataset}_scenes"


def activations_for(wildcards):
    return f"results/activations/{wildcards.model}/{stimulus_set_of(wildcards.dataset)}.zarr"


def final_outputs():
    """Score tables and figures of every model and dataset (the targets of `rule all`)."""
    outputs = [f"results/figures/learning_curves.{FIG}", f"results/figures/alignment.{FIG}"]
    for dataset in DATASETS:
        outputs += [
            f"results/scores/interanimal/{dataset}.parquet",
            f"results/figures/predictivity_{dataset}.{FIG}",
            f"results/figures/predictivity_by_rule_{dataset}.{FIG}",
            f"results/figures/interanimal_curve_{dataset}.{FIG}",
        ]
        outputs += expand(
            "results/scores/predictivity/{model}/{dataset}.parquet",
            model=MODELS,
            dataset=dataset,
        )
        outputs += expand(
            "results/figures/rdms/{model}/{dataset}.{fig}",
            model=MODELS,
            dataset=dataset,
            fig=FIG,
        )
    return outputs


def make_report():
    """Write results/report.html with `snakemake --report` once every final output exists."""
    if not all(Path(path).exists() for path in final_outputs()):
        print("report: some final outputs are missing; run the whole DAG to get results/report.html")
        return
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workflow.main_snakefile),
               "--report", "results/report.html", "--quiet", "all"]
    for path in workflow.configfiles:
        command += ["--configfile", str(path)]
    subprocess.run(command, check=True)
