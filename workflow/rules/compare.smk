# Noise-corrected consistency (spec 1): the inter-animal ceiling and model -> animal predictivity.


rule interanimal:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/scores/interanimal/{dataset}.parquet",
    params:
        settings=config_block("compare"),
        dask=config_block("dask"),
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
        " --settings {params.settings:q} --dask {params.dask:q} --threads {threads} 2> {log:q}"


rule predictivity:
    input:
        activations=activations_for,
        neural="results/neural/{dataset}.zarr",
    output:
        "results/scores/predictivity/{model}/{dataset}.parquet",
    params:
        settings=config_block("compare"),
        dask=config_block("dask"),
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
        " --settings {params.settings:q} --dask {params.dask:q} --threads {threads} 2> {log:q}"


rule interanimal_curve:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/scores/interanimal_curve/{dataset}.parquet",
    params:
        settings=config_block("compare"),
        dask=config_block("dask"),
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
        " --settings {params.settings:q} --dask {params.dask:q} --threads {threads} 2> {log:q}"
