# Goal-driven modeling pipeline: data -> models -> activations -> consistency -> figures.
# Load and validate config, include the rule files, declare the final targets.

from pipeline.config import validate_config


configfile: "config.yaml"


config = validate_config(
    config, workflow.source_path("workflow/schemas/config.schema.yaml"), source="config"
)


# Used with --software-deployment-method conda; the README's pip install is the default.
conda: "envs/pipeline.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),


onsuccess:
    make_report()
