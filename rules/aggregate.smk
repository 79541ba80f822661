rule aggregate:
    input:
        unpack(WF.attribution_tables),
        manifest=layout.manifest(),
    output:
        **layout.tables(layout.circuits, layout.CIRCUITS),
    log:
        layout.log("aggregate", "{run}", "{task}"),
    benchmark:
        layout.timing("aggregate", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("aggregate"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("aggregate", ignore=("robust_share", "min_reward_points")),
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks aggregate --config {params.config} --task {wildcards.task} "
        "{params.inputs} {params.outputs} > {log} 2>&1"


rule think_modes:
    input:
        unpack(WF.think_mode_tables),
    output:
        **layout.tables(layout.circuits, layout.THINK_MODES),
    log:
        layout.log("think_modes", "{run}", "{task}"),
    benchmark:
        layout.timing("think_modes", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("think_modes"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings(
            "aggregate",
            ignore=("robust_share", "compare_faithfulness", "min_reward_points"),
        ),
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks think-modes --config {params.config} --task {wildcards.task} --run {wildcards.run} "
        "{params.inputs} {params.outputs} > {log} 2>&1"
