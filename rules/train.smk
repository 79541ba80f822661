checkpoint train:
    input:
        WF.given_checkpoints,
        unpack(WF.run_inputs),
    output:
        manifest=layout.manifest(),
        train_log=layout.train_log(),
    log:
        layout.log("train", "{run}"),
    benchmark:
        layout.timing("train", "{run}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("train"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("runs", "{run}"),
        prompt=WF.prompt,
        inputs=flags,
        outputs=out_flags,
        launch=WF.train_launcher,
    shell:
        "{params.launch} train --config {params.config} --run {wildcards.run} {params.inputs} "
        "{params.outputs} > {log} 2>&1"


rule head_policy:
    input:
        unpack(WF.head_policy_inputs),
    output:
        layout.head_policy(),
    log:
        layout.log("head_policy", "{run}"),
    benchmark:
        layout.timing("head_policy", "{run}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("head_policy"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("runs", "{run}", "heads"),
        inputs=flags,
    shell:
        "sparks head-policy --config {params.config} --run {wildcards.run} {params.inputs} --out {output} > {log} 2>&1"


rule teacher_traces:
    input:
        unpack(WF.teacher_inputs),
    output:
        layout.teacher_traces(),
    log:
        layout.log("teacher_traces", "{run}"),
    benchmark:
        layout.timing("teacher_traces", "{run}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("teacher_traces"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("runs", "{run}", ignore=TRAINING_ONLY),
        prompt=WF.prompt,
        generation=WF.generation,
        inputs=flags,
    shell:
        "sparks teacher-traces --config {params.config} --run {wildcards.run} {params.inputs} "
        "--out {output} > {log} 2>&1"
