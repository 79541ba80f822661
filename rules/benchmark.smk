rule evaluate:
    input:
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        problems="results/{exp}/data/{task}_problems.parquet",
    output:
        "results/{exp}/bench/{run}/eval/{step}/{task}.parquet",
    log:
        "results/{exp}/logs/evaluate/{run}/{step}/{task}.log",
    benchmark:
        "results/{exp}/timings/evaluate/{run}/{step}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("evaluate"),
    shell:
        "sparks evaluate --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} "
        "--data-dir results/{wildcards.exp}/data --out {output} > {log} 2>&1"


rule intervene:
    input:
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        problems="results/{exp}/data/{task}_problems.parquet",
        cohorts="results/{exp}/circuits/{run}/{task}/cohorts.parquet",
    output:
        "results/{exp}/bench/{run}/interventions/{task}.parquet",
    log:
        "results/{exp}/logs/intervene/{run}/{task}.log",
    benchmark:
        "results/{exp}/timings/intervene/{run}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["intervene"]["mem_mb"],
        runtime=config["resources"]["intervene"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("evaluate"),
    shell:
        "sparks intervene --config {params.config} --manifest {input.manifest} "
        "--task {wildcards.task} --data-dir results/{wildcards.exp}/data "
        "--cohorts {input.cohorts} --out {output} > {log} 2>&1"
