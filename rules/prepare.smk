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
    threads: 1
    resources:
        mem_mb=config["resources"]["prepare_model"]["mem_mb"],
        runtime=config["resources"]["prepare_model"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=model_settings,
        prompt=PROMPT,
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
    threads: 1
    resources:
        mem_mb=config["resources"]["prepare_data"]["mem_mb"],
        runtime=config["resources"]["prepare_data"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("tasks", "{task}"),
        prompt=PROMPT,
    shell:
        "sparks prepare-data --config {params.config} --task {wildcards.task} "
        "--tokenizer {input.tokenizer} --problems {output.problems} --pairs {output.pairs} "
        "> {log} 2>&1"
