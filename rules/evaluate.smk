rule evaluate:
    input:
        manifest=layout.manifest(),
        problems=layout.problems(),
    output:
        eval=layout.eval_samples(),
        passk=layout.passk(),
    log:
        layout.log("evaluate", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("evaluate", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("evaluate"),
    params:
        config=CONFIG_FILE,
        settings=WF.evaluate_settings(),
        prompt=WF.prompt,
        generation=WF.generation,
        outputs=out_flags,
    shell:
        "sparks evaluate --config {params.config} --manifest {input.manifest} --step {wildcards.step} "
        "--task {wildcards.task} --problems {input.problems} {params.outputs} > {log} 2>&1"


rule intervene:
    input:
        unpack(WF.intervene_inputs),
        manifest=layout.manifest(),
        problems=layout.problems(),
    output:
        **INTERVENE_OUT,
    log:
        layout.log("intervene", "{run}", "{task}", *INTERVENE_PER),
    benchmark:
        layout.timing("intervene", "{run}", "{task}", *INTERVENE_PER)
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("intervene"),
    params:
        config=CONFIG_FILE,
        settings=WF.evaluate_settings(),
        prompt=WF.prompt,
        inputs=flags,
        outputs=out_flags,
        condition=WF.condition_flag,
    shell:
        "sparks intervene --config {params.config} --task {wildcards.task} {params.inputs} "
        "{params.condition} {params.outputs} > {log} 2>&1"


if WF.split_interventions:

    rule merge_interventions:
        input:
            tables=WF.intervention_parts("table"),
            samples=WF.intervention_parts("samples"),
        output:
            interventions=layout.interventions(),
            intervention_samples=layout.intervention_samples(),
        log:
            layout.log("merge_interventions", "{run}", "{task}"),
        benchmark:
            layout.timing("merge_interventions", "{run}", "{task}")
        conda:
            "../envs/sparks.yaml"
        resources:
            **resources_of("merge_interventions"),
        params:
            outputs=out_flags,
        shell:
            "sparks merge-interventions --tables {input.tables} --samples {input.samples} "
            "{params.outputs} > {log} 2>&1"
