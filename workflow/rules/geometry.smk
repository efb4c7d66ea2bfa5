# Representational geometry (P3): per model, layer and epoch the participation ratio, PCA
# spectrum, components for a variance share and linear-probe accuracy (rule geometry); per
# stimulus set, the learning rule x learning rule similarity of layer RDMs with a bootstrap over
# stimuli (rule rule_similarity); and their figures. The stimulus sets are those of
# geometry.stimulus_sets (GEOMETRY_SETS, common.smk); activations come from rule extract.
# Params: geometry.analysis reaches rule geometry only, geometry.rule_similarity rule
# rule_similarity only, figures.dpi the figures.


rule geometry:
    input:
        activations="results/activations/{model}/{stimulus_set}.zarr",
        stimuli="results/stimuli/{stimulus_set}.zarr",
    output:
        layers="results/geometry/layers/{model}/{stimulus_set}.parquet",
        spectrum="results/geometry/spectrum/{model}/{stimulus_set}.parquet",
    params:
        settings=config_block("geometry", "analysis"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/geometry/{model}/{stimulus_set}.log",
    benchmark:
        "results/benchmarks/geometry/{model}/{stimulus_set}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline geometry {input.activations:q} {input.stimuli:q} --model {wildcards.model}"
        " --stimulus-set {wildcards.stimulus_set} --layers {output.layers:q} --spectrum {output.spectrum:q}"
        " --settings {params.settings:q} --threads {threads} 2> {log:q}"


rule rule_similarity:
    input:
        expand("results/activations/{model}/{{stimulus_set}}.zarr", model=MODELS),
    output:
        "results/geometry/rule_similarity/{stimulus_set}.parquet",
    params:
        settings=config_block("geometry", "rule_similarity"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/rule_similarity/{stimulus_set}.log",
    benchmark:
        "results/benchmarks/rule_similarity/{stimulus_set}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline rule_similarity {input:q} --stimulus-set {wildcards.stimulus_set}"
        " --out {output:q} --settings {params.settings:q} --threads {threads} 2> {log:q}"


rule plot_geometry:
    input:
        layers=expand("results/geometry/layers/{model}/{{stimulus_set}}.parquet", model=MODELS),
        spectrum=expand("results/geometry/spectrum/{model}/{{stimulus_set}}.parquet", model=MODELS),
    output:
        report(
            f"results/figures/geometry_{{stimulus_set}}.{FIG}",
            caption="../report/geometry.rst",
            category="Geometry",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_geometry/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_geometry {input.layers:q} {input.spectrum:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_probe_accuracy:
    input:
        expand("results/geometry/layers/{model}/{{stimulus_set}}.parquet", model=MODELS),
    output:
        report(
            f"results/figures/probe_accuracy_{{stimulus_set}}.{FIG}",
            caption="../report/probe_accuracy.rst",
            category="Geometry",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_probe_accuracy/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_probe_accuracy {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_rule_similarity:
    input:
        "results/geometry/rule_similarity/{stimulus_set}.parquet",
    output:
        report(
            f"results/figures/rule_similarity_{{stimulus_set}}.{FIG}",
            caption="../report/rule_similarity.rst",
            category="Geometry",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_rule_similarity/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_rule_similarity {input:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"
