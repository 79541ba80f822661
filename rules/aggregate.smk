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


rule aggregate_style:
    input:
        unpack(WF.style_attribution_tables),
        manifest=layout.manifest(),
    output:
        **layout.tables(layout.style_circuits, layout.CIRCUITS),
    log:
        layout.log("aggregate_style", "{run}", "{task}"),
    benchmark:
        layout.timing("aggregate_style", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("aggregate_style"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("aggregate", ignore=("robust_share", "min_reward_points")),
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks aggregate --config {params.config} --task {wildcards.task} "
        "{params.inputs} {params.outputs} > {log} 2>&1"


rule pair_kinds:
    input:
        operand=layout.circuits("cohorts"),
        style=layout.style_circuits("cohorts"),
    output:
        layout.circuits("pair_kinds"),
    log:
        layout.log("pair_kinds", "{run}", "{task}"),
    benchmark:
        layout.timing("pair_kinds", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("pair_kinds"),
    params:
        config=CONFIG_FILE,
    shell:
        "sparks pair-kinds --config {params.config} --task {wildcards.task} --run {wildcards.run} "
        "--operand {input.operand} --style {input.style} --out {output} > {log} 2>&1"


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
