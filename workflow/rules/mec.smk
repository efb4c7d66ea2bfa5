# Medial entorhinal cortex (spec 3): which path integrator matches MEC.
#
#   train_mec -> mec_ratemaps (model units on each dataset's 5-cm bins) -> mec_predictivity
#   mec_control (place cells, NMF, velocity)  ----------------------------^
#   mec_interanimal (the ceiling), mec_scores / mec_data_scores -> mec_ks, mec_decoding,
#   mec_knockouts, and the MEC figures.
#
# Models live under results/mec/ (not results/models/): they are trained on trajectories, not
# images, so the image rules (train, extract, predictivity) never see them. Each rule's params
# are exactly the config blocks (mec.*) that can change its output. Lists and output
# functions are in common.smk ("MEC" section).


rule train_mec:
    output:
        directory("results/mec/models/{model}"),
    params:
        settings=mec_train_settings,
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/train_mec/{model}.log",
    benchmark:
        "results/benchmarks/train_mec/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline train_mec {wildcards.model} {output:q} --settings {params.settings:q}"
        " --device {params.device} --threads {threads} 2> {log:q}"


rule mec_ratemaps:
    input:
        model="results/mec/models/{model}",
        neural="results/neural/{dataset}.zarr",
    output:
        directory("results/mec/ratemaps/{model}/{dataset}.zarr"),
    params:
        settings=mec_block("ratemaps"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_ratemaps/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/mec_ratemaps/{model}/{dataset}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline mec_ratemaps {input.model:q} {input.neural:q} {output:q}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} 2> {log:q}"


rule mec_control:
    input:
        "results/neural/{dataset}.zarr",
    output:
        directory("results/mec/ratemaps/{control}/{dataset}.zarr"),
    wildcard_constraints:
        control=MEC_CONTROL_PATTERN,
    params:
        place_cells=mec_place_cell_settings(),
        ratemaps=mec_block("ratemaps"),
        controls=mec_block("controls"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_control/{control}/{dataset}.log",
    benchmark:
        "results/benchmarks/mec_control/{control}/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline mec_control {wildcards.control} {input:q} {output:q}"
        " --place-cells {params.place_cells:q} --ratemaps {params.ratemaps:q}"
        " --controls {params.controls:q} --threads {threads} 2> {log:q}"


rule mec_interanimal:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/mec/interanimal/{dataset}.parquet",
    params:
        settings=mec_block("compare"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_interanimal/{dataset}.log",
    benchmark:
        "results/benchmarks/mec_interanimal/{dataset}.tsv"
    threads: config["dask"]["workers"]
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline mec_interanimal {input:q} {output:q} --dataset {wildcards.dataset}"
        " --settings {params.settings:q} --threads {threads} 2> {log:q}"


rule mec_predictivity:
    input:
        ratemaps="results/mec/ratemaps/{source}/{dataset}.zarr",
        neural="results/neural/{dataset}.zarr",
    output:
        "results/mec/predictivity/{source}/{dataset}.parquet",
    wildcard_constraints:
        source=MEC_SOURCE_PATTERN,
    params:
        settings=mec_block("compare"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_predictivity/{source}/{dataset}.log",
    benchmark:
        "results/benchmarks/mec_predictivity/{source}/{dataset}.tsv"
    threads: config["dask"]["workers"]
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline mec_predictivity {input.ratemaps:q} {input.neural:q} {output:q}"
        " --source {wildcards.source} --dataset {wildcards.dataset}"
        " --settings {params.settings:q} --threads {threads} 2> {log:q}"


rule mec_scores:
    input:
        "results/mec/ratemaps/{source}/{dataset}.zarr",
    output:
        "results/mec/scores/{source}/{dataset}.parquet",
    wildcard_constraints:
        source=MEC_SOURCE_PATTERN,
    params:
        settings=mec_block("scores"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_scores/{source}/{dataset}.log",
    threads: 1
    shell:
        "python -m pipeline mec_scores {input:q} {output:q} --source {wildcards.source}"
        " --dataset {wildcards.dataset} --settings {params.settings:q} --threads {threads}"
        " 2> {log:q}"


rule mec_data_scores:
    input:
        "results/neural/{dataset}.zarr",
    output:
        "results/mec/data_scores/{dataset}.parquet",
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_data_scores/{dataset}.log",
    threads: 1
    shell:
        "python -m pipeline mec_data_scores {input:q} {output:q} --dataset {wildcards.dataset}"
        " --threads {threads} 2> {log:q}"


rule mec_ks:
    input:
        data="results/mec/data_scores/{dataset}.parquet",
        models=lambda wildcards: expand(
            "results/mec/scores/{source}/{dataset}.parquet",
            source=MEC_SOURCES,
            dataset=wildcards.dataset,
        ),
    output:
        "results/mec/ks/{dataset}.parquet",
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_ks/{dataset}.log",
    shell:
        "python -m pipeline mec_ks {input.data:q} {input.models:q} --out {output:q}"
        " --dataset {wildcards.dataset} 2> {log:q}"


rule mec_decoding:
    input:
        "results/mec/models/{model}",
    output:
        "results/mec/decoding/{model}.parquet",
    params:
        settings=mec_block("decoding"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_decoding/{model}.log",
    threads: 2
    shell:
        "python -m pipeline mec_decoding {input:q} {output:q} --settings {params.settings:q}"
        " --device {params.device} --threads {threads} 2> {log:q}"


rule mec_knockouts:
    input:
        model="results/mec/models/{model}",
        scores="results/mec/scores/{model}/{dataset}.parquet",
    output:
        "results/mec/knockouts/{model}/{dataset}.parquet",
    params:
        settings=mec_block("knockouts", "settings"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/mec_knockouts/{model}/{dataset}.log",
    threads: 2
    shell:
        "python -m pipeline mec_knockouts {input.model:q} {input.scores:q} {output:q}"
        " --dataset {wildcards.dataset} --settings {params.settings:q}"
        " --device {params.device} --threads {threads} 2> {log:q}"


# ---------------------------------------------------------------- figures (pipeline.figures.mec)


rule plot_mec_predictivity:
    input:
        interanimal="results/mec/interanimal/{dataset}.parquet",
        predictivity=lambda wildcards: expand(
            "results/mec/predictivity/{source}/{dataset}.parquet",
            source=MEC_SOURCES,
            dataset=wildcards.dataset,
        ),
    output:
        report(
            f"results/figures/mec/predictivity_{{dataset}}.{FIG}",
            caption="../report/mec_predictivity.rst",
            category="MEC",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_mec_predictivity/{dataset}.log",
    shell:
        "python -m pipeline plot_mec_predictivity {input.interanimal:q} {input.predictivity:q}"
        " --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_mec_score_distributions:
    input:
        data="results/mec/data_scores/{dataset}.parquet",
        models=lambda wildcards: expand(
            "results/mec/scores/{source}/{dataset}.parquet",
            source=MEC_SOURCES,
            dataset=wildcards.dataset,
        ),
    output:
        report(
            f"results/figures/mec/score_distributions_{{dataset}}.{FIG}",
            caption="../report/mec_score_distributions.rst",
            category="MEC",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_mec_score_distributions/{dataset}.log",
    shell:
        "python -m pipeline plot_mec_score_distributions {input.data:q} {input.models:q}"
        " --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_mec_ratemaps:
    input:
        neural="results/neural/{dataset}.zarr",
        ratemaps="results/mec/ratemaps/{model}/{dataset}.zarr",
        data_scores="results/mec/data_scores/{dataset}.parquet",
        model_scores="results/mec/scores/{model}/{dataset}.parquet",
    output:
        report(
            f"results/figures/mec/ratemaps/{{model}}/{{dataset}}.{FIG}",
            caption="../report/mec_ratemaps.rst",
            category="MEC",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_mec_ratemaps/{model}/{dataset}.log",
    shell:
        "python -m pipeline plot_mec_ratemaps {input.neural:q} {input.ratemaps:q}"
        " {input.data_scores:q} {input.model_scores:q} --out {output:q} --dpi {params.dpi}"
        " 2> {log:q}"


rule plot_mec_knockouts:
    input:
        lambda wildcards: expand(
            "results/mec/knockouts/{model}/{dataset}.parquet",
            model=MEC_KNOCKOUT_MODELS,
            dataset=wildcards.dataset,
        ),
    output:
        report(
            f"results/figures/mec/knockouts_{{dataset}}.{FIG}",
            caption="../report/mec_knockouts.rst",
            category="MEC",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_mec_knockouts/{dataset}.log",
    shell:
        "python -m pipeline plot_mec_knockouts {input:q} --out {output:q} --dpi {params.dpi}"
        " 2> {log:q}"


rule plot_mec_decoding_vs_predictivity:
    input:
        decoding=expand("results/mec/decoding/{model}.parquet", model=MEC_MODELS),
        predictivity=lambda wildcards: expand(
            "results/mec/predictivity/{model}/{dataset}.parquet",
            model=MEC_MODELS,
            dataset=wildcards.dataset,
        ),
    output:
        report(
            f"results/figures/mec/decoding_vs_predictivity_{{dataset}}.{FIG}",
            caption="../report/mec_decoding_vs_predictivity.rst",
            category="MEC",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_mec_decoding_vs_predictivity/{dataset}.log",
    shell:
        "python -m pipeline plot_mec_decoding_vs_predictivity {input.decoding:q}"
        " {input.predictivity:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"
