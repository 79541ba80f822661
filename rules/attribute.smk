rule attribute:
    input:
        manifest=layout.manifest(),
        pairs=WF.attribute_pairs,
    output:
        heads=layout.attribution("heads"),
        edges=layout.attribution("edges"),
        pair_edges=layout.attribution("pair_edges"),
        faithfulness=layout.attribution("faithfulness"),
        head_effects=layout.attribution("head_effects"),
    log:
        layout.log("attribute", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("attribute", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        **resources_of("attribute"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", ignore=("compare_think_at",)),
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} --pairs {input.pairs} "
        "--heads-out {output.heads} --edges-out {output.edges} --pair-edges-out {output.pair_edges} "
        "--faithfulness-out {output.faithfulness} --head-effects-out {output.head_effects} > {log} 2>&1"


rule attribute_think:
    input:
        manifest=layout.manifest(),
        pairs=WF.attribute_pairs,
    output:
        heads=layout.think_attribution("heads"),
        edges=layout.think_attribution("edges"),
    log:
        layout.log("attribute_think", "{mode}", "{run}", "{step}", "{task}"),
    benchmark:
        layout.timing("attribute_think", "{mode}", "{run}", "{step}", "{task}")
    conda:
        "../envs/sparks.yaml"
    threads: 1
    resources:
        **resources_of("attribute_think"),
    params:
        config=CONFIG_FILE,
        settings=WF.settings("attribute", ignore=("compare_think_at",)),
    shell:
        "sparks attribute --config {params.config} --manifest {input.manifest} "
        "--step {wildcards.step} --task {wildcards.task} --pairs {input.pairs} "
        "--think {wildcards.mode} --heads-out {output.heads} --edges-out {output.edges} > {log} 2>&1"


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
    threads: 1
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
