# sparks: attention-head circuits across post-training checkpoints.
# Run: snakemake --profile profiles/local (or --profile profiles/slurm on a cluster).
from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names another experiment (which then replaces it).
if not workflow.config_settings.configfiles:

    configfile: "workflow_config.yaml"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/train.smk"
include: "rules/attribute.smk"
include: "rules/aggregate.smk"
include: "rules/evaluate.smk"
include: "rules/failures.smk"
include: "rules/plot.smk"
include: "rules/replicates.smk"


rule all:
    input:
        WF.final_targets,
