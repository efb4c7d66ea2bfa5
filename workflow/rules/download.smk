# Real datasets: verified, cached downloads into data/raw/{dataset}, natural-scene stimulus sets,
# and NeuralAssemblies with the spec's filters.
#
# Every download job takes one unit of the `downloads` resource. Snakemake leaves a resource
# unbounded unless it is given, so bound concurrent downloads on the command line or in a profile:
#     snakemake --resources downloads=1 ...
# A download job fetches its files one at a time into data/raw/{dataset}/ (resuming any .part
# file, verifying each against the source's checksum or size) and writes manifest.json last.
# Only the manifest is a declared output: when Snakemake reruns the job (new settings, or a
# failed attempt) it deletes the manifest, never the verified files, so a rerun re-verifies the
# cache cheaply and fetches only what is missing.

PSAILAMUL = "../shared/data/real/allen_natural_scenes_psailamul"
# The keys of a dataset block that decide what is downloaded: only these reach the download
# rule, so editing a filter threshold reruns the assembly, never the download. The assembly gets
# the rest of the block (editing a retry setting does not rerun it).
DOWNLOAD_KEYS = {
    "allen_neuropixels": ["dandiset", "version", "api_url", "templates_url", "sessions",
                          "retries", "backoff", "timeout"],
    "allen_ophys": ["s3_url", "areas", "session_type", "experiments", "retries", "backoff",
                    "timeout"],
}
DOWNLOAD_ONLY = {"dandiset", "version", "api_url", "templates_url", "sessions", "s3_url",
                 "experiments", "retries", "backoff", "timeout"}


rule download_allen_neuropixels:
    output:
        "data/raw/allen_neuropixels/manifest.json",
    params:
        settings=lambda wc: json.dumps(
            {k: config["datasets"]["allen_neuropixels"][k] for k in DOWNLOAD_KEYS["allen_neuropixels"]},
            sort_keys=True,
        ),
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_allen_neuropixels/allen_neuropixels.log",
    shell:
        "python -m pipeline download_allen_neuropixels data/raw/allen_neuropixels"
        " --settings {params.settings:q} 2> {log:q}"


rule download_allen_ophys:
    output:
        "data/raw/allen_ophys/manifest.json",
    params:
        settings=lambda wc: json.dumps(
            {k: config["datasets"]["allen_ophys"][k] for k in DOWNLOAD_KEYS["allen_ophys"]},
            sort_keys=True,
        ),
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_allen_ophys/allen_ophys.log",
    shell:
        "python -m pipeline download_allen_ophys data/raw/allen_ophys"
        " --settings {params.settings:q} 2> {log:q}"


rule allen_stimuli:
    input:
        "data/raw/{dataset}/manifest.json",
    output:
        directory("results/stimuli/{dataset}_scenes.zarr"),
    params:
        settings=lambda wc: json.dumps(
            {"stimulus_size": config["datasets"][wc.dataset]["stimulus_size"]}
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/allen_stimuli/{dataset}.log",
    wildcard_constraints:
        dataset="allen_neuropixels|allen_ophys",
    shell:
        "python -m pipeline allen_stimuli {input:q} {output:q} --name {wildcards.dataset}_scenes"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_allen_neuropixels:
    input:
        "data/raw/allen_neuropixels/manifest.json",
    output:
        directory("results/neural/allen_neuropixels.zarr"),
    params:
        settings=lambda wc: json.dumps(
            {
                k: v
                for k, v in config["datasets"]["allen_neuropixels"].items()
                if k not in DOWNLOAD_ONLY
            },
            sort_keys=True,
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_allen_neuropixels/allen_neuropixels.log",
    resources:
        mem_mb=8000,
    shell:
        "python -m pipeline assemble_allen_neuropixels {input:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_allen_ophys:
    input:
        "data/raw/allen_ophys/manifest.json",
    output:
        directory("results/neural/allen_ophys.zarr"),
    params:
        settings=lambda wc: json.dumps(
            {
                k: v
                for k, v in config["datasets"]["allen_ophys"].items()
                if k not in DOWNLOAD_ONLY
            },
            sort_keys=True,
        ),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_allen_ophys/allen_ophys.log",
    resources:
        mem_mb=8000,
    shell:
        "python -m pipeline assemble_allen_ophys {input:q} {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule assemble_psailamul:
    input:
        PSAILAMUL,
    output:
        neural=directory("results/neural/allen_psailamul.zarr"),
        stimuli=directory("results/stimuli/allen_psailamul_scenes.zarr"),
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/assemble_psailamul/allen_psailamul.log",
    shell:
        "python -m pipeline assemble_psailamul {input:q} {output.neural:q} {output.stimuli:q}"
        " 2> {log:q}"


# Macaque V4/IT (Brain-Score packaging of Majaj, Hong et al. 2015) and human fMRI (Horikawa &
# Kamitani 2017, figshare): the blocks' keys that decide what is downloaded.
MAJAJHONG2015_DOWNLOAD_KEYS = ["base_url", "assembly", "stimulus_set", "retries", "backoff", "timeout"]
HORIKAWA2017_DOWNLOAD_KEYS = ["api_url", "article", "subjects", "retries", "backoff", "timeout"]


rule download_majajhong2015:
    output:
        "data/raw/majajhong2015/manifest.json",
    params:
        settings=lambda wc: json.dumps(
            {k: config["datasets"]["majajhong2015"][k] for k in MAJAJHONG2015_DOWNLOAD_KEYS},
            sort_keys=True,
        ),
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_majajhong2015/majajhong2015.log",
    shell:
        "python -m pipeline download_majajhong2015 data/raw/majajhong2015"
        " --settings {params.settings:q} 2> {log:q}"


rule download_horikawa2017:
    output:
        "data/raw/horikawa2017/manifest.json",
    params:
        settings=lambda wc: json.dumps(
            {k: config["datasets"]["horikawa2017"][k] for k in HORIKAWA2017_DOWNLOAD_KEYS},
            sort_keys=True,
        ),
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_horikawa2017/horikawa2017.log",
    shell:
        "python -m pipeline download_horikawa2017 data/raw/horikawa2017"
        " --settings {params.settings:q} 2> {log:q}"


# MEC open field (DANDI 000582, 000053): only the asset selection and retry settings reach the
# download, so editing a rate-map setting reruns the assembly, never the download.
MEC_DOWNLOAD_KEYS = ["api_url", "dandisets", "retries", "backoff", "timeout"]


rule download_mec:
    output:
        "data/raw/mec/manifest.json",
    params:
        settings=lambda wc: json.dumps(
            {k: config["datasets"]["mec"][k] for k in MEC_DOWNLOAD_KEYS}, sort_keys=True
        ),
    resources:
        downloads=1,
    retries: 2
    conda:
        "../../envs/pipeline.yaml"
    log:
        "logs/download_mec/mec.log",
    shell:
        "python -m pipeline download_mec data/raw/mec --settings {params.settings:q} 2> {log:q}"
