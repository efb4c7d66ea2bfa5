# One training run per model name {arch}-{objective}-{rule}-s{seed}; a checkpoint per epoch, or
# every models.train.checkpoint_every epochs (epoch 0 and the last always).

# How training runs (models.train.loader, models.train.deterministic), never what it computes:
# it reaches the command line as a global, not as a param, so editing it retrains nothing.
TRAIN_EXECUTION_KEYS = ("loader", "deterministic")
TRAIN_EXECUTION = json.dumps(
    {key: config["models"]["train"][key] for key in TRAIN_EXECUTION_KEYS}, sort_keys=True
)


def train_params(wildcards):
    """The model's training settings (train_settings) without the execution keys, and without
    checkpoint_every at its default 1, so runs trained before the setting are not retrained."""
    settings = json.loads(train_settings(wildcards))
    for key in TRAIN_EXECUTION_KEYS:
        settings.pop(key, None)
    if settings.get("checkpoint_every") == 1:
        del settings["checkpoint_every"]
    return json.dumps(settings, sort_keys=True)


# A job stopped by SIGTERM/SIGUSR1 (a SLURM time limit or preemption) saves a mid-epoch
# checkpoint outside its output and exits 75; the resubmitted job continues from it
# (profiles/slurm: preemptible-rules). `exec` hands the signal straight to python.
rule train:
    input:
        train=f"results/stimuli/{config['stimuli']['name']}_train.zarr",
        test=f"results/stimuli/{config['stimuli']['name']}_test.zarr",
    output:
        directory("results/models/{model}"),
    params:
        settings=train_params,
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
        "exec python -m pipeline train {wildcards.model} {input.train:q} {input.test:q} {output:q}"
        " --settings {params.settings:q} --execution {TRAIN_EXECUTION:q} --device {params.device}"
        " --threads {threads} 2> {log:q}"


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
