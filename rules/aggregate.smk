rule aggregate:
    input:
        unpack(attribution_tables),
        manifest="results/{exp}/runs/{run}/checkpoints.json",
    output:
        circuit="results/{exp}/circuits/{run}/{task}/circuit.parquet",
        cohorts="results/{exp}/circuits/{run}/{task}/cohorts.parquet",
        frequency="results/{exp}/circuits/{run}/{task}/frequency.parquet",
        stability="results/{exp}/circuits/{run}/{task}/stability.parquet",
        similarity="results/{exp}/circuits/{run}/{task}/similarity.parquet",
    log:
        "results/{exp}/logs/aggregate/{run}/{task}.log",
    benchmark:
        "results/{exp}/timings/aggregate/{run}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["aggregate"]["mem_mb"],
        runtime=config["resources"]["aggregate"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("aggregate"),
    shell:
        "sparks aggregate --config {params.config} --manifest {input.manifest} "
        "--task {wildcards.task} --circuit {output.circuit} --cohorts {output.cohorts} "
        "--frequency {output.frequency} --stability {output.stability} "
        "--similarity {output.similarity} > {log} 2>&1"


rule think_modes:
    input:
        unpack(think_mode_tables),
        manifest="results/{exp}/runs/{run}/checkpoints.json",
    output:
        "results/{exp}/circuits/{run}/{task}/think_modes.parquet",
    log:
        "results/{exp}/logs/think_modes/{run}/{task}.log",
    benchmark:
        "results/{exp}/timings/think_modes/{run}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["think_modes"]["mem_mb"],
        runtime=config["resources"]["think_modes"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("aggregate"),
    shell:
        "sparks think-modes --config {params.config} --manifest {input.manifest} "
        "--task {wildcards.task} --out {output} > {log} 2>&1"
