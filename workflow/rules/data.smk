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
