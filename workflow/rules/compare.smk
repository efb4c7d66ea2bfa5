# Noise-corrected consistency (spec 1): the inter-animal ceiling, its curve over the number of
# stimuli, model -> animal predictivity, and the per-dataset summary table.
#
# Each rule's params are exactly the config blocks that can change its output
# (compare.common plus its own block). The dask block only says how to run, so it reaches the
# command line (DASK, common.smk) without being a param: editing it reruns nothing.


rule interanimal:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/scores/interanimal/{dataset}.parquet",
    params:
        common=config_block("compare", "common"),
        interanimal=config_block("compare", "interanimal"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/interanimal/{dataset}.log",
    benchmark:
        "results/benchmarks/interanimal/{dataset}.tsv"
    threads: config["dask"]["workers"]
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline interanimal {input:q} {output:q} --dataset {wildcards.dataset}"
        " --settings {params.common:q} --settings {params.interanimal:q}"
        " --dask {DASK:q} --threads {threads} 2> {log:q}"


rule interanimal_curve:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/scores/interanimal_curve/{dataset}.parquet",
    params:
        common=config_block("compare", "common"),
        interanimal=config_block("compare", "interanimal"),
        curve=config_block("compare", "curve"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/interanimal_curve/{dataset}.log",
    benchmark:
        "results/benchmarks/interanimal_curve/{dataset}.tsv"
    threads: config["dask"]["workers"]
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline interanimal_curve {input:q} {output:q} --dataset {wildcards.dataset}"
        " --settings {params.common:q} --settings {params.interanimal:q}"
        " --settings {params.curve:q} --dask {DASK:q} --threads {threads} 2> {log:q}"


rule predictivity:
    input:
        activations=activations_for,
        neural="results/neural/{dataset}.zarr",
    output:
        "results/scores/predictivity/{model}/{dataset}.parquet",
    params:
        common=config_block("compare", "common"),
        predictivity=config_block("compare", "predictivity"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/predictivity/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/predictivity/{model}/{dataset}.tsv"
    threads: config["dask"]["workers"]
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline predictivity {input.activations:q} {input.neural:q} {output:q}"
        " --model {wildcards.model} --dataset {wildcards.dataset}"
        " --settings {params.common:q} --settings {params.predictivity:q}"
        " --dask {DASK:q} --threads {threads} 2> {log:q}"


rule summarize:
    input:
        interanimal="results/scores/interanimal/{dataset}.parquet",
        predictivity=expand(
            "results/scores/predictivity/{model}/{{dataset}}.parquet", model=MODELS
        ),
    output:
        report(
            "results/scores/summary/{dataset}.csv",
            caption="../report/summary.rst",
            category="Predictivity",
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/summarize/{dataset}.log",
    shell:
        "python -m pipeline summarize {input.interanimal:q} {input.predictivity:q}"
        " --out {output:q} 2> {log:q}"
