rule plot:
    input:
        unpack(plot_inputs),
        manifest="results/{exp}/runs/{run}/checkpoints.json",
        train_log="results/{exp}/runs/{run}/train_log.parquet",
    output:
        expand(
            "results/{{exp}}/figures/{{run}}/{{task}}_{name}.{ext}",
            name=figure_names(config),
            ext=("png", "svg"),
        ),
    log:
        "results/{exp}/logs/plot/{run}/{task}.log",
    benchmark:
        "results/{exp}/timings/plot/{run}/{task}.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["plot"]["mem_mb"],
        runtime=config["resources"]["plot"]["runtime"],
    params:
        config=CONFIG_FILE,
    shell:
        "sparks plot --config {params.config} --manifest {input.manifest} "
        "--task {wildcards.task} --out-dir results/{wildcards.exp}/figures/{wildcards.run} "
        "> {log} 2>&1"


rule report:
    input:
        report_inputs,
    output:
        "results/{exp}/report.html",
    log:
        "results/{exp}/logs/report.log",
    benchmark:
        "results/{exp}/timings/report.tsv"
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["report"]["mem_mb"],
        runtime=config["resources"]["report"]["runtime"],
    params:
        config=CONFIG_FILE,
    shell:
        "sparks report --config {params.config} --results results/{wildcards.exp} "
        "--out {output} > {log} 2>&1"
