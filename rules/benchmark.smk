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
        table="results/{exp}/bench/{run}/interventions/{task}.parquet",
        samples="results/{exp}/bench/{run}/interventions/{task}_samples.parquet",
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
        "--cohorts {input.cohorts} --out {output.table} --samples {output.samples} "
        "> {log} 2>&1"


rule failures:
    input:
        unpack(failure_inputs),
        manifest="results/{exp}/runs/{run}/checkpoints.json",
    output:
        failures="results/{exp}/bench/{run}/failures.parquet",
        changes="results/{exp}/bench/{run}/failure_changes.parquet",
    log:
        "results/{exp}/logs/failures/{run}.log",
    benchmark:
        "results/{exp}/timings/failures/{run}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["failures"]["mem_mb"],
        runtime=config["resources"]["failures"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("failures"),
        task=lambda wildcards: config["runs"][wildcards.run]["task"],
    shell:
        "sparks failures --config {params.config} --manifest {input.manifest} "
        "--task {params.task} --data-dir results/{wildcards.exp}/data "
        "--bench-dir results/{wildcards.exp}/bench/{wildcards.run} "
        "--out {output.failures} --changes {output.changes} > {log} 2>&1"
