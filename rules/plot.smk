rule plot:
    input:
        unpack(plot_inputs),
    output:
        figures=expand(
            layout.figure("{name}", "{ext}", "{{run}}", "{{task}}", "{{exp}}"),
            name=figure_names(config),
            ext=("png", "svg"),
        ),
        section=layout.report_section(),
    log:
        layout.log("plot", "{run}", "{task}"),
    benchmark:
        layout.timing("plot", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["plot"]["mem_mb"],
        runtime=config["resources"]["plot"]["runtime"],
    params:
        config=CONFIG_FILE,
        inputs=flags,
    shell:
        "sparks plot --config {params.config} --run {wildcards.run} --task {wildcards.task} "
        "{params.inputs} --figures {output.figures} --section {output.section} > {log} 2>&1"


rule report:
    input:
        unpack(report_inputs),
        **REPORT_STEP_INPUTS,
    output:
        layout.report(),
    log:
        layout.log("report"),
    benchmark:
        layout.timing("report")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["report"]["mem_mb"],
        runtime=config["resources"]["report"]["runtime"],
    params:
        config=CONFIG_FILE,
        inputs=flags,
    shell:
        "sparks report --config {params.config} {params.inputs} --out {output} > {log} 2>&1"
