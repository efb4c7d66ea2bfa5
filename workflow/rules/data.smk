# Stimulus sets, virtual animals written as Allen-layout NWB, and NWB -> NeuralAssembly.


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


rule synthesize_ecephys:
    input:
        probe=lambda wc: f"results/stimuli/{stimulus_set_of(wc.dataset)}.zarr",
    output:
        directory("data/raw/{dataset}"),
    params:
        settings=lambda wc: config_block("datasets", wc.dataset),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/synthesize_ecephys/{dataset}.log",
    wildcard_constraints:
        dataset="synthetic_[a-z0-9_]+",
    shell:
        "python -m pipeline synthesize_ecephys {input.probe:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_ecephys:
    input:
        raw="data/raw/{dataset}",
        stimuli=lambda wc: f"results/stimuli/{stimulus_set_of(wc.dataset)}.zarr",
    output:
        directory("results/neural/{dataset}.zarr"),
    params:
        settings=lambda wc: config_block("datasets", wc.dataset),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_ecephys/{dataset}.log",
    wildcard_constraints:
        dataset="synthetic_[a-z0-9_]+",
    shell:
        "python -m pipeline assemble_ecephys {input.raw:q} {input.stimuli:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


def source_settings(dataset, *keys):
    """The named keys of one dataset block, as canonical JSON (editing another key reruns nothing here)."""
    return json.dumps({k: config["datasets"][dataset][k] for k in keys}, sort_keys=True)


rule assemble_majajhong2015:
    input:
        "data/raw/majajhong2015/manifest.json",
    output:
        directory("results/neural/majajhong2015.zarr"),
    params:
        settings=lambda wc: source_settings(
            "majajhong2015", "areas", "window", "time_bins", "variations", "reliability_boot", "seed"
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_majajhong2015/majajhong2015.log",
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline assemble_majajhong2015 {input:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule majajhong2015_stimuli:
    input:
        "data/raw/majajhong2015/manifest.json",
    output:
        directory("results/stimuli/majajhong2015_hvm.zarr"),
    params:
        settings=lambda wc: source_settings("majajhong2015", "stimulus_size", "labels"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/majajhong2015_stimuli/majajhong2015.log",
    shell:
        "python -m pipeline majajhong2015_stimuli {input:q} {output:q} --name majajhong2015_hvm"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_horikawa2017:
    input:
        "data/raw/horikawa2017/manifest.json",
    output:
        directory("results/neural/horikawa2017.zarr"),
    params:
        settings=lambda wc: source_settings("horikawa2017", "rois", "data_type", "reliability_boot", "seed"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_horikawa2017/horikawa2017.log",
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline assemble_horikawa2017 {input:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


# Only when the config's `images` names a folder with the ImageNet stimuli (not distributed).
rule horikawa2017_stimuli:
    input:
        neural="results/neural/horikawa2017.zarr",
        images=lambda wc: config["datasets"]["horikawa2017"]["images"] or [],
    output:
        directory("results/stimuli/horikawa2017_images.zarr"),
    params:
        settings=lambda wc: source_settings("horikawa2017", "images", "stimulus_size"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/horikawa2017_stimuli/horikawa2017.log",
    shell:
        "python -m pipeline horikawa2017_stimuli {input.neural:q} {output:q}"
        " --name horikawa2017_images --settings {params.settings:q} 2> {log:q}"


rule assemble_mec:
    input:
        "data/raw/mec/manifest.json",
    output:
        directory("results/neural/mec.zarr"),
    params:
        settings=lambda wc: json.dumps(
            {
                k: v
                for k, v in config["datasets"]["mec"].items()
                if k not in ("api_url", "dandisets", "retries", "backoff", "timeout")
            },
            sort_keys=True,
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_mec/mec.log",
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline assemble_mec {input:q} {output:q} --settings {params.settings:q}"
        " 2> {log:q}"
