"""Every path under ``results/{exp}/``: one function per artefact, and no other module spells one.

Called without arguments a function returns the Snakemake pattern, wildcards in braces
(``layout.attribution("heads")`` is ``results/{exp}/heads/{run}/{step}/{task}.parquet``); called with values
it returns the concrete path. The rules build every input and output here; the stages take the
files their rule names and never derive one path from another.

A run's checkpoint folders (``checkpoint-{step}/``, as the trainer names them) lie beside its
manifest, which lists them: readers ask :mod:`sparks.manifest` for a checkpoint, not this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

ROOT = "results"
ATTRIBUTION = ("heads", "edges", "pair_edges", "faithfulness", "head_effects")  # the attribute stage's tables
CIRCUITS = (
    "circuit",
    "cohorts",
    "frequency",
    "stability",
    "similarity",
    "emergence",
    "importance",
    "agreement",
    "null_calls",
    "planted",
    "circuit_rules",
)  # the aggregate stage's
FAILURES = ("failures", "failure_changes", "failure_shares")  # the failures stage's
THINK_MODES = ("think_modes", "think_overlap")  # the think-modes step of the aggregate stage
PAIR_KINDS = ("pair_kinds",)  # emergence calls on operand vs style pairs (attribute.compare_pairs)
POLICIES = ("policy_comparison",)  # a head policy's replicates against its plain run's (runs.<name>.heads.compare_to)
REPLICATES = (
    "replicate_heads",
    "replicate_jaccard",
    "replicate_counts",
    "replicate_timing",
    "replicate_reward",
    "replicate_accuracy",
)


def tables(path: Callable[[str], str], names: Iterable[str]) -> dict[str, str]:
    """``{name: path(name)}`` for each of ``names``: a stage's named outputs (``path``: one of the
    table functions below, e.g. ``tables(circuits, CIRCUITS)``)."""
    return {name: path(name) for name in names}


def experiment(exp: str = "{exp}") -> str:
    """The experiment's results folder."""
    return f"{ROOT}/{exp}"


def model(role: str = "{role}", exp: str = "{exp}") -> str:
    """The base or teacher model folder written by prepare-model (with its accuracy.parquet)."""
    return f"{experiment(exp)}/{role}"


def problems(task: str = "{task}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/data/{task}_problems.parquet"


def pairs(task: str = "{task}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/data/{task}_pairs.parquet"


def style_pairs(run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    """A run's style-contrast pairs on a task (the pairs schema; attribute.pairs = style)."""
    return f"{experiment(exp)}/data/style/{run}/{task}.parquet"


def replicate(run: str, seed: int) -> str:
    """The name of a run's replicate with trainer seed ``seed`` (runs.<run>.seeds): its folders
    and tables are those of a run of this name. User run names are alphanumeric, so none collides."""
    return f"{run}-s{seed}"


def base_replicate(run: str, seed: int) -> str:
    """The name of a run's replicate on base replicate ``seed`` (base.seeds), and with run
    "base" the name of that base model (``model(base_replicate("base", seed))``)."""
    return f"{run}-b{seed}"


def replicates(name: str, group: str = "{group}", task: str = "{task}", exp: str = "{exp}") -> str:
    """A table comparing a replicated run's replicates (one of REPLICATES, or replicate_claims)."""
    _check(name, (*REPLICATES, "replicate_claims"))
    return f"{experiment(exp)}/replicates/{group}/{task}/{name}.parquet"


def policies(name: str, group: str = "{group}", task: str = "{task}", exp: str = "{exp}") -> str:
    """A table comparing a head-policy run with its plain run (one of POLICIES)."""
    _check(name, POLICIES)
    return f"{experiment(exp)}/policies/{group}/{task}/{name}.parquet"


def manifest(run: str = "{run}", exp: str = "{exp}") -> str:
    """A run's checkpoints.json; its checkpoint folders lie beside it."""
    return f"{experiment(exp)}/runs/{run}/checkpoints.json"


def accelerate_config(run: str = "{run}", exp: str = "{exp}") -> str:
    """The accelerate config a several-GPU training job is launched with (resources.train.gpus)."""
    return f"{experiment(exp)}/runs/{run}/accelerate.yaml"


def teacher_traces(run: str = "{run}", exp: str = "{exp}") -> str:
    """A distill run's teacher samples (one table per run: the sampling settings are the run's)."""
    return f"{experiment(exp)}/teacher_traces/{run}.parquet"


def head_policy(run: str = "{run}", exp: str = "{exp}") -> str:
    """A run's head policy resolved into heads (runs.<name>.heads), read by its train job."""
    return f"{experiment(exp)}/head_policies/{run}.parquet"


def calculation_heads(role: str = "{role}", task: str = "{task}", exp: str = "{exp}") -> str:
    """Every head of a prepared model ablated in turn on a task: the calculation-error share it raises."""
    return f"{experiment(exp)}/calculation_heads/{role}/{task}.parquet"


def head_ablations(role: str = "{role}", task: str = "{task}", exp: str = "{exp}") -> str:
    """A prepared model's samples on a task's eval problems with each head ablated alone (and unablated)."""
    return f"{experiment(exp)}/calculation_heads/{role}/{task}_samples.parquet"


def train_log(run: str = "{run}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/runs/{run}/train_log.parquet"


def attribution(kind: str, run: str = "{run}", step: int | str = "{step}", task: str = "{task}", exp: str = "{exp}") -> str:
    """An attribute-stage table (one of ATTRIBUTION) of one checkpoint, in the config's think mode."""
    _check(kind, ATTRIBUTION)
    return f"{experiment(exp)}/{kind}/{run}/{step}/{task}.parquet"


def think_attribution(
    kind: str, mode: str = "{mode}", run: str = "{run}", step: int | str = "{step}", task: str = "{task}", exp: str = "{exp}"
) -> str:
    """A heads or edges table of one checkpoint scored on the other think mode's pairs (on | off)."""
    _check(kind, ("heads", "edges"))
    return f"{experiment(exp)}/think/{mode}/{kind}/{run}/{step}/{task}.parquet"


def attribution_in_mode(kind: str, think: bool, main_think: bool, run: str, step: int, task: str, exp: str) -> str:
    """Heads or edges of one checkpoint in think mode ``think``: the main table when it is the
    config's own mode (``attribute.think`` = ``main_think``), else the think/ tree."""
    if think == main_think:
        return attribution(kind, run, step, task, exp)
    return think_attribution(kind, "on" if think else "off", run, step, task, exp)


def circuits(name: str, run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    """A per-run aggregate table (one of CIRCUITS, THINK_MODES or PAIR_KINDS)."""
    _check(name, CIRCUITS + THINK_MODES + PAIR_KINDS)
    return f"{experiment(exp)}/circuits/{run}/{task}/{name}.parquet"


def style_attribution(kind: str, run: str = "{run}", step: int | str = "{step}", task: str = "{task}", exp: str = "{exp}") -> str:
    """An attribute-stage table (one of ATTRIBUTION) of one checkpoint scored on the run's style
    pairs, think on, beside its operand-pair circuits (attribute.compare_pairs)."""
    _check(kind, ATTRIBUTION)
    return f"{experiment(exp)}/style/{kind}/{run}/{step}/{task}.parquet"


def style_circuits(name: str, run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    """An aggregate table (one of CIRCUITS) of a run's style-pair circuits (attribute.compare_pairs)."""
    _check(name, CIRCUITS)
    return f"{experiment(exp)}/style/circuits/{run}/{task}/{name}.parquet"


def eval_samples(run: str = "{run}", step: int | str = "{step}", task: str = "{task}", exp: str = "{exp}") -> str:
    """Every sampled completion of one checkpoint (the eval table)."""
    return f"{experiment(exp)}/bench/{run}/eval/{step}/{task}.parquet"


def passk(run: str = "{run}", step: int | str = "{step}", task: str = "{task}", exp: str = "{exp}") -> str:
    """Accuracy, pass@k, success@k and all-correct@k of one checkpoint by difficulty and k."""
    return f"{experiment(exp)}/bench/{run}/passk/{step}/{task}.parquet"


def interventions(run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/bench/{run}/interventions/{task}.parquet"


def intervention_samples(run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/bench/{run}/interventions/{task}_samples.parquet"


def intervention_part(
    kind: str, condition: str = "{condition}", run: str = "{run}", task: str = "{task}", exp: str = "{exp}"
) -> str:
    """One condition's interventions (``table``) or intervention_samples (``samples``) table, with
    evaluate.split_interventions; merge_interventions joins them into the two above."""
    _check(kind, ("table", "samples"))
    return f"{experiment(exp)}/bench/{run}/interventions/parts/{task}/{condition}_{kind}.parquet"


def failures(name: str, run: str = "{run}", exp: str = "{exp}") -> str:
    """The failures stage's tables: failures, failure_changes, failure_shares."""
    _check(name, ("failures", "failure_changes", "failure_shares"))
    return f"{experiment(exp)}/bench/{run}/{name}.parquet"


def figure(name: str, ext: str, run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/figures/{run}/{task}_{name}.{ext}"


def report_section(run: str = "{run}", task: str = "{task}", exp: str = "{exp}") -> str:
    """One run's part of the report (HTML, its figures embedded), written by the plot stage."""
    return f"{experiment(exp)}/sections/{run}/{task}.html"


def report(exp: str = "{exp}") -> str:
    return f"{experiment(exp)}/report.html"


def log(rule: str, *parts: str, exp: str = "{exp}") -> str:
    """A job's log: ``logs/{rule}/{parts...}.log`` (parts: the job's wildcards)."""
    return "/".join((experiment(exp), "logs", rule, *parts)) + ".log"


def timing(rule: str, *parts: str, exp: str = "{exp}") -> str:
    """A job's Snakemake benchmark file: ``timings/{rule}/{parts...}.tsv``."""
    return "/".join((experiment(exp), "timings", rule, *parts)) + ".tsv"


def _check(name: str, known: tuple[str, ...]) -> None:
    if name not in known:
        raise KeyError(f"unknown artefact {name!r}; known here: {', '.join(known)}")
