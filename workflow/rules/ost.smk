# Object solution times (spec 4.3; pipeline/compare/ost.py): per model of ost.models, the I1 d'
# of a PCA + linear SVM decoder at each time point (a recurrent model's steps, the image then
# grey; a feedforward model's IT-like layers spread over the same bins) and the first time it
# reaches the reference d' (rule ost); the reference is ost.reference.path (a CSV image_id,
# dprime[, ost_ms]) or the virtual observer on the virtual animals (rule ost_reference); the
# OST consistency of every model (rule ost_consistency) and its figure (plot_ost).
# Params: ost.reference + ost.decoder reach ost_reference, ost.presentation + ost.decoder reach
# ost, ost.consistency reaches ost_consistency, figures.dpi the figure.


rule ost_reference:
    input:
        raw=f"data/raw/{OST['reference']['dataset']}",
        stimuli=OST_STIMULI,
    output:
        "results/ost/reference.csv",
    params:
        reference=config_block("ost", "reference"),
        decoder=config_block("ost", "decoder"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/ost_reference/reference.log",
    benchmark:
        "results/benchmarks/ost_reference/reference.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline ost_reference {input.raw:q} {input.stimuli:q} {output:q}"
        " --reference {params.reference:q} --decoder {params.decoder:q} --threads {threads} 2> {log:q}"


rule ost:
    input:
        model="results/models/{model}",
        stimuli=OST_STIMULI,
        reference=OST_REFERENCE,
    output:
        dprime="results/ost/{model}/dprime.parquet",
        ost="results/ost/{model}/ost.parquet",
    params:
        presentation=config_block("ost", "presentation"),
        decoder=config_block("ost", "decoder"),
        device=config["device"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/ost/{model}.log",
    benchmark:
        "results/benchmarks/ost/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline ost {input.model:q} {input.stimuli:q} {input.reference:q}"
        " --model {wildcards.model} --dprime {output.dprime:q} --ost {output.ost:q}"
        " --presentation {params.presentation:q} --decoder {params.decoder:q}"
        " --device {params.device} --threads {threads} 2> {log:q}"


rule ost_consistency:
    input:
        expand("results/ost/{model}/ost.parquet", model=OST_MODELS),
    output:
        "results/ost/consistency.csv",
    params:
        settings=config_block("ost", "consistency"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/ost_consistency/consistency.log",
    shell:
        "python -m pipeline ost_consistency {input:q} --out {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule plot_ost:
    input:
        consistency="results/ost/consistency.csv",
        ost=expand("results/ost/{model}/ost.parquet", model=OST_MODELS),
    output:
        report(
            f"results/figures/ost.{FIG}",
            caption="../report/ost.rst",
            category="Object solution times",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_ost/ost.log",
    shell:
        "python -m pipeline plot_ost {input.consistency:q} {input.ost:q} --out {output:q}"
        " --dpi {params.dpi} 2> {log:q}"
