# Config checking, wildcard constraints and the workflow graph (sparks.workflow) the rules call.
# Every path comes from sparks.layout; every step list from the runs' manifests.
import re
from functools import partial
from pathlib import Path

from sparks import forkserver, layout, workflow as graph
from sparks.config import ConfigError, base_roles, check_config
from sparks.manifest import read_manifest
from sparks.plan import check_fits
from sparks.plot import REPLICATE_FIGURES, REPLICATE_INPUTS, figure_names
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
    # sparks plan's estimates: every job within its GPU card and time limit
    check_fits(config)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

EXP = config["experiment"]
CONFIG_FILE = str(workflow.configfiles[0])


def checkpoint_steps(run):
    """The steps a finished run saved (Snakemake re-evaluates this once training is done)."""
    return list(
        read_manifest(checkpoints.train.get(exp=EXP, run=run).output.manifest).steps
    )


WF = graph.Workflow(config, CONFIG_FILE, checkpoint_steps)
resources_of = partial(graph.resources, config)
flags, out_flags = graph.flags, graph.out_flags

# evaluate.split_interventions: one intervene job per condition, joined by merge_interventions.
INTERVENE_PER = ("{condition}",) if WF.split_interventions else ()
INTERVENE_OUT = (
    {
        "interventions": layout.intervention_part("table"),
        "intervention_samples": layout.intervention_part("samples"),
    }
    if WF.split_interventions
    else {
        "interventions": layout.interventions(),
        "intervention_samples": layout.intervention_samples(),
    }
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
    role=r"base|teacher|base-b\d+",
    condition="|".join(re.escape(c) for c in WF.conditions),


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
