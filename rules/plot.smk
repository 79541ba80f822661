rule plot:
    input:
        unpack(WF.plot_inputs),
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
    resources:
        **resources_of("plot"),
    params:
        config=CONFIG_FILE,
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks plot --config {params.config} --run {wildcards.run} --task {wildcards.task} "
        "{params.inputs} {params.outputs} > {log} 2>&1"


rule report:
    input:
        unpack(WF.report_inputs),
        **WF.report_step_inputs(),
    output:
        layout.report(),
    log:
        layout.log("report"),
    benchmark:
        layout.timing("report")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("report"),
    params:
        config=CONFIG_FILE,
        inputs=flags,
    shell:
        "sparks report --config {params.config} {params.inputs} --out {output} > {log} 2>&1"
