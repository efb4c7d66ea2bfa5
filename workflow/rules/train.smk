# One training run per model name {arch}-{objective}-{rule}-s{seed}; a checkpoint per epoch.


rule train:
    input:
        train=f"results/stimuli/{config['stimuli']['name']}_train.zarr",
        test=f"results/stimuli/{config['stimuli']['name']}_test.zarr",
    output:
        directory("results/models/{model}"),
    params:
        settings=train_settings,
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline train {wildcards.model} {input.train:q} {input.test:q} {output:q}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} 2> {log:q}"
