rule prepare_model:
    output:
        directory(layout.model()),
    log:
        layout.log("prepare_model", "{role}"),
    benchmark:
        layout.timing("prepare_model", "{role}")
    wildcard_constraints:
        role=r"base|teacher|base-b\d+",
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("prepare_model"),
    params:
        config=CONFIG_FILE,
        settings=WF.model_settings,
        prompt=WF.prompt,
    shell:
        "sparks prepare-model --config {params.config} --role {wildcards.role} "
        "--out {output} > {log} 2>&1"


rule prepare_data:
    input:
        tokenizer=layout.model(base_roles(config)[0]),
    output:
        problems=layout.problems(),
        pairs=layout.pairs(),
    log:
        layout.log("prepare_data", "{task}"),
    benchmark:
        layout.timing("prepare_data", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("prepare_data"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("tasks", "{task}"),
        prompt=WF.prompt,
        outputs=out_flags,
    shell:
        "sparks prepare-data --config {params.config} --task {wildcards.task} "
        "--tokenizer {input.tokenizer} {params.outputs} > {log} 2>&1"
