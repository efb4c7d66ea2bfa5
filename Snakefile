# Goal-driven modeling pipeline: data -> models -> activations -> consistency -> figures.
# Load and validate config, include the rule files, declare the final targets.

from pipeline.config import validate_config


configfile: "config.yaml"


config = validate_config(
    config, workflow.source_path("workflow/schemas/config.schema.yaml"), source="config"
)


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=r"[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+-s\d+",
    dataset=r"[a-z0-9_]+",
    stimulus_set=r"[a-z0-9_]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/recovery.smk"
include: "workflow/rules/geometry.smk"
include: "workflow/rules/development.smk"
include: "workflow/rules/identify.smk"
include: "workflow/rules/mec.smk"
include: "workflow/rules/ost.smk"
include: "workflow/rules/temporal.smk"


rule all:
    input:
        final_outputs(),


onsuccess:
    make_report()
