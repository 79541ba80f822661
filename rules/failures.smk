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


rule head_ablations:
    input:
        model=layout.model(),
        problems=layout.problems(),
    output:
        layout.head_ablations(),
    log:
        layout.log("head_ablations", "{role}", "{task}"),
    benchmark:
        layout.timing("head_ablations", "{role}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("head_ablations"),
    params:
        config=CONFIG_FILE,
        settings=WF.evaluate_settings(),
        prompt=WF.prompt,
        generation=WF.generation,
    shell:
        "sparks head-ablations --config {params.config} --model {input.model} --task {wildcards.task} "
        "--problems {input.problems} --role {wildcards.role} --out {output} > {log} 2>&1"


rule calculation_heads:
    input:
        samples=layout.head_ablations(),
        problems=layout.problems(),
    output:
        layout.calculation_heads(),
    log:
        layout.log("calculation_heads", "{role}", "{task}"),
    benchmark:
        layout.timing("calculation_heads", "{role}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("calculation_heads"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("failures"),
        top_k=WF.calculation_top_k,
    shell:
        "sparks calculation-heads --config {params.config} --samples {input.samples} --task {wildcards.task} "
        "--problems {input.problems} --top-k {params.top_k} --out {output} > {log} 2>&1"
