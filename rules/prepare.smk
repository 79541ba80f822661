rule prepare_model:
    output:
        directory("results/{exp}/{role}"),
    log:
        "results/{exp}/logs/prepare_model/{role}.log",
    benchmark:
        "results/{exp}/timings/prepare_model/{role}.tsv"
    wildcard_constraints:
        role="base|teacher",
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["prepare_model"]["mem_mb"],
        runtime=config["resources"]["prepare_model"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("{role}"),
    shell:
        "sparks prepare-model --config {params.config} --role {wildcards.role} "
        "--out {output} > {log} 2>&1"


rule prepare_data:
    input:
        tokenizer="results/{exp}/base",
    output:
        problems="results/{exp}/data/{task}_problems.parquet",
        pairs="results/{exp}/data/{task}_pairs.parquet",
    log:
        "results/{exp}/logs/prepare_data/{task}.log",
    benchmark:
        "results/{exp}/timings/prepare_data/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["prepare_data"]["mem_mb"],
        runtime=config["resources"]["prepare_data"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("tasks", "{task}"),
    shell:
        "sparks prepare-data --config {params.config} --task {wildcards.task} "
        "--tokenizer {input.tokenizer} --out-dir results/{wildcards.exp}/data > {log} 2>&1"
