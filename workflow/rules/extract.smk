# Activations of every layer at every epoch on a stimulus set.


rule extract:
    input:
        model="results/models/{model}",
        stimuli="results/stimuli/{stimulus_set}.zarr",
    output:
        directory("results/activations/{model}/{stimulus_set}.zarr"),
    params:
        device=config["device"],
        pool=("" if config["models"]["extract"]["spatial_pool"] is None
              else f"--spatial-pool {config['models']['extract']['spatial_pool']}"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/extract/{model}/{stimulus_set}.log",
    benchmark:
        "results/benchmarks/extract/{model}/{stimulus_set}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline extract {input.model:q} {input.stimuli:q} {output:q}"
        " --device {params.device} --threads {threads} {params.pool} 2> {log:q}"
