# Input functions and helpers shared by the rule files; no rules here.

import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.config import ConfigError
from pipeline.models.names import check_model, parse_model_name


MODELS = list(dict.fromkeys([
    f"{arch}-{objective}-{rule}-s{seed}"
    for arch, objective, rule, seed in itertools.product(
        config["models"]["archs"],
        config["models"]["objectives"],
        config["models"]["rules"],
        config["models"]["seeds"],
    )
] + [parse_model_name(name).name for name in config["models"]["include"]]))


def model_train_block(model):
    """`models.train` updated by that model's override."""
    return {**config["models"]["train"], **config["models"]["overrides"].get(model, {})}


def check_models():
    """ConfigError, before any job runs, for an override naming a model outside the zoo or a
    model its own job would refuse (objective x rule, input size, epochs to transfer or score)."""
    stray = sorted(set(config["models"]["overrides"]) - set(MODELS))
    if stray:
        raise ConfigError(
            f"config: field 'models.overrides.{stray[0]}' names a model outside the zoo "
            f"(archs x objectives x rules x seeds, plus models.include); the zoo is {MODELS}"
        )
    for name in MODELS:
        settings = model_train_block(name)
        try:
            check_model(name, input_size=settings["input_size"] or config["stimuli"]["size"],
                        epochs=settings["epochs"], transfer_epochs=config["models"]["transfer"]["epochs"],
                        compare_epochs=config["compare"]["predictivity"]["epochs"])
        except ValueError as err:
            raise ConfigError(f"config: {err}") from err


check_models()
DATASETS = [name for name, block in config["datasets"].items() if block is not None]
FIG = config["figures"]["format"]
# Datasets whose stimuli are spatial bins (MEC rate maps), which image models cannot be scored on.
SPATIAL_DATASETS = {"mec_openfield"}
# The stimulus set each image dataset was recorded on (results/stimuli/{name}.zarr); the
# virtual animals see the probe set of the `stimuli` block.
SOURCE_STIMULI = {"allen_neuropixels": "allen_neuropixels_scenes",
                  "allen_ophys": "allen_ophys_scenes",
                  "allen_psailamul": "allen_psailamul_scenes",
                  "majajhong2015": "majajhong2015_hvm",
                  "horikawa2017": "horikawa2017_images"}
# Datasets of one animal (no inter-animal ceiling): model scores (raw r) and RDMs only.
SINGLE_ANIMAL_DATASETS = {"allen_psailamul"}


def config_block(*keys):
    """The config sub-tree one rule reads, as canonical JSON: editing it reruns that rule only."""
    block = config
    for key in keys:
        block = block[key]
    return json.dumps(block, sort_keys=True)


# How analyses run (dask scheduler and workers), never what they compute: it reaches
# the command line as a global, not as a param, so editing it reruns nothing.
DASK = json.dumps(config["dask"], sort_keys=True)


def train_settings(wildcards):
    """Training settings of one model: the shared block updated by that model's override,
    plus the hyperparameters of its objective and learning rule (second and third parts of
    the model name)."""
    settings = model_train_block(wildcards.model)
    spec = parse_model_name(wildcards.model)
    settings["rule_settings"] = config["models"]["rule_settings"].get(spec.rule, {})
    settings["objective_settings"] = config["models"]["objective_settings"].get(spec.objective, {})
    return json.dumps(settings, sort_keys=True)


def stimulus_set_of(dataset):
    """The stimulus set a dataset's animals were shown (`SOURCE_STIMULI`, or the probe set)."""
    if dataset == "synthetic_mouse":
        return f"{config['stimuli']['name']}_probe"
    return SOURCE_STIMULI[dataset]


def without_images(dataset):
    """True for the fMRI data when no folder of their ImageNet stimuli is configured: the images
    are not distributed, so only the inter-subject RSA can run."""
    return dataset == "horikawa2017" and not config["datasets"][dataset]["stimuli"]["images"]


def activations_for(wildcards):
    return f"results/activations/{wildcards.model}/{stimulus_set_of(wildcards.dataset)}.zarr"


def final_outputs():
    """Score tables and figures of every model and dataset (the targets of `rule all`)."""
    outputs = [f"results/figures/learning_curves.{FIG}", f"results/figures/alignment.{FIG}"]
    outputs += expand("results/transfer/{model}.csv", model=MODELS)
    if DATASETS and all(dataset in SPATIAL_DATASETS or without_images(dataset) for dataset in DATASETS):
        outputs = []                      # no image dataset: no model is trained
    for dataset in DATASETS:
        if without_images(dataset):
            outputs.append(f"results/scores/interanimal/{dataset}.parquet")
            continue
        if dataset in SINGLE_ANIMAL_DATASETS:
            outputs += expand("results/scores/predictivity/{model}/{dataset}.parquet", model=MODELS,
                              dataset=dataset)
            outputs += expand("results/figures/rdms/{model}/{dataset}.{fig}", model=MODELS,
                              dataset=dataset, fig=FIG)
            continue
        if dataset in SPATIAL_DATASETS:
            # Stimuli are position bins, not images: only the inter-animal scores apply.
            outputs += [
                f"results/scores/interanimal/{dataset}.parquet",
                f"results/figures/interanimal_curve_{dataset}.{FIG}",
            ]
            continue
        outputs += [
            f"results/scores/interanimal/{dataset}.parquet",
            f"results/scores/summary/{dataset}.csv",
            f"results/figures/predictivity_{dataset}.{FIG}",
            f"results/figures/predictivity_by_rule_{dataset}.{FIG}",
            f"results/figures/predictivity_by_model_{dataset}.{FIG}",
            f"results/figures/performance_vs_predictivity_{dataset}.{FIG}",
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
    """Write results/report.html with `snakemake --report` once every final output exists.

    The report run gets the run's own validated config as one file, so it sees exactly what
    this run saw, whatever `--configfile`s were given and in whatever order.
    """
    if not all(Path(path).exists() for path in final_outputs()):
        print("report: some final outputs are missing; run the whole DAG to get results/report.html")
        return
    config_path = Path("results/.report_config.yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=True))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workflow.main_snakefile),
               "--report", "results/report.html", "--quiet", "all", "--configfile", str(config_path)]
    subprocess.run(command, check=True)
