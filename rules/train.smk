checkpoint train:
    input:
        unpack(run_inputs),
    output:
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        train_log="results/{exp}/runs/{run}/train_log.parquet",
    log:
        "results/{exp}/logs/train/{run}.log",
    benchmark:
        "results/{exp}/timings/train/{run}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("runs", "{run}"),
        teacher=teacher_flag,
    shell:
        "sparks train --config {params.config} --run {wildcards.run} --base {input.base} "
        "--data-dir results/{wildcards.exp}/data {params.teacher} "
        "--out-dir results/{wildcards.exp}/runs/{wildcards.run} > {log} 2>&1"
