rule aggregate:
    input:
        unpack(WF.attribution_tables),
        manifest=layout.manifest(),
    output:
        circuit=layout.circuits("circuit"),
        cohorts=layout.circuits("cohorts"),
        frequency=layout.circuits("frequency"),
        stability=layout.circuits("stability"),
        similarity=layout.circuits("similarity"),
        emergence=layout.circuits("emergence"),
        importance=layout.circuits("importance"),
        agreement=layout.circuits("agreement"),
        null_calls=layout.circuits("null_calls"),
        planted=layout.circuits("planted"),
        circuit_rules=layout.circuits("circuit_rules"),
    log:
        layout.log("aggregate", "{run}", "{task}"),
    benchmark:
        layout.timing("aggregate", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        **resources_of("aggregate"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("aggregate", ignore=("robust_share", "min_reward_points")),
        inputs=flags,
    shell:
        "sparks aggregate --config {params.config} --task {wildcards.task} {params.inputs} "
        "--circuit-out {output.circuit} --cohorts-out {output.cohorts} "
        "--frequency-out {output.frequency} --stability-out {output.stability} "
        "--similarity-out {output.similarity} --emergence-out {output.emergence} "
        "--importance-out {output.importance} --agreement-out {output.agreement} "
        "--null-calls-out {output.null_calls} --planted-out {output.planted} "
        "--circuit-rules-out {output.circuit_rules} > {log} 2>&1"


rule think_modes:
    input:
        unpack(WF.think_mode_tables),
    output:
        think_modes=layout.circuits("think_modes"),
        overlap=layout.circuits("think_overlap"),
    log:
        layout.log("think_modes", "{run}", "{task}"),
    benchmark:
        layout.timing("think_modes", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        **resources_of("think_modes"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings(
            "aggregate",
            ignore=("robust_share", "compare_faithfulness", "min_reward_points"),
        ),
        inputs=flags,
    shell:
        "sparks think-modes --config {params.config} --task {wildcards.task} --run {wildcards.run} "
        "{params.inputs} --think-modes-out {output.think_modes} --think-overlap-out {output.overlap} > {log} 2>&1"
