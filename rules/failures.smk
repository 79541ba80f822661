rule failures:
    input:
        unpack(WF.failure_inputs),
        manifest=layout.manifest(),
    output:
        **layout.tables(layout.failures, layout.FAILURES),
    log:
        layout.log("failures", "{run}"),
    benchmark:
        layout.timing("failures", "{run}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("failures"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("failures"),
        task=WF.run_task_of,
        inputs=flags,
        outputs=out_flags,
    shell:
        "sparks failures --config {params.config} --task {params.task} {params.inputs} {params.outputs} > {log} 2>&1"
