# Config checking, wildcard constraints and the input functions the rules call. Every path comes
# from sparks.layout; every step list from the runs' manifests.
import json
from functools import partial
import re
from pathlib import Path

from sparks import forkserver, layout, registry
from sparks.aggregate import INPUTS as AGGREGATE_INPUTS
from sparks.aggregate.think_modes import compare_steps
from sparks.config import (
    ConfigError,
    base_role,
    base_roles,
    check_config,
    model_section,
)
from sparks.data.style import pairs_kind
from sparks.evaluate import EvaluateSettings, conditions
from sparks.manifest import read_manifest
from sparks.plot import figure_names
from sparks.plot.replicates import FIGURES as REPLICATE_FIGURES
from sparks.model.given import input_files
from sparks.train.launch import launcher
from sparks.train.teacher import TRAINING_ONLY

if workflow.config_settings.config:
    raise WorkflowError(
        "config error: command-line --config overrides are not passed to the sparks stages; "
        "write them into a config file and pass it with --configfile"
    )
if len(workflow.configfiles) != 1:
    raise WorkflowError(
        "config error: the sparks stages read one config file, got "
        f"{len(workflow.configfiles)} ({', '.join(map(str, workflow.configfiles))}); "
        "merge them into one file and pass it with --configfile"
    )
try:
    config = check_config(config, source=str(workflow.configfiles[0]))
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

EXP = config["experiment"]
CONFIG_FILE = str(workflow.configfiles[0])

# evaluate.split_interventions: one intervene job per condition, joined by merge_interventions.
SPLIT_INTERVENTIONS = config["evaluate"]["split_interventions"]
CONDITIONS = [c.name for c in conditions(EvaluateSettings.from_config(config))]
INTERVENE_PER = ("{condition}",) if SPLIT_INTERVENTIONS else ()
INTERVENE_OUT = (
    {
        "table": layout.intervention_part("table"),
        "samples": layout.intervention_part("samples"),
    }
    if SPLIT_INTERVENTIONS
    else {"table": layout.interventions(), "samples": layout.intervention_samples()}
)
REPLICATED = (
    "|".join(config["replicates"]) or "(?!)"
)  # the runs with seeds (plot_replicates)


wildcard_constraints:
    exp=EXP,
    run="|".join(config["runs"]),
    group="|".join(config["claim_groups"]),
    task="|".join(config["tasks"]),
    step=r"\d+",
    mode="on|off",
    condition="|".join(re.escape(c) for c in CONDITIONS),


# A param of each job that prompts a model: editing the prompt section re-runs those jobs.
PROMPT = json.dumps(config["prompt"], sort_keys=True)
# and of each job that samples with the generation engine (intervene always uses hf)
GENERATION = json.dumps(config["generation"], sort_keys=True)


def settings(*keys, ignore=()):
    """The config section that a job depends on, plus the seed, passed as params so that
    editing it re-runs exactly the affected jobs. A key in braces ("{run}") names a wildcard;
    ``ignore`` names keys of the section that the job does not read.
    """

    def section(wildcards):
        value = config
        for key in keys:
            value = value[wildcards[key[1:-1]] if key.startswith("{") else key]
        value = {k: v for k, v in value.items() if k not in ignore}
        return json.dumps({"seed": config["seed"], "section": value}, sort_keys=True)

    return section


def model_settings(wildcards):
    """A prepared model's settings (its section, its pre-training seed), as settings() does;
    base replicates list (base.seeds) is left out: adding a seed re-runs no other base.
    """
    section, base_seed = model_section(config, wildcards.role)
    section = {k: v for k, v in section.items() if k != "seeds"}
    return json.dumps(
        {"seed": config["seed"] + base_seed, "section": section}, sort_keys=True
    )


def train_launcher(wildcards):
    """``sparks``, or with resources.train.gpus > 1 the accelerate config written and then
    ``accelerate launch`` on that many processes (sparks.train.launch)."""
    gpus = config["resources"]["train"]["gpus"]
    if gpus == 1:
        return launcher(1, "")
    path = layout.accelerate_config(wildcards.run, EXP)
    return f"mkdir -p $(dirname {path}) && sparks accelerate-config --config {CONFIG_FILE} --out {path} && {launcher(gpus, path)}"


def flags(wildcards, input):
    """``--name file ...`` for every named input (the stage's flags are the inputs' names);
    inputs named ``{name}__{part}`` (one input function per run, see REPORT_STEP_INPUTS) are
    joined under one ``--name``, in input order."""
    merged = {}
    for name in input.keys():
        files = input[name] if isinstance(input[name], list) else [input[name]]
        merged.setdefault(name.split("__")[0], []).extend(files)
    return " ".join(
        f"--{name.replace('_', '-')} {' '.join(files)}"
        for name, files in merged.items()
    )


def attribute_pairs(wildcards):
    """The pairs an attribute job scores: the task's operand pairs, or the run's style pairs."""
    if pairs_kind(config["attribute"], wildcards.task) == "style":
        return layout.style_pairs(wildcards.run, wildcards.task, EXP)
    return layout.pairs(wildcards.task, EXP)


def intervene_inputs(wildcards):
    """The think-mode comparison, when evaluate.heads takes the intervened heads from it; for a
    replicate, its replicated run's heads (their robust emergent set)."""
    run = config["runs"][wildcards.run]
    group = run["replicate_of"]
    if config["evaluate"]["heads"] == "emergent":
        if (
            group is None or run["base_seed"] is not None
        ):  # heads of two bases are not the same heads
            return {}
        return {
            "replicate_heads": layout.replicates(
                "replicate_heads", group, wildcards.task, EXP
            )
        }
    return {
        "think_modes": layout.circuits(
            "think_modes", wildcards.run, wildcards.task, EXP
        )
    }


def run_task(run):
    return config["runs"][run]["task"]


def run_task_of(wildcards):
    return run_task(wildcards.run)


def given_checkpoints(wildcards):
    """A models run's local checkpoints (their config.json), unnamed inputs: the stage finds them
    through the config, and one saved again (or one more in the folder) rewrites the manifest.
    """
    run = config["runs"][wildcards.run]
    if run["method"] != registry.GIVEN:
        return []
    return input_files(run["checkpoints"], f"runs.{wildcards.run}.checkpoints")


def run_inputs(wildcards):
    """A run's inputs: base model and task problems, plus the teacher's samples for distillation
    (none for a models run)."""
    run = config["runs"][wildcards.run]
    if run["method"] == registry.GIVEN:
        return {}
    inputs = {
        "base": layout.model(base_role(config, wildcards.run), EXP),
        "problems": layout.problems(run["task"], EXP),
    }
    if run["method"] == "distill":
        inputs["teacher_traces"] = layout.teacher_traces(wildcards.run, EXP)
    return inputs


def teacher_inputs(wildcards):
    """A distill run's teacher sampling: its problems, and the prepared model it samples if it
    names one by role: the experiment's teacher, or the run's own base (self-distillation).
    """
    run = config["runs"][wildcards.run]
    inputs = {"problems": layout.problems(run["task"], EXP)}
    role = {"teacher": "teacher", "base": base_role(config, wildcards.run)}
    if run["distill"]["teacher"] in role:
        inputs["teacher"] = layout.model(role[run["distill"]["teacher"]], EXP)
    return inputs


def checkpoint_steps(run):
    """The steps a finished run saved (Snakemake re-evaluates this once training is done)."""
    return list(
        read_manifest(checkpoints.train.get(exp=EXP, run=run).output.manifest).steps
    )


def attribution_tables(wildcards):
    """Every attribute-stage table of a run's checkpoints, by kind, and its train log (for aggregate)."""
    steps = checkpoint_steps(wildcards.run)
    tables = {
        kind: [
            layout.attribution(kind, wildcards.run, s, wildcards.task, EXP)
            for s in steps
        ]
        for kind in AGGREGATE_INPUTS
    }
    return {**tables, "train_log": layout.train_log(wildcards.run, EXP)}


def think_mode_tables(wildcards):
    """Heads and edges of a run's compared checkpoints in both think modes (for think_modes)."""
    steps = compare_steps(
        checkpoint_steps(wildcards.run), config["attribute"]["compare_think_at"]
    )
    main = config["attribute"]["think"]
    return {
        f"{kind}_{mode}": [
            layout.attribution_in_mode(
                kind, mode == "on", main, wildcards.run, s, wildcards.task, EXP
            )
            for s in steps
        ]
        for kind in ("heads", "edges")
        for mode in ("on", "off")
    }


def intervention_parts(wildcards, kind):
    """A run's per-condition intervene tables (table or samples), in condition order."""
    return [
        layout.intervention_part(kind, c, wildcards.run, wildcards.task, EXP)
        for c in CONDITIONS
    ]


def failure_inputs(wildcards):
    """Every sample of a run: its eval tables, its intervention samples, and the problems."""
    task = run_task(wildcards.run)
    return {
        "problems": layout.problems(task, EXP),
        "eval": [
            layout.eval_samples(wildcards.run, s, task, EXP)
            for s in checkpoint_steps(wildcards.run)
        ],
        "samples": layout.intervention_samples(wildcards.run, task, EXP),
    }


def plot_inputs(wildcards):
    """Every table a run's figures and report section read (sparks.plot.INPUTS)."""
    run, task = wildcards.run, wildcards.task
    steps = checkpoint_steps(run)
    tables = {
        name: layout.circuits(name, run, task, EXP)
        for name in (
            "circuit",
            "cohorts",
            "frequency",
            "similarity",
            "emergence",
            "importance",
        )
    }
    tables["train_log"] = layout.train_log(run, EXP)
    tables["problems"] = layout.problems(task, EXP)
    tables["faithfulness"] = [
        layout.attribution("faithfulness", run, s, task, EXP) for s in steps
    ]
    tables["passk"] = [layout.passk(run, s, task, EXP) for s in steps]
    tables["eval"] = [layout.eval_samples(run, s, task, EXP) for s in steps]
    tables["interventions"] = layout.interventions(run, task, EXP)
    for name in ("failures", "failure_changes", "failure_shares"):
        tables[name] = layout.failures(name, run, EXP)
    if config["attribute"]["compare_think_at"] != "none":
        for name in ("think_modes", "think_overlap"):
            tables[name] = layout.circuits(name, run, task, EXP)
    return tables


def report_sections(wildcards):
    """Every run's report section, in the config's order of runs; a replicated run's comparison
    of its replicates comes before their own sections."""
    sections = []
    for run, settings in config["runs"].items():
        group = settings["replicate_of"]
        if group is not None and run == config["replicates"][group][0]:
            sections.append(layout.report_section(group, run_task(run), EXP))
        sections.append(layout.report_section(run, run_task(run), EXP))
    return sections


def report_runs():
    return [r for group in config["claim_groups"].values() for r in group]


def report_inputs(wildcards):
    """The runs' sections, every run's tables the report reads (sparks.plot.report.REPORT_INPUTS)
    but those of each checkpoint (report_step_inputs), and the prepared models whose accuracy the
    setup table shows."""
    runs = report_runs()
    per_run = {
        name: [layout.circuits(name, r, run_task(r), EXP) for r in runs]
        for name in (
            "circuit",
            "cohorts",
            "frequency",
            "stability",
            "agreement",
            "null_calls",
            "planted",
            "circuit_rules",
        )
    }
    groups = {
        name: [
            layout.replicates(name, g, run_task(rs[0]), EXP)
            for g, rs in config["claim_groups"].items()
        ]
        for name in ("replicate_heads", "replicate_claims")
    }
    teacher = any(
        run["method"] == "distill" and run["distill"]["teacher"] == "teacher"
        for run in config["runs"].values()
    )
    return {
        "sections": report_sections(wildcards),
        **per_run,
        "failure_shares": [layout.failures("failure_shares", r, EXP) for r in runs],
        "train_log": [layout.train_log(r, EXP) for r in runs],
        "interventions": [layout.interventions(r, run_task(r), EXP) for r in runs],
        **groups,
        "models": [
            layout.model(role, EXP)
            for role in base_roles(config) + (["teacher"] if teacher else [])
        ],
    }


def _step_tables(run, name):
    def inputs(wildcards):
        path = layout.passk if name == "passk" else partial(layout.attribution, name)
        return [path(run, s, run_task(run), EXP) for s in checkpoint_steps(run)]

    return inputs


# The report's per-checkpoint inputs, one input function per run and table ("{table}__{run}"):
# each asks for its own run's checkpoints, so that every run's training is planned at once.
REPORT_STEP_INPUTS = {
    f"{name}__{run}": _step_tables(run, name)
    for run in report_runs()
    for name in ("heads", "passk")
}


def replicate_names(wildcards):
    return config["claim_groups"][wildcards.group]


def replicate_inputs(wildcards):
    """Each replicate's cohorts, frequency and emergence tables, and its eval samples."""
    tables = {
        name: [
            layout.circuits(name, r, wildcards.task, EXP)
            for r in replicate_names(wildcards)
        ]
        for name in ("cohorts", "frequency", "emergence")
    }
    tables["eval"] = [
        layout.eval_samples(r, s, wildcards.task, EXP)
        for r in replicate_names(wildcards)
        for s in checkpoint_steps(r)
    ]
    return tables


def claims_inputs(wildcards):
    """The replicates tables, every replicate's failures (every sample) and null calls and, if
    compared, think overlap."""
    tables = {
        name: layout.replicates(name, wildcards.group, wildcards.task, EXP)
        for name in ("replicate_heads", "replicate_reward")
    }
    tables["failures"] = [
        layout.failures("failures", r, EXP) for r in replicate_names(wildcards)
    ]
    tables["null_calls"] = [
        layout.circuits("null_calls", r, wildcards.task, EXP)
        for r in replicate_names(wildcards)
    ]
    if config["attribute"]["compare_think_at"] != "none":
        tables["think_overlap"] = [
            layout.circuits("think_overlap", r, wildcards.task, EXP)
            for r in replicate_names(wildcards)
        ]
    return tables


def final_targets(wildcards):
    return [layout.report(EXP)]


# Local jobs start from a process that has imported torch and transformers already
# (sparks.forkserver); cluster jobs start on their own nodes, as before.
FORK_SERVERS = []


def start_fork_server():
    if workflow.local_exec and workflow.is_main_process:
        server = forkserver.start(
            Path(".snakemake") / "sparks-forkserver.log", "sparks.cli:main"
        )
        FORK_SERVERS.extend([server] if server else [])


def stop_fork_server():
    while FORK_SERVERS:
        FORK_SERVERS.pop().stop()


onstart:
    start_fork_server()


onsuccess:
    stop_fork_server()


onerror:
    stop_fork_server()
