# Representational development over training (P1): per model and stimulus set the RDM of every
# layer at every checkpoint, its correlation with the category models of each hierarchy level and
# with the final RDM, the coarse-before-fine half-times with a bootstrap over stimuli, and the RSA
# similarity to every brain area recorded on the set, with noise ceilings (rule development); the
# half-times of all models in one CSV (development_summary); each model's predictivity per layer
# and scored epoch (development_predictivity); and the figures. Stimulus sets: DEVELOPMENT_SETS,
# datasets: development_datasets (common.smk); activations come from rule extract.
# Params: development.analysis reaches rule development only, figures.dpi the figures.


rule development:
    input:
        activations="results/activations/{model}/{stimulus_set}.zarr",
        stimuli="results/stimuli/{stimulus_set}.zarr",
        model="results/models/{model}",
        neural=development_neural,
    output:
        rdms="results/development/rdms/{model}/{stimulus_set}.parquet",
        trajectory="results/development/trajectory/{model}/{stimulus_set}.parquet",
        halftimes="results/development/halftimes/{model}/{stimulus_set}.parquet",
        brain="results/development/brain/{model}/{stimulus_set}.parquet",
    params:
        settings=config_block("development", "analysis"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/development/{model}/{stimulus_set}.log",
    benchmark:
        "results/benchmarks/development/{model}/{stimulus_set}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline development {input.activations:q} {input.stimuli:q}"
        " {input.model:q} --neural {input.neural:q} --model {wildcards.model}"
        " --stimulus-set {wildcards.stimulus_set} --rdms {output.rdms:q} --trajectory {output.trajectory:q}"
        " --halftimes {output.halftimes:q} --brain {output.brain:q} --settings {params.settings:q}"
        " --threads {threads} 2> {log:q}"


rule development_summary:
    input:
        expand("results/development/halftimes/{model}/{{stimulus_set}}.parquet", model=MODELS),
    output:
        "results/development/halftimes_{stimulus_set}.csv",
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/development_summary/{stimulus_set}.log",
    shell:
        "python -m pipeline development_summary {input:q} --out {output:q} 2> {log:q}"


rule development_predictivity:
    input:
        expand("results/scores/predictivity/{model}/{{dataset}}.parquet", model=MODELS),
    output:
        "results/development/predictivity_{dataset}.csv",
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/development_predictivity/{dataset}.log",
    shell:
        "python -m pipeline development_predictivity {input:q} --out {output:q} 2> {log:q}"


rule plot_development_rdms:
    input:
        rdms=expand("results/development/rdms/{model}/{{stimulus_set}}.parquet", model=MODELS),
        stimuli="results/stimuli/{stimulus_set}.zarr",
    output:
        strip=report(
            f"results/figures/development/rdms_{{stimulus_set}}.{FIG}",
            caption="../report/development_rdms.rst",
            category="Representational development",
        ),
        gif="results/figures/development/rdms_{stimulus_set}.gif",
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_development_rdms/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_development_rdms {input.rdms:q} --stimuli {input.stimuli:q}"
        " --out {output.strip:q} --gif {output.gif:q} --dpi {params.dpi} 2> {log:q}"


rule plot_development_hierarchy:
    input:
        trajectory=expand("results/development/trajectory/{model}/{{stimulus_set}}.parquet", model=MODELS),
        halftimes=expand("results/development/halftimes/{model}/{{stimulus_set}}.parquet", model=MODELS),
    output:
        report(
            f"results/figures/development/hierarchy_{{stimulus_set}}.{FIG}",
            caption="../report/development_hierarchy.rst",
            category="Representational development",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_development_hierarchy/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_development_hierarchy {input.trajectory:q}"
        " {input.halftimes:q} --out {output:q} --dpi {params.dpi} 2> {log:q}"


rule plot_development_brain:
    input:
        expand("results/development/brain/{model}/{{stimulus_set}}.parquet", model=MODELS),
    output:
        report(
            f"results/figures/development/brain_{{stimulus_set}}.{FIG}",
            caption="../report/development_brain.rst",
            category="Representational development",
        ),
    params:
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/plot_development_brain/{stimulus_set}.log",
    shell:
        "python -m pipeline plot_development_brain {input:q} --out {output:q}"
        " --dpi {params.dpi} 2> {log:q}"
