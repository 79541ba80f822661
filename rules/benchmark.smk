rule evaluate:
    input:
        manifest=layout.manifest(),
        problems=layout.problems(),
    output:
        samples=layout.eval_samples(),
        passk=layout.passk(),
    log:
        layout.log("evaluate", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("evaluate", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("evaluate", ignore=("split_interventions",)),
        prompt=PROMPT,
        generation=GENERATION,
    shell:
        "sparks evaluate --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} --problems {input.problems} "
        "--out {output.samples} --passk {output.passk} > {log} 2>&1"


rule intervene:
    input:
        unpack(intervene_inputs),
        manifest=layout.manifest(),
        problems=layout.problems(),
        cohorts=layout.circuits("cohorts"),
        frequency=layout.circuits("frequency"),
    output:
        table=INTERVENE_OUT["table"],
        samples=INTERVENE_OUT["samples"],
    log:
        layout.log("intervene", "{run}", "{task}", *INTERVENE_PER),
    benchmark:
        layout.timing("intervene", "{run}", "{task}", *INTERVENE_PER)
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["intervene"]["mem_mb"],
        runtime=config["resources"]["intervene"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("evaluate", ignore=("split_interventions",)),
        prompt=PROMPT,
        inputs=flags,
        condition=lambda w: f"--condition {w.condition}" if SPLIT_INTERVENTIONS else "",
    shell:
        "sparks intervene --config {params.config} --task {wildcards.task} {params.inputs} "
        "{params.condition} --out {output.table} --samples {output.samples} > {log} 2>&1"


if SPLIT_INTERVENTIONS:

    rule merge_interventions:
        input:
            tables=lambda w: intervention_parts(w, "table"),
            samples=lambda w: intervention_parts(w, "samples"),
        output:
            table=layout.interventions(),
            samples=layout.intervention_samples(),
        log:
            layout.log("merge_interventions", "{run}", "{task}"),
        benchmark:
            layout.timing("merge_interventions", "{run}", "{task}")
        conda:
            "../envs/sparks.yaml"
        threads: 1
        resources:
            mem_mb=config["resources"]["merge_interventions"]["mem_mb"],
            runtime=config["resources"]["merge_interventions"]["runtime"],
        shell:
            "sparks merge-interventions --tables {input.tables} --samples {input.samples} "
            "--out {output.table} --samples-out {output.samples} > {log} 2>&1"


rule failures:
    input:
        unpack(failure_inputs),
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
        mem_mb=config["resources"]["failures"]["mem_mb"],
        runtime=config["resources"]["failures"]["runtime"],
    params:
        config=CONFIG_FILE,
        settings=settings("failures"),
        task=run_task_of,
        inputs=flags,
    shell:
        "sparks failures --config {params.config} --task {params.task} {params.inputs} "
        "--out {output.failures} --changes {output.changes} --shares {output.shares} "
        "> {log} 2>&1"
