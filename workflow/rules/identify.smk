# Learning-rule identification (spec_ch5-6 part B, pipeline/identify/): a grid of training runs
# under known rule classes (identify_train: one ordinary `python -m pipeline train` job per run,
# on the `stimuli` sets or the vector task of identify_vectors), the statistics of their weights,
# activations and activity change per layer and checkpoint (observables), the classifiers and
# analyses (identify) and their figures (plot_identify_*). Off unless the config has an
# `identify` block (configs/identify.yaml). Params: identify.vectors reaches identify_vectors;
# a run's settings (identify.train, its class in identify.classes, its task in identify.tasks)
# its own identify_train job; identify.observables the observables; identify.classify identify.

from pipeline.identify.grid import RUN_PATTERN, check_grid, parse_run, run_settings

IDENTIFY = config.get("identify") or {}
IDENTIFY_TABLES = ("accuracy", "confusion", "importance")
IDENTIFY_FIGURES = ("accuracy", "confusion", "trajectory", "units", "importance")


def _identify_runs():
    """Every run of identify.grid, checked before any job runs (ConfigError naming the field)."""
    if not IDENTIFY:
        return []
    try:
        return check_grid(IDENTIFY, stimulus_size=config["stimuli"]["size"])
    except ValueError as err:
        raise ConfigError(f"config: {err}") from err


IDENTIFY_RUNS = [run.name for run in _identify_runs()]


def identify_block(*keys):
    """`config_block("identify", *keys)`, or "{}" without an `identify` block."""
    return config_block("identify", *keys) if IDENTIFY else "{}"


def identify_sets(wildcards):
    """Training and validation (test) stimulus sets of a run's task."""
    task = IDENTIFY["tasks"][parse_run(wildcards.run).task]
    if task["data"] == "vectors":
        return {split: f"results/identify/tasks/vectors_{split}.zarr" for split in ("train", "test")}
    return {split: f"results/stimuli/{config['stimuli']['name']}_{split}.zarr" for split in ("train", "test")}


def identify_model(wildcards):
    """The model a run trains, {arch}-{objective}-{learning rule}-s{init seed}."""
    return parse_run(wildcards.run).model(IDENTIFY["classes"], IDENTIFY["tasks"])


def identify_train_settings(wildcards):
    """A run's TrainSettings: identify.train with its class's and task's entries."""
    return json.dumps(run_settings(parse_run(wildcards.run), IDENTIFY), sort_keys=True)


def identify_outputs():
    """The identification tables and figures (none without an `identify` block)."""
    if not IDENTIFY:
        return []
    return [f"results/identify/{table}.parquet" for table in IDENTIFY_TABLES] + [
        f"results/figures/identify/{figure}.{FIG}" for figure in IDENTIFY_FIGURES
    ]


rule identify_vectors:
    output:
        train=directory("results/identify/tasks/vectors_train.zarr"),
        test=directory("results/identify/tasks/vectors_test.zarr"),
    params:
        settings=identify_block("vectors"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/identify_vectors/vectors.log",
    shell:
        "python -m pipeline identify_vectors --out-dir results/identify/tasks"
        " --settings {params.settings:q} 2> {log:q}"


rule identify_train:
    input:
        unpack(identify_sets),
    output:
        directory("results/identify/runs/{run}"),
    params:
        model=identify_model,
        settings=identify_train_settings,
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/identify_train/{run}.log",
    benchmark:
        "results/benchmarks/identify_train/{run}.tsv"
    wildcard_constraints:
        run=RUN_PATTERN,
    # one thread: the grid's small networks run side by side better than one on two threads
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline train {params.model} {input.train:q} {input.test:q} {output:q}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} 2> {log:q}"


rule observables:
    input:
        run="results/identify/runs/{run}",
        stimuli=lambda wildcards: identify_sets(wildcards)["test"],
    output:
        "results/identify/observables/{run}.parquet",
    params:
        settings=identify_block("observables"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/observables/{run}.log",
    benchmark:
        "results/benchmarks/observables/{run}.tsv"
    wildcard_constraints:
        run=RUN_PATTERN,
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline observables {input.run:q} {input.stimuli:q} {output:q}"
        " --run {wildcards.run} --settings {params.settings:q} --device {params.device}"
        " --threads {threads} 2> {log:q}"


rule identify:
    input:
        expand("results/identify/observables/{run}.parquet", run=IDENTIFY_RUNS),
    output:
        accuracy="results/identify/accuracy.parquet",
        confusion="results/identify/confusion.parquet",
        importance="results/identify/importance.parquet",
    params:
        settings=identify_block("classify"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/identify/identify.log",
    benchmark:
        "results/benchmarks/identify/identify.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline identify {input:q} --accuracy {output.accuracy:q}"
        " --confusion {output.confusion:q} --importance {output.importance:q}"
        " --settings {params.settings:q} --threads {threads} 2> {log:q}"


rule plot_identify_accuracy:
    input:
        "results/identify/accuracy.parquet",
    output:
        report(
            f"results/figures/identify/accuracy.{FIG}",
            caption="../report/identify_accuracy.rst",
            category="Learning-rule identification",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_identify_accuracy/identify.log",
    # the verb is the rule's name, so the rules below reuse this line
    shell:
        "python -m pipeline {rule} {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


use rule plot_identify_accuracy as plot_identify_trajectory with:
    output:
        report(
            f"results/figures/identify/trajectory.{FIG}",
            caption="../report/identify_trajectory.rst",
            category="Learning-rule identification",
        ),
    log:
        "logs/plot_identify_trajectory/identify.log",


use rule plot_identify_accuracy as plot_identify_units with:
    output:
        report(
            f"results/figures/identify/units.{FIG}",
            caption="../report/identify_units.rst",
            category="Learning-rule identification",
        ),
    log:
        "logs/plot_identify_units/identify.log",


use rule plot_identify_accuracy as plot_identify_confusion with:
    input:
        "results/identify/confusion.parquet",
    output:
        report(
            f"results/figures/identify/confusion.{FIG}",
            caption="../report/identify_confusion.rst",
            category="Learning-rule identification",
        ),
    log:
        "logs/plot_identify_confusion/identify.log",


use rule plot_identify_accuracy as plot_identify_importance with:
    input:
        "results/identify/importance.parquet",
    output:
        report(
            f"results/figures/identify/importance.{FIG}",
            caption="../report/identify_importance.rst",
            category="Learning-rule identification",
        ),
    log:
        "logs/plot_identify_importance/identify.log",
