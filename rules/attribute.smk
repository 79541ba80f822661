rule attribute:
    input:
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        pairs="results/{exp}/data/{task}_pairs.parquet",
    output:
        heads="results/{exp}/heads/{run}/{step}/{task}.parquet",
        edges="results/{exp}/edges/{run}/{step}/{task}.parquet",
        pair_edges="results/{exp}/pair_edges/{run}/{step}/{task}.parquet",
        faithfulness="results/{exp}/faithfulness/{run}/{step}/{task}.parquet",
    log:
        "results/{exp}/logs/attribute/{run}/{step}/{task}.log",
    benchmark:
        "results/{exp}/timings/attribute/{run}/{step}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["attribute"]["mem_mb"],
        runtime=config["resources"]["attribute"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("attribute", ignore=("compare_think_at",)),
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} --pairs {input.pairs} "
        "--heads {output.heads} --edges {output.edges} --pair-edges {output.pair_edges} "
        "--faithfulness {output.faithfulness} > {log} 2>&1"


rule attribute_think:
    input:
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        pairs="results/{exp}/data/{task}_pairs.parquet",
    output:
        heads="results/{exp}/think/{mode}/heads/{run}/{step}/{task}.parquet",
        edges="results/{exp}/think/{mode}/edges/{run}/{step}/{task}.parquet",
    log:
        "results/{exp}/logs/attribute_think/{mode}/{run}/{step}/{task}.log",
    benchmark:
        "results/{exp}/timings/attribute_think/{mode}/{run}/{step}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["attribute_think"]["mem_mb"],
        runtime=config["resources"]["attribute_think"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("attribute", ignore=("compare_think_at",)),
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} --pairs {input.pairs} "
        "--think {wildcards.mode} --heads {output.heads} --edges {output.edges} > {log} 2>&1"
