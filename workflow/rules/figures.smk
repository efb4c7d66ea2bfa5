# Figures: one rule per figure, named plot_<output>, each a call of the library function of the
# same name (pipeline/figures/); figures only read tables. Each is attached to
# `snakemake --report` with the caption workflow/report/<output>.rst. Only figures.dpi reaches
# them as a param; figures.format is the outputs' suffix.


rule plot_learning_curves:
    input:
        expand("results/models/{model}", model=MODELS),
    output:
        report(
            f"results/figures/learning_curves.{FIG}",
            caption="../report/learning_curves.rst",
            category="Training",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_learning_curves/learning_curves.log",
    shell:
        "python -m pipeline plot_learning_curves {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_alignment:
    input:
        expand("results/models/{model}", model=MODELS),
    output:
        report(
            f"results/figures/alignment.{FIG}",
            caption="../report/alignment.rst",
            category="Training",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_alignment/alignment.log",
    shell:
        "python -m pipeline plot_alignment {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_predictivity:
    input:
        interanimal="results/scores/interanimal/{dataset}.parquet",
        predictivity=expand(
            "results/scores/predictivity/{model}/{{dataset}}.parquet", model=MODELS
        ),
    output:
        report(
            f"results/figures/predictivity_{{dataset}}.{FIG}",
            caption="../report/predictivity.rst",
            category="Predictivity",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_predictivity/{dataset}.log",
    shell:
        "python -m pipeline plot_predictivity {input.interanimal:q} {input.predictivity:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_predictivity_by_rule:
    input:
        "results/scores/summary/{dataset}.csv",
    output:
        report(
            f"results/figures/predictivity_by_rule_{{dataset}}.{FIG}",
            caption="../report/predictivity_by_rule.rst",
            category="Predictivity",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_predictivity_by_rule/{dataset}.log",
    shell:
        "python -m pipeline plot_predictivity_by_rule {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_predictivity_by_model:
    input:
        "results/scores/summary/{dataset}.csv",
    output:
        report(
            f"results/figures/predictivity_by_model_{{dataset}}.{FIG}",
            caption="../report/predictivity_by_model.rst",
            category="Predictivity",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_predictivity_by_model/{dataset}.log",
    shell:
        "python -m pipeline plot_predictivity_by_model {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_performance_vs_predictivity:
    input:
        summary="results/scores/summary/{dataset}.csv",
        transfer=expand("results/transfer/{model}.csv", model=MODELS),
    output:
        report(
            f"results/figures/performance_vs_predictivity_{{dataset}}.{FIG}",
            caption="../report/performance_vs_predictivity.rst",
            category="Predictivity",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_performance_vs_predictivity/{dataset}.log",
    shell:
        "python -m pipeline plot_performance_vs_predictivity {input.summary:q} {input.transfer:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_interanimal_curve:
    input:
        "results/scores/interanimal_curve/{dataset}.parquet",
    output:
        report(
            f"results/figures/interanimal_curve_{{dataset}}.{FIG}",
            caption="../report/interanimal_curve.rst",
            category="Predictivity",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_interanimal_curve/{dataset}.log",
    shell:
        "python -m pipeline plot_interanimal_curve {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_rdms:
    input:
        neural="results/neural/{dataset}.zarr",
        activations=activations_for,
        stimuli=lambda wc: f"results/stimuli/{stimulus_set_of(wc.dataset)}.zarr",
    output:
        report(
            f"results/figures/rdms/{{model}}/{{dataset}}.{FIG}",
            caption="../report/rdms.rst",
            category="RDMs",
            subcategory="{model}",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_rdms/{model}/{dataset}.log",
    shell:
        "python -m pipeline plot_rdms {input.neural:q} {input.activations:q} {input.stimuli:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"
