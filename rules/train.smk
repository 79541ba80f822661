checkpoint train:
    input:
        given_checkpoints,
        unpack(run_inputs),
    output:
        manifest=layout.manifest(),
        train_log=layout.train_log(),
    log:
        layout.log("train", "{run}"),
    benchmark:
        layout.timing("train", "{run}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=config["resources"]["train"]["gpus"],
    params:
        config=CONFIG_FILE,
        settings=settings("runs", "{run}"),
        prompt=PROMPT,
        inputs=flags,
        launch=train_launcher,
    shell:
        "{params.launch} train --config {params.config} --run {wildcards.run} {params.inputs} "
        "--manifest {output.manifest} --train-log {output.train_log} > {log} 2>&1"


rule teacher_traces:
    input:
        unpack(teacher_inputs),
    output:
        layout.teacher_traces(),
    log:
        layout.log("teacher_traces", "{run}"),
    benchmark:
        layout.timing("teacher_traces", "{run}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["teacher_traces"]["mem_mb"],
        runtime=config["resources"]["teacher_traces"]["runtime"],
        gpu=1,
    params:
        config=CONFIG_FILE,
        settings=settings("runs", "{run}", ignore=TRAINING_ONLY),
        prompt=PROMPT,
        generation=GENERATION,
        inputs=flags,
    shell:
        "sparks teacher-traces --config {params.config} --run {wildcards.run} {params.inputs} "
        "--out {output} > {log} 2>&1"
