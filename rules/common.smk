# Config checking, wildcard constraints and the helper functions the rules call.
import json
from pathlib import Path

from sparks.attribute import TABLES as ATTRIBUTE_TABLES
from sparks.config import ConfigError, check_config
from sparks.aggregate.think_modes import compare_steps, mode_table_path
from sparks.plot import figure_names

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


wildcard_constraints:
    exp=EXP,
    run="|".join(config["runs"]),
    task="|".join(config["tasks"]),
    step=r"\d+",
    mode="on|off",


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


def run_inputs(wildcards):
    """A run's inputs: base model and task data, plus the teacher for distillation."""
    run = config["runs"][wildcards.run]
    inputs = {
        "base": f"results/{EXP}/base",
        "problems": f"results/{EXP}/data/{run['task']}_problems.parquet",
    }
    if run["method"] == "distill" and run["distill"]["teacher"] == "teacher":
        inputs["teacher"] = f"results/{EXP}/teacher"
    return inputs


def teacher_flag(wildcards, input):
    return f"--teacher {input.teacher}" if "teacher" in input.keys() else ""


def checkpoint_steps(run):
    """The steps a finished run saved (Snakemake re-evaluates this once training is done)."""
    manifest = checkpoints.train.get(exp=EXP, run=run).output.manifest
    with open(manifest) as handle:
        return json.load(handle)["steps"]


def attribution_tables(wildcards):
    """Every attribute-stage table of a run's checkpoints, by kind (for aggregate)."""
    steps = checkpoint_steps(wildcards.run)
    root = f"results/{EXP}/{{kind}}/{wildcards.run}/{{step}}/{wildcards.task}.parquet"
    return {k: [root.format(kind=k, step=s) for s in steps] for k in ATTRIBUTE_TABLES}


def plot_inputs(wildcards):
    """A run's aggregate tables, faithfulness curves and benchmark tables (for plot)."""
    run, task = wildcards.run, wildcards.task
    root = f"results/{EXP}/circuits/{run}/{task}"
    tables = {
        name: f"{root}/{name}.parquet" for name in ("circuit", "cohorts", "frequency")
    }
    tables["faithfulness"] = attribution_tables(wildcards)["faithfulness"]
    tables["eval"] = [
        f"results/{EXP}/bench/{run}/eval/{step}/{task}.parquet"
        for step in checkpoint_steps(run)
    ]
    tables["interventions"] = f"results/{EXP}/bench/{run}/interventions/{task}.parquet"
    if config["attribute"]["compare_think_at"] != "none":
        tables["think_modes"] = f"{root}/think_modes.parquet"
    tables["failures"] = f"results/{EXP}/bench/{run}/failures.parquet"
    return tables


def report_inputs(wildcards):
    """Every run's figures (the report embeds them) and aggregate tables."""
    inputs = []
    for run, settings in config["runs"].items():
        for name in figure_names(config):
            inputs.append(f"results/{EXP}/figures/{run}/{settings['task']}_{name}.png")
        inputs.append(
            f"results/{EXP}/circuits/{run}/{settings['task']}/similarity.parquet"
        )
        inputs.append(f"results/{EXP}/bench/{run}/failure_changes.parquet")
    return inputs


def failure_inputs(wildcards):
    """Every sample of a run: its eval tables, its intervention samples, and the problems."""
    task = config["runs"][wildcards.run]["task"]
    root = f"results/{EXP}/bench/{wildcards.run}"
    return {
        "eval": [
            f"{root}/eval/{step}/{task}.parquet"
            for step in checkpoint_steps(wildcards.run)
        ],
        "samples": f"{root}/interventions/{task}_samples.parquet",
        "problems": f"results/{EXP}/data/{task}_problems.parquet",
    }


def think_mode_tables(wildcards):
    """Heads and edges of a run's compared checkpoints in both think modes (for think_modes)."""
    root = Path(f"results/{EXP}")
    steps = compare_steps(
        checkpoint_steps(wildcards.run), config["attribute"]["compare_think_at"]
    )
    main = config["attribute"]["think"]
    return {
        f"{kind}_{mode}": [
            str(
                mode_table_path(
                    root, kind, wildcards.run, s, wildcards.task, think, main
                )
            )
            for s in steps
        ]
        for kind in ("heads", "edges")
        for mode, think in (("on", True), ("off", False))
    }


def final_targets(wildcards):
    return [f"results/{EXP}/report.html"]
