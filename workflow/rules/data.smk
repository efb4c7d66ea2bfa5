# Data sources, in source order: the procedural stimulus sets, the virtual animals
# (synthetic_mouse), then each real dataset's download, assembly and stimulus set. Every rule is
# one `python -m pipeline <rule name>` call into the function of the same name in
# pipeline/data/<source>.py; its params are one config block, datasets.<source>.<step>, so
# editing a filter reruns the assembly and never the download.
#
# Every download job takes one unit of the `downloads` resource. Snakemake leaves a resource
# unbounded unless it is given, so bound concurrent downloads on the command line or in a profile:
#     snakemake --resources downloads=1 ...
# A download job fetches its files one at a time into data/raw/{dataset}/ (resuming any .part
# file, verifying each against the source's checksum or size) and writes manifest.json last.
# Only the manifest is a declared output: when Snakemake reruns the job (new settings, or a
# failed attempt) it deletes the manifest, never the verified files, so a rerun re-verifies the
# cache cheaply and fetches only what is missing.
#
# The real sources share three rule shapes (download, assemble, stimuli): the first source's
# rules define them, the others reuse them (`use rule ... with:`) for their own {dataset}.


rule stimuli:
    output:
        train=directory("results/stimuli/{name}_train.zarr"),
        test=directory("results/stimuli/{name}_test.zarr"),
        probe=directory("results/stimuli/{name}_probe.zarr"),
    params:
        settings=config_block("stimuli"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/stimuli/{name}.log",
    wildcard_constraints:
        name="[a-z0-9]+",
    shell:
        "python -m pipeline stimuli --out-dir results/stimuli --settings {params.settings:q} 2> {log:q}"


# ---------------------------------------------------------------- synthetic_mouse
# The virtual animals, and the virtual_* datasets of recovery.generators (model recovery), made
# by the same two rules: a virtual dataset is synthetic_mouse with another generator. A model
# generator's trained folder (rule train) is an input; its final checkpoint plays the areas.


rule simulate_synthetic_mouse:
    input:
        probe=lambda wc: f"results/stimuli/{stimulus_set_of('synthetic_mouse')}.zarr",
        generator=generator_input,
    output:
        directory("data/raw/{dataset}"),
    params:
        settings=simulate_settings,
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/simulate_synthetic_mouse/{dataset}.log",
    wildcard_constraints:
        dataset="synthetic_mouse|virtual_[a-z0-9_]+",
    shell:
        "python -m pipeline simulate_synthetic_mouse {input.probe:q} {output:q}"
        " --settings {params.settings:q} --generator-dir={input.generator:q} 2> {log:q}"


rule assemble_synthetic_mouse:
    input:
        raw="data/raw/{dataset}",
        stimuli=lambda wc: f"results/stimuli/{stimulus_set_of('synthetic_mouse')}.zarr",
    output:
        directory("results/neural/{dataset}.zarr"),
    params:
        settings=lambda wc: config_block("datasets", "synthetic_mouse", "assemble"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_synthetic_mouse/{dataset}.log",
    wildcard_constraints:
        dataset="synthetic_mouse|virtual_[a-z0-9_]+",
    shell:
        "python -m pipeline assemble_synthetic_mouse {input.raw:q} {input.stimuli:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


# ---------------------------------------------------------------- allen_neuropixels
# The Allen download blocks also take an existing AllenSDK cache (allensdk_cache: files verified,
# then linked or copied) and backend: allensdk, under which rule fetch_allensdk runs AllenSDK in
# its own interpreter first and the download step registers its files (README "AllenSDK").

import os
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

# Download keys that change nothing unless set: left out of the params at these values, so
# configs and caches from before they existed rerun nothing.
ALLENSDK_KEY_DEFAULTS = {
    "backend": ("dandi", "s3"),
    "allensdk_cache": (None,),
    "allensdk_cache_mode": ("link",),
    "rma_timeout": (1200,),
    "warehouse_url": ("https://api.brain-map.org",),
}
# The isolated AllenSDK interpreter: the rule's conda env under --software-deployment-method
# conda, else $ALLENSDK_PYTHON or the venv README "AllenSDK" builds in the repository. How to
# run, not what is fetched: a global, never a param.
REPOSITORY = Path(workflow.current_basedir).parents[1]
ALLENSDK_PYTHON = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else os.environ.get("ALLENSDK_PYTHON", str(REPOSITORY / ".venv-allensdk/bin/python"))
)
# The standalone script it runs (the pipeline package is not importable there).
ALLENSDK_SCRIPT = str(REPOSITORY / "pipeline/data/allensdk_backend.py")


def download_params(wildcards):
    """The dataset's download block as canonical JSON, AllenSDK keys at their defaults left out."""
    block = config["datasets"][wildcards.dataset]["download"]
    kept = {k: v for k, v in block.items() if v not in ALLENSDK_KEY_DEFAULTS.get(k, ())}
    return json.dumps(kept, sort_keys=True)


def allensdk_fetched(wildcards):
    """The report of rule fetch_allensdk when the dataset's backend is allensdk, else nothing."""
    block = config["datasets"][wildcards.dataset].get("download") or {}
    if block.get("backend") == "allensdk":
        return f"data/raw/{wildcards.dataset}/allensdk/fetched.json"
    return []


rule fetch_allensdk:
    output:
        "data/raw/{dataset}/allensdk/fetched.json",
    params:
        settings=download_params,
        kind=lambda wc: {"allen_neuropixels": "ecephys", "allen_ophys": "ophys"}[wc.dataset],
    resources:
        downloads=1,
    conda:
        "../../envs/allensdk.yaml"
    log:
        "logs/fetch_allensdk/{dataset}.log",
    wildcard_constraints:
        dataset="allen_neuropixels|allen_ophys",
    shell:
        "{ALLENSDK_PYTHON:q} {ALLENSDK_SCRIPT:q} {params.kind}"
        " data/raw/{wildcards.dataset}/allensdk {output:q} --settings {params.settings:q}"
        " 2> {log:q}"


rule download_allen_neuropixels:
    input:
        allensdk_fetched,
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        settings=download_params,
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_allen_neuropixels/{dataset}.log",
    wildcard_constraints:
        dataset="allen_neuropixels",
    shell:
        "python -m pipeline {rule} data/raw/{wildcards.dataset} --settings {params.settings:q}"
        " 2> {log:q}"


rule assemble_allen_neuropixels:
    input:
        "data/raw/{dataset}/manifest.json",
    output:
        directory("results/neural/{dataset}.zarr"),
    params:
        settings=lambda wc: config_block("datasets", wc.dataset, "assemble"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_allen_neuropixels/{dataset}.log",
    wildcard_constraints:
        dataset="allen_neuropixels",
    resources:
        mem_mb=8000,
    shell:
        "python -m pipeline {rule} {input:q} {output:q} --settings {params.settings:q} 2> {log:q}"


rule allen_neuropixels_stimuli:
    input:
        "data/raw/{dataset}/manifest.json",
    output:
        directory("results/stimuli/{dataset}_scenes.zarr"),
    params:
        settings=lambda wc: config_block("datasets", wc.dataset, "stimuli"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/allen_neuropixels_stimuli/{dataset}.log",
    wildcard_constraints:
        dataset="allen_neuropixels",
    shell:
        "python -m pipeline {rule} {input:q} {output:q} --settings {params.settings:q} 2> {log:q}"


# ---------------------------------------------------------------- allen_ophys


use rule download_allen_neuropixels as download_allen_ophys with:
    log:
        "logs/download_allen_ophys/{dataset}.log",
    wildcard_constraints:
        dataset="allen_ophys",


use rule assemble_allen_neuropixels as assemble_allen_ophys with:
    log:
        "logs/assemble_allen_ophys/{dataset}.log",
    wildcard_constraints:
        dataset="allen_ophys",


use rule allen_neuropixels_stimuli as allen_ophys_stimuli with:
    log:
        "logs/allen_ophys_stimuli/{dataset}.log",
    wildcard_constraints:
        dataset="allen_ophys",


# ---------------------------------------------------------------- allen_psailamul
# Trial means read in place from the folder datasets.allen_psailamul.path (nothing downloaded).


rule assemble_allen_psailamul:
    input:
        lambda wc: config["datasets"]["allen_psailamul"]["path"],
    output:
        neural=directory("results/neural/allen_psailamul.zarr"),
        stimuli=directory("results/stimuli/allen_psailamul_scenes.zarr"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_allen_psailamul/allen_psailamul.log",
    shell:
        "python -m pipeline assemble_allen_psailamul {input:q} {output.neural:q}"
        " {output.stimuli:q} 2> {log:q}"


# ---------------------------------------------------------------- majajhong2015
# Macaque V4/IT, the Brain-Score packaging of Majaj, Hong et al. 2015.


use rule download_allen_neuropixels as download_majajhong2015 with:
    log:
        "logs/download_majajhong2015/{dataset}.log",
    wildcard_constraints:
        dataset="majajhong2015",


use rule assemble_allen_neuropixels as assemble_majajhong2015 with:
    log:
        "logs/assemble_majajhong2015/{dataset}.log",
    wildcard_constraints:
        dataset="majajhong2015",
    resources:
        mem_mb=4000,


use rule allen_neuropixels_stimuli as majajhong2015_stimuli with:
    output:
        directory("results/stimuli/{dataset}_hvm.zarr"),
    log:
        "logs/majajhong2015_stimuli/{dataset}.log",
    wildcard_constraints:
        dataset="majajhong2015",


# ---------------------------------------------------------------- horikawa2017
# Human fMRI, Horikawa & Kamitani 2017 (figshare).


use rule download_allen_neuropixels as download_horikawa2017 with:
    log:
        "logs/download_horikawa2017/{dataset}.log",
    wildcard_constraints:
        dataset="horikawa2017",


use rule assemble_allen_neuropixels as assemble_horikawa2017 with:
    log:
        "logs/assemble_horikawa2017/{dataset}.log",
    wildcard_constraints:
        dataset="horikawa2017",
    resources:
        mem_mb=4000,


# Only when datasets.horikawa2017.stimuli.images names a folder with the ImageNet stimuli (they
# are not distributed); the stimulus ids come from the assembly.
rule horikawa2017_stimuli:
    input:
        neural="results/neural/horikawa2017.zarr",
        images=lambda wc: config["datasets"]["horikawa2017"]["stimuli"]["images"] or [],
    output:
        directory("results/stimuli/horikawa2017_images.zarr"),
    params:
        settings=lambda wc: config_block("datasets", "horikawa2017", "stimuli"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/horikawa2017_stimuli/horikawa2017.log",
    shell:
        "python -m pipeline horikawa2017_stimuli {input.neural:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


# ---------------------------------------------------------------- mec_openfield
# MEC open field (DANDI 000582, 000053) as spatial rate maps.


use rule download_allen_neuropixels as download_mec_openfield with:
    log:
        "logs/download_mec_openfield/{dataset}.log",
    wildcard_constraints:
        dataset="mec_openfield",


use rule assemble_allen_neuropixels as assemble_mec_openfield with:
    log:
        "logs/assemble_mec_openfield/{dataset}.log",
    wildcard_constraints:
        dataset="mec_openfield",
    resources:
        mem_mb=4000,


# ---------------------------------------------------------------- synthetic_mec
# Virtual MEC animals (pipeline/data/synthetic_mec.py), written in the DANDI 000582 layout and
# assembled by the same loader as the real open-field sessions; truth.zarr beside the NWB files.


rule synthesize_mec:
    input:
        # a recorded trajectory to replay, when one is set: editing the file reruns the animals
        lambda wc: config["datasets"]["synthetic_mec"]["simulate"]["trajectory_file"] or [],
    output:
        directory("data/raw/synthetic_mec"),
    params:
        settings=lambda wc: config_block("datasets", "synthetic_mec", "simulate"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/synthesize_mec/synthetic_mec.log",
    shell:
        "python -m pipeline synthesize_mec {output:q} --settings {params.settings:q} 2> {log:q}"


rule assemble_synthetic_mec:
    input:
        "data/raw/synthetic_mec",
    output:
        directory("results/neural/synthetic_mec.zarr"),
    params:
        settings=lambda wc: config_block("datasets", "synthetic_mec", "assemble"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_synthetic_mec/synthetic_mec.log",
    shell:
        "python -m pipeline assemble_synthetic_mec {input:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"
