rule attribute:
    input:
        manifest=layout.manifest(),
        pairs=WF.attribute_pairs,
    output:
        **layout.tables(layout.attribution, layout.ATTRIBUTION),
    log:
        layout.log("attribute", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("attribute", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("attribute"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", ignore=("compare_think_at",)),
        outputs=out_flags,
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} --step {wildcards.step} "
        "--task {wildcards.task} --pairs {input.pairs} {params.outputs} > {log} 2>&1"


rule attribute_think:
    input:
        manifest=layout.manifest(),
        pairs=WF.attribute_pairs,
    output:
        **layout.tables(layout.think_attribution, ("heads", "edges")),
    log:
        layout.log("attribute_think", "{mode}", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("attribute_think", "{mode}", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("attribute_think"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", ignore=("compare_think_at",)),
        outputs=out_flags,
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} --step {wildcards.step} "
        "--task {wildcards.task} --pairs {input.pairs} --think {wildcards.mode} {params.outputs} > {log} 2>&1"


rule attribute_style:
    input:
        manifest=layout.manifest(),
        pairs=layout.style_pairs(),
    output:
        **layout.tables(layout.style_attribution, layout.ATTRIBUTION),
    log:
        layout.log("attribute_style", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("attribute_style", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("attribute_style"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", ignore=("compare_think_at",)),
        outputs=out_flags,
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} --step {wildcards.step} "
        "--task {wildcards.task} --pairs {input.pairs} --think on {params.outputs} > {log} 2>&1"


rule style_pairs:
    input:
        manifest=layout.manifest(),
        problems=layout.problems(),
    output:
        layout.style_pairs(),
    log:
        layout.log("style_pairs", "{run}", "{task}"),
    benchmark:
        layout.timing("style_pairs", "{run}", "{task}")
    conda:
        "../envs/sparks.yaml"
    resources:
        **resources_of("style_pairs"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", "style"),
        prompt=WF.prompt,
        generation=WF.generation,
    shell:
        "sparks style-pairs --config {params.config} --manifest {input.manifest} --task {wildcards.task} "
        "--problems {input.problems} --out {output} > {log} 2>&1"
