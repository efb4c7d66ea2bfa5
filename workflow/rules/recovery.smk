# Model recovery: on every virtual dataset whose generator is a trained model
# (RECOVERY_DATASETS, common.smk), does each mapping rank the generator's class first, and is
# its best layer at the generator's depth? Then the matrix over generators, its figures, and the
# summary page the HTML report opens with. Params: recovery.analysis only; the candidates'
# predictivity tables come from rule predictivity (activations extracted once per model, on the
# probe set every virtual dataset shares).


rule recovery:
    input:
        raw="data/raw/{dataset}",
        predictivity=expand(
            "results/scores/predictivity/{model}/{{dataset}}.parquet", model=MODELS
        ),
    output:
        table=report(
            "results/recovery/{dataset}/recovery.csv",
            caption="../report/recovery.rst",
            category="Recovery",
        ),
        classes="results/recovery/{dataset}/classes.csv",
        depth="results/recovery/{dataset}/depth.csv",
    params:
        settings=config_block("recovery", "analysis"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/recovery/{dataset}.log",
    shell:
        "python -m pipeline recovery {input.raw:q} {input.predictivity:q} --dataset {wildcards.dataset}"
        " --table {output.table:q} --classes {output.classes:q} --depth {output.depth:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule recovery_matrix:
    input:
        expand("results/recovery/{dataset}/classes.csv", dataset=RECOVERY_DATASETS),
    output:
        report(
            "results/recovery/matrix.csv",
            caption="../report/recovery_matrix.rst",
            category="Recovery",
        ),
    params:
        settings=config_block("recovery", "analysis"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/recovery_matrix/recovery_matrix.log",
    shell:
        "python -m pipeline recovery_matrix {input:q} --out {output:q} --settings {params.settings:q}"
        " 2> {log:q}"


rule recovery_summary:
    input:
        tables=expand("results/recovery/{dataset}/recovery.csv", dataset=RECOVERY_DATASETS),
        matrix="results/recovery/matrix.csv",
    output:
        "results/recovery/summary.rst",
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/recovery_summary/recovery_summary.log",
    shell:
        "python -m pipeline recovery_summary {input.tables:q} --matrix {input.matrix:q} --out {output:q}"
        " 2> {log:q}"


rule plot_recovery_matrix:
    input:
        "results/recovery/matrix.csv",
    output:
        report(
            f"results/figures/recovery_matrix.{FIG}",
            caption="../report/recovery_matrix.rst",
            category="Recovery",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_recovery_matrix/recovery_matrix.log",
    shell:
        "python -m pipeline plot_recovery_matrix {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_recovery_margin:
    input:
        "results/recovery/{dataset}/recovery.csv",
    output:
        report(
            f"results/figures/recovery_margin_{{dataset}}.{FIG}",
            caption="../report/recovery_margin.rst",
            category="Recovery",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_recovery_margin/{dataset}.log",
    shell:
        "python -m pipeline plot_recovery_margin {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_layer_area:
    input:
        "results/recovery/{dataset}/depth.csv",
    output:
        report(
            f"results/figures/layer_area_{{dataset}}.{FIG}",
            caption="../report/layer_area.rst",
            category="Recovery",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_layer_area/{dataset}.log",
    shell:
        "python -m pipeline plot_layer_area {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


# The report opens with the recovery summary when the run has one (the report run parses this
# file after the summary was written; a run without a model generator keeps Snakemake's default).
if RECOVERY_DATASETS and Path("results/recovery/summary.rst").exists():
    workflow.report(str(Path("results/recovery/summary.rst").resolve()))
