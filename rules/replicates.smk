# A replicated run (runs.<name>.seeds): its replicates are ordinary runs (layout.replicate); these
# rules compare them, test the study's claims across them, and draw the comparison. An unreplicated
# run is a group of one (config["claim_groups"]): its claims are tested with sampling error alone.


rule replicates:
    input:
        unpack(WF.replicate_inputs),
    output:
        **layout.tables(layout.replicates, layout.REPLICATES),
    log:
        layout.log("replicates", "{group}", "{task}"),
    benchmark:
        layout.timing("replicates", "{group}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("replicates"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("aggregate"),
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks replicates --config {params.config} --run {wildcards.group} --task {wildcards.task} "
        "{params.inputs} {params.outputs} > {log} 2>&1"


rule policy_comparison:
    input:
        unpack(WF.policy_inputs),
    output:
        layout.policies("policy_comparison"),
    log:
        layout.log("policy_comparison", "{group}", "{task}"),
    benchmark:
        layout.timing("policy_comparison", "{group}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("policy_comparison"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("runs"),
        inputs=flags,
    shell:
        "sparks policy-comparison --config {params.config} --run {wildcards.group} --task {wildcards.task} "
        "{params.inputs} --out {output} > {log} 2>&1"


rule claims:
    input:
        unpack(WF.claims_inputs),
    output:
        layout.replicates("replicate_claims"),
    log:
        layout.log("claims", "{group}", "{task}"),
    benchmark:
        layout.timing("claims", "{group}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("claims"),
    params:
        config=CONFIG_FILE,
        inputs=flags,
    shell:
        "sparks claims --config {params.config} --run {wildcards.group} --task {wildcards.task} "
        "{params.inputs} --out {output} > {log} 2>&1"


rule plot_replicates:
    input:
        **layout.tables(layout.replicates, REPLICATE_INPUTS),
    output:
        figures=expand(
            layout.figure("{name}", "{ext}", "{{group}}", "{{task}}", "{{exp}}"),
            name=REPLICATE_FIGURES,
            ext=("png", "svg"),
        ),
        section=layout.report_section("{group}"),
    log:
        layout.log("plot_replicates", "{group}", "{task}"),
    benchmark:
        layout.timing("plot_replicates", "{group}", "{task}")
    wildcard_constraints:
        group=REPLICATED,  # an unreplicated run's section is the plot rule's
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("plot_replicates"),
    params:
        config=CONFIG_FILE,
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks plot-replicates --config {params.config} --run {wildcards.group} --task {wildcards.task} "
        "{params.inputs} {params.outputs} > {log} 2>&1"
