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


# Linear-evaluation transfer (spec 2.4): a logistic regression on the frozen penultimate
# features of the checkpoints in models.transfer.epochs (the final one by default). The table
# sits beside, not inside, results/models/{model}: that folder is the train rule's output.
rule transfer:
    input:
        model="results/models/{model}",
        train=f"results/stimuli/{config['stimuli']['name']}_train.zarr",
        test=f"results/stimuli/{config['stimuli']['name']}_test.zarr",
    output:
        "results/transfer/{model}.csv",
    params:
        settings=config_block("models", "transfer"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/transfer/{model}.log",
    benchmark:
        "results/benchmarks/transfer/{model}.tsv"
    # one thread: the lbfgs fit is small, and two BLAS threads on shared cores ran 10x slower
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline transfer {input.model:q} {input.train:q} {input.test:q} {output:q}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} 2> {log:q}"
