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


rule simulate_synthetic_mouse:
    input:
        probe=lambda wc: f"results/stimuli/{stimulus_set_of('synthetic_mouse')}.zarr",
    output:
        directory("data/raw/synthetic_mouse"),
    params:
        settings=lambda wc: config_block("datasets", "synthetic_mouse", "simulate"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/simulate_synthetic_mouse/synthetic_mouse.log",
    shell:
        "python -m pipeline simulate_synthetic_mouse {input.probe:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_synthetic_mouse:
    input:
        raw="data/raw/synthetic_mouse",
        stimuli=lambda wc: f"results/stimuli/{stimulus_set_of('synthetic_mouse')}.zarr",
    output:
        directory("results/neural/synthetic_mouse.zarr"),
    params:
        settings=lambda wc: config_block("datasets", "synthetic_mouse", "assemble"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_synthetic_mouse/synthetic_mouse.log",
    shell:
        "python -m pipeline assemble_synthetic_mouse {input.raw:q} {input.stimuli:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


# ---------------------------------------------------------------- allen_neuropixels


rule download_allen_neuropixels:
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        settings=lambda wc: config_block("datasets", wc.dataset, "download"),
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
