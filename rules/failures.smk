rule failures:
    input:
        unpack(WF.failure_inputs),
        manifest=layout.manifest(),
    output:
        failures=layout.failures("failures"),
        changes=layout.failures("failure_changes"),
        shares=layout.failures("failure_shares"),
    log:
        layout.log("failures", "{run}"),
    benchmark:
        layout.timing("failures", "{run}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        **resources_of("failures"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("failures"),
        task=WF.run_task_of,
        inputs=flags,
    shell:
        "sparks failures --config {params.config} --task {params.task} {params.inputs} "
        "--failures-out {output.failures} --failure-changes-out {output.changes} --failure-shares-out {output.shares} "
        "> {log} 2>&1"
