# Neural dynamics (spec 4.2, thesis chapter 2): scores per unit and 10-ms bin of time-resolved
# assemblies (datasets.<name>.assemble.time_bins: keep), with a map per bin and a temporally fixed
# map shared by all bins; ceilings per bin; recurrent models' steps and feedforward models'
# layers mapped onto bins; medians per bin and per phase, and their figures. Off unless
# temporal.datasets lists a dataset (configs/temporal.yaml).
#
# Params are exactly the temporal sub-blocks a rule reads: `estimator` (both scoring rules),
# `model_time` (model scores only), `phases` (the summary only).


rule temporal_interanimal:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/temporal/interanimal/{dataset}.parquet",
    params:
        estimator=config_block("temporal", "estimator"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/temporal_interanimal/{dataset}.log",
    benchmark:
        "results/benchmarks/temporal_interanimal/{dataset}.tsv"
    threads: config["dask"]["workers"]
    shell:
        "python -m pipeline temporal_interanimal {input:q} {output:q}"
        " --dataset {wildcards.dataset} --settings {params.estimator:q}"
        " --dask {DASK:q} --threads {threads} 2> {log:q}"


rule temporal_predictivity:
    input:
        activations=activations_for,
        neural="results/neural/{dataset}.zarr",
    output:
        "results/temporal/predictivity/{model}/{dataset}.parquet",
    params:
        estimator=config_block("temporal", "estimator"),
        model_time=config_block("temporal", "model_time"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/temporal_predictivity/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/temporal_predictivity/{model}/{dataset}.tsv"
    threads: config["dask"]["workers"]
    shell:
        "python -m pipeline temporal_predictivity {input.activations:q}"
        " {input.neural:q} {output:q} --model {wildcards.model} --dataset {wildcards.dataset}"
        " --settings {params.estimator:q} --time {params.model_time:q}"
        " --dask {DASK:q} --threads {threads} 2> {log:q}"


rule temporal_summary:
    input:
        interanimal="results/temporal/interanimal/{dataset}.parquet",
        predictivity=expand(
            "results/temporal/predictivity/{model}/{{dataset}}.parquet", model=TEMPORAL_MODELS
        ),
    output:
        bins="results/temporal/summary/{dataset}_bins.csv",
        phases="results/temporal/summary/{dataset}_phases.csv",
    params:
        phases=config_block("temporal", "phases"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/temporal_summary/{dataset}.log",
    shell:
        "python -m pipeline temporal_summary {input.interanimal:q}"
        " {input.predictivity:q} --bins {output.bins:q} --phases {output.phases:q}"
        " --settings {params.phases:q} 2> {log:q}"


rule plot_temporal:
    input:
        bins="results/temporal/summary/{dataset}_bins.csv",
        phases="results/temporal/summary/{dataset}_phases.csv",
    output:
        over_time=report(
            f"results/figures/temporal/predictivity_over_time_{{dataset}}.{FIG}",
            caption="../report/temporal_over_time.rst",
            category="Neural dynamics",
        ),
        phases=report(
            f"results/figures/temporal/phases_{{dataset}}.{FIG}",
            caption="../report/temporal_phases.rst",
            category="Neural dynamics",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_temporal/{dataset}.log",
    shell:
        "python -m pipeline plot_temporal {input.bins:q} {input.phases:q}"
        " --over-time {output.over_time:q} --phase-figure {output.phases:q} --dpi {params.dpi}"
        " 2> {log:q}"
