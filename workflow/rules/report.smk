# Figures; each is attached to `snakemake --report` with a caption from workflow/report/.


rule learning_curves:
    input:
        expand("results/models/{model}", model=MODELS),
    output:
        report(
            f"results/figures/learning_curves.{FIG}",
            caption="../report/learning_curves.rst",
            category="Training",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/learning_curves/learning_curves.log",
    shell:
        "python -m pipeline learning_curves {input:q} --out {output:q}"
        " --style {params.style:q} 2> {log:q}"


rule predictivity_figure:
    input:
        interanimal="results/scores/interanimal/{dataset}.parquet",
        predictivity=expand(
            "results/scores/predictivity/{model}/{{dataset}}.parquet", model=MODELS
        ),
    output:
        figure=report(
            f"results/figures/predictivity_{{dataset}}.{FIG}",
            caption="../report/predictivity.rst",
            category="Predictivity",
        ),
        summary=report(
            "results/scores/summary/{dataset}.csv",
            caption="../report/summary.rst",
            category="Predictivity",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/predictivity_figure/{dataset}.log",
    shell:
        "python -m pipeline predictivity_figure {input.interanimal:q} {input.predictivity:q}"
        " --out {output.figure:q} --summary {output.summary:q} --style {params.style:q} 2> {log:q}"


rule rdm_figure:
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
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/rdm_figure/{model}/{dataset}.log",
    shell:
        "python -m pipeline rdm_figure {input.neural:q} {input.activations:q} {input.stimuli:q}"
        " --out {output:q} --style {params.style:q} 2> {log:q}"


rule alignment_figure:
    input:
        expand("results/models/{model}", model=MODELS),
    output:
        report(
            f"results/figures/alignment.{FIG}",
            caption="../report/alignment.rst",
            category="Training",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/alignment_figure/alignment.log",
    shell:
        "python -m pipeline alignment_figure {input:q} --out {output:q}"
        " --style {params.style:q} 2> {log:q}"


rule rule_figure:
    input:
        "results/scores/summary/{dataset}.csv",
    output:
        report(
            f"results/figures/predictivity_by_rule_{{dataset}}.{FIG}",
            caption="../report/predictivity_by_rule.rst",
            category="Predictivity",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/rule_figure/{dataset}.log",
    shell:
        "python -m pipeline rule_figure {input:q} --out {output:q} --style {params.style:q} 2> {log:q}"


rule model_figure:
    input:
        "results/scores/summary/{dataset}.csv",
    output:
        report(
            f"results/figures/predictivity_by_model_{{dataset}}.{FIG}",
            caption="../report/predictivity_by_model.rst",
            category="Predictivity",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/model_figure/{dataset}.log",
    shell:
        "python -m pipeline model_figure {input:q} --out {output:q} --style {params.style:q} 2> {log:q}"


rule performance_figure:
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
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/performance_figure/{dataset}.log",
    shell:
        "python -m pipeline performance_figure {input.summary:q} {input.transfer:q}"
        " --out {output:q} --style {params.style:q} 2> {log:q}"


rule curve_figure:
    input:
        "results/scores/interanimal_curve/{dataset}.parquet",
    output:
        report(
            f"results/figures/interanimal_curve_{{dataset}}.{FIG}",
            caption="../report/interanimal_curve.rst",
            category="Predictivity",
        ),
    params:
        style=config_block("figures"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/curve_figure/{dataset}.log",
    shell:
        "python -m pipeline curve_figure {input:q} --out {output:q} --style {params.style:q} 2> {log:q}"
