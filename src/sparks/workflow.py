"""The workflow graph in plain Python: per rule, the files its jobs read (every path from
:mod:`sparks.layout`), its resources and whether it needs a GPU. ``rules/*.smk`` call a
:class:`Workflow` with their wildcards; ``sparks plan`` and the SLURM profile read :data:`GPU_RULES`.

A run's steps come from ``steps_of`` (in the rules, Snakemake's ``train`` checkpoint, which reads
the run's manifest; in a test, any function). Nothing here imports torch, transformers or
seaborn: a Snakefile parse and ``sparks plan`` stay light.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sparks import layout, registry

GPU_RULES = (
    "prepare_model", "teacher_traces", "head_ablations", "train", "style_pairs", "attribute", "attribute_think",
    "attribute_style", "evaluate", "intervene",
)  # fmt: skip
CPU_RULES = (
    "prepare_data", "calculation_heads", "head_policy", "aggregate", "think_modes", "aggregate_style", "pair_kinds", "merge_interventions", "failures", "plot",
    "replicates", "claims", "policy_comparison", "plot_replicates", "report",
)  # fmt: skip
# The resources section (config ``resources.<name>``) a rule's jobs take when it is not its own.
RESOURCES_OF = {
    "claims": "replicates", "plot_replicates": "plot", "attribute_style": "attribute", "aggregate_style": "aggregate",
    "pair_kinds": "think_modes", "head_ablations": "intervene", "calculation_heads": "failures",
    "head_policy": "think_modes",
    "policy_comparison": "replicates",
}  # fmt: skip
# The report's inputs (sparks.plot.report.REPORT_INPUTS) read at every checkpoint of a run: one
# input function per run each (report_step_inputs).
REPORT_PER_CHECKPOINT = ("heads", "passk")


class Job(NamedTuple):
    """One job of the DAG: its rule, and the run, model role, task or claim group it is for."""

    rule: str
    of: str = ""
    task: str = ""  # the evaluation set of an evaluate, intervene or merge job on a run's other set (evaluate_on); a head_ablations or calculation_heads job's task


# CPU cores per job where one is not enough: training takes CPUS_PER_GPU per GPU (data loading,
# tokenising, each process's host work), the generating rules CPUS_PER_GPU (tokenisers, vLLM's
# engine and detokeniser processes); resources.<rule>.cpus overrides.
CPUS_PER_GPU = 4
GENERATING_RULES = ("teacher_traces", "head_ablations", "style_pairs", "evaluate", "intervene")


def resources(config: Mapping[str, Any], rule: str) -> dict[str, int]:
    """A rule's job resources: memory (train: per GPU process, times its GPUs), run time and CPU
    cores from its ``resources`` section, and the GPUs a GPU rule asks for (train:
    ``resources.train.gpus``, on one node; every other GPU rule one)."""
    if rule not in GPU_RULES + CPU_RULES:
        raise KeyError(f"no rule {rule!r} in the workflow; known: {', '.join(GPU_RULES + CPU_RULES)}")
    job = config["resources"][RESOURCES_OF.get(rule, rule)]
    gpus = job.get("gpus", 1) if rule == "train" else int(rule in GPU_RULES)
    cpus = CPUS_PER_GPU * gpus if rule == "train" or rule in GENERATING_RULES else 1
    out = {"mem_mb": job["mem_mb"] * (gpus if rule == "train" else 1), "runtime": job["runtime"]}
    out["cpus_per_task"] = job.get("cpus") or cpus
    if rule in GPU_RULES:
        out["gpu"] = gpus
        out["nodes"] = 1  # accelerate's config is one machine's (sparks.train.launch)
    return out


def _flags(files: Any, suffix: str = "") -> str:
    """``--name files`` for every named file list; names ``{name}__{part}`` are joined under one
    ``--name``, in order (one input function per run, see :meth:`Workflow.report_step_inputs`)."""
    merged: dict[str, list[str]] = {}
    for name in files.keys():  # noqa: SIM118 (Snakemake's named lists iterate over files)
        given = files[name] if isinstance(files[name], list) else [files[name]]
        merged.setdefault(name.split("__")[0], []).extend(given)
    return " ".join(f"--{name.replace('_', '-')}{suffix} {' '.join(given)}" for name, given in merged.items())


def flags(wildcards: Any, input: Any) -> str:
    """``--name file ...`` for every named input (a stage's input flags are its inputs' names)."""
    return _flags(input)


def out_flags(wildcards: Any, output: Any) -> str:
    """``--name-out file ...`` for every named output (a stage's output flags are ``--<table>-out``)."""
    return _flags(output, "-out")


class Workflow:
    """The input functions of one checked ``config`` (its file ``config_file``); ``steps_of(run)``
    lists a run's saved steps. Every method taking ``wildcards`` is a Snakemake input or params
    function (anything with the wildcards as attributes will do)."""

    def __init__(self, config: dict[str, Any], config_file: str, steps_of: Callable[[str], list[int]]):
        from sparks.evaluate.conditions import EvaluateSettings, conditions

        self.config, self.config_file, self.steps_of = config, config_file, steps_of
        self.exp = config["experiment"]
        self.split_interventions = config["evaluate"]["split_interventions"]
        self.conditions = [c.name for c in conditions(EvaluateSettings.from_config(config))]
        self.prompt = json.dumps(config["prompt"], sort_keys=True)  # a param of every job that prompts a model
        self.generation = json.dumps(config["generation"], sort_keys=True)  # and of every one that samples

    # --- params -----------------------------------------------------------------------------

    def settings(self, *keys: str, ignore: tuple[str, ...] = ()) -> Callable[[Any], str]:
        """The config section a job depends on, plus the seed, as a param so that editing it re-runs
        exactly the affected jobs. A key in braces ("{run}") names a wildcard; ``ignore`` names keys
        of the section the job does not read."""

        def section(wildcards: Any) -> str:
            value = self.config
            for key in keys:
                value = value[getattr(wildcards, key[1:-1]) if key.startswith("{") else key]
            value = {k: v for k, v in value.items() if k not in ignore}
            return json.dumps({"seed": self.config["seed"], "section": value}, sort_keys=True)

        return section

    def evaluate_settings(self) -> Callable[[Any], str]:
        """The evaluate section as a sampling job's param, without the keys that decide only how
        jobs are split or which configs are accepted."""
        return self.settings("evaluate", ignore=("split_interventions", "short_generation_ok"))

    def model_settings(self, wildcards: Any) -> str:
        """A prepared model's settings (its section, its pre-training seed), as :meth:`settings`;
        the base replicates list (base.seeds) is left out: adding a seed re-runs no other base."""
        from sparks.config import model_section

        section, base_seed = model_section(self.config, wildcards.role)
        section = {k: v for k, v in section.items() if k != "seeds"}
        return json.dumps({"seed": self.config["seed"] + base_seed, "section": section}, sort_keys=True)

    def train_launcher(self, wildcards: Any) -> str:
        """``sparks``, or with resources.train.gpus > 1 the accelerate config written and then
        ``accelerate launch`` on that many processes (sparks.train.launch)."""
        from sparks.train.launch import launcher

        gpus = self.config["resources"]["train"]["gpus"]
        if gpus == 1:
            return launcher(1, "")
        path = layout.accelerate_config(wildcards.run, self.exp)
        return f"mkdir -p $(dirname {path}) && sparks accelerate-config --config {self.config_file} --out {path} && " + launcher(
            gpus, path
        )

    def run_task(self, run: str) -> str:
        return self.config["runs"][run]["task"]

    def run_task_of(self, wildcards: Any) -> str:
        return self.run_task(wildcards.run)

    def condition_flag(self, wildcards: Any) -> str:
        return f"--condition {wildcards.condition}" if self.split_interventions else ""

    # --- inputs -----------------------------------------------------------------------------

    def attribute_pairs(self, wildcards: Any) -> str:
        """The pairs an attribute job scores: the task's operand pairs, or the run's style pairs."""
        from sparks.config import pairs_kind

        if pairs_kind(self.config["attribute"], wildcards.task) == "style":
            return layout.style_pairs(wildcards.run, wildcards.task, self.exp)
        return layout.pairs(wildcards.task, self.exp)

    def uses_style_pairs(self, run: str) -> bool:
        """Whether a run's style pairs are sampled: its circuits are scored on them, or compared with them."""
        from sparks.config import compares_pairs, pairs_kind

        return compares_pairs(self.config, run) or pairs_kind(self.config["attribute"], self.run_task(run)) == "style"

    def given_checkpoints(self, wildcards: Any) -> list[str]:
        """A models run's local checkpoints (their config.json), unnamed inputs: the stage finds them
        through the config, and one saved again (or one more in the folder) rewrites the manifest."""
        from sparks.sources import input_files

        run = self.config["runs"][wildcards.run]
        if run["method"] != registry.GIVEN:
            return []
        return input_files(run["checkpoints"], f"runs.{wildcards.run}.checkpoints")

    def run_inputs(self, wildcards: Any) -> dict[str, str]:
        """A run's inputs: base model and task problems, plus the teacher's samples for
        distillation (none for a models run)."""
        from sparks.config import base_role
        from sparks.methods import training_method

        run = self.config["runs"][wildcards.run]
        if run["method"] == registry.GIVEN:
            return {}
        inputs = {
            "base": layout.model(base_role(self.config, wildcards.run), self.exp),
            "problems": layout.problems(run["task"], self.exp),
        }
        extra = {"teacher_traces": layout.teacher_traces}  # what a method may read beyond base and problems
        for name in training_method(run["method"]).inputs:
            inputs[name] = extra[name](wildcards.run, self.exp)
        if run["heads"] is not None:
            inputs["head_policy"] = layout.head_policy(wildcards.run, self.exp)
        return inputs

    def head_policy_inputs(self, wildcards: Any) -> dict[str, str]:
        """The table each head set of a run's policy is read from (none for a literal list): the
        runs it names must have finished their aggregate (or replicates, or calculation-heads) jobs."""
        from sparks.config import head_sets
        from sparks.train.policy import head_set_table

        sets = head_sets(self.config["runs"][wildcards.run])
        tables = {policy: head_set_table(self.config, wildcards.run, spec) for policy, spec in sets.items()}
        return {policy: path for policy, path in tables.items() if path is not None}

    def calculation_sets(self) -> dict[tuple[str, str], int]:
        """(starting model role, task) -> the largest k any run's ``{calculation_heads: k}`` asks of it."""
        from sparks.config import base_role, head_sets

        wanted: dict[tuple[str, str], int] = {}
        for run, settings in self.config["runs"].items():
            for spec in head_sets(settings).values():
                if isinstance(spec, dict) and "calculation_heads" in spec:
                    key = (base_role(self.config, run), settings["task"])
                    wanted[key] = max(wanted.get(key, 0), spec["calculation_heads"])
        return wanted

    def calculation_top_k(self, wildcards: Any) -> int:
        return self.calculation_sets()[(wildcards.role, wildcards.task)]

    def teacher_inputs(self, wildcards: Any) -> dict[str, str]:
        """A distill run's teacher sampling: its problems, and the prepared model it samples if it
        names one by role: the experiment's teacher, or the run's own base (self-distillation)."""
        from sparks.config import base_role

        run = self.config["runs"][wildcards.run]
        inputs = {"problems": layout.problems(run["task"], self.exp)}
        role = {"teacher": "teacher", "base": base_role(self.config, wildcards.run)}
        if run["distill"]["teacher"] in role:
            inputs["teacher"] = layout.model(role[run["distill"]["teacher"]], self.exp)
        return inputs

    def attribution_tables(self, wildcards: Any) -> dict[str, Any]:
        """Every attribute-stage table of a run's checkpoints, by kind, and its train log (aggregate)."""
        from sparks.aggregate import INPUTS

        steps = self.steps_of(wildcards.run)
        tables = {kind: [layout.attribution(kind, wildcards.run, s, wildcards.task, self.exp) for s in steps] for kind in INPUTS}
        return {**tables, "train_log": layout.train_log(wildcards.run, self.exp)}

    def style_attribution_tables(self, wildcards: Any) -> dict[str, Any]:
        """A compared run's attribute tables on style pairs, by kind, and its train log (aggregate_style)."""
        from sparks.aggregate import INPUTS

        steps = self.steps_of(wildcards.run)
        tables = {
            kind: [layout.style_attribution(kind, wildcards.run, s, wildcards.task, self.exp) for s in steps] for kind in INPUTS
        }
        return {**tables, "train_log": layout.train_log(wildcards.run, self.exp)}

    def think_mode_tables(self, wildcards: Any) -> dict[str, list[str]]:
        """Heads and edges of a run's compared checkpoints in both think modes (think_modes)."""
        from sparks.aggregate.think_modes import compare_steps

        steps = compare_steps(self.steps_of(wildcards.run), self.config["attribute"]["compare_think_at"])
        main = self.config["attribute"]["think"]
        return {
            f"{kind}_{mode}": [
                layout.attribution_in_mode(kind, mode == "on", main, wildcards.run, s, wildcards.task, self.exp) for s in steps
            ]
            for kind in ("heads", "edges")
            for mode in ("on", "off")
        }

    def intervene_inputs(self, wildcards: Any) -> dict[str, str]:
        """The run's cohorts and frequency (its circuits: on its own task, whichever set the
        interventions are evaluated on), and the think-mode comparison when evaluate.heads takes
        the intervened heads from it; for a replicate, its replicated run's heads (their robust
        emergent set)."""
        run, task = self.config["runs"][wildcards.run], self.run_task(wildcards.run)
        inputs = {name: layout.circuits(name, wildcards.run, task, self.exp) for name in ("cohorts", "frequency")}
        group = run["replicate_of"]
        if self.config["evaluate"]["heads"] != "emergent":
            inputs["think_modes"] = layout.circuits("think_modes", wildcards.run, task, self.exp)
        elif group is not None and run["base_seed"] is None:  # heads of two bases are not the same heads
            inputs["replicate_heads"] = layout.replicates("replicate_heads", group, task, self.exp)
        return inputs

    def intervention_parts(self, kind: str) -> Callable[[Any], list[str]]:
        """A run's per-condition intervene tables (``kind``: table or samples), in condition order."""

        def parts(wildcards: Any) -> list[str]:
            return [layout.intervention_part(kind, c, wildcards.run, wildcards.task, self.exp) for c in self.conditions]

        return parts

    def failure_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Every sample of a run: its eval tables, its intervention samples, and the problems."""
        run, task = wildcards.run, self.run_task(wildcards.run)
        return {
            "problems": layout.problems(task, self.exp),
            "eval": [layout.eval_samples(run, s, task, self.exp) for s in self.steps_of(run)],
            "samples": layout.intervention_samples(run, task, self.exp),
        }

    def run_table(self, name: str, run: str, task: str) -> str | list[str]:
        """The file (a list: one per checkpoint) of a run's table ``name`` (a sparks.tables schema
        the plot and report stages read)."""
        if name in layout.CIRCUITS or name in layout.THINK_MODES or name in layout.PAIR_KINDS:
            return layout.circuits(name, run, task, self.exp)
        if name in layout.FAILURES:
            return layout.failures(name, run, self.exp)
        single = {
            "train_log": lambda: layout.train_log(run, self.exp),
            "problems": lambda: layout.problems(task, self.exp),
            "interventions": lambda: layout.interventions(run, task, self.exp),
        }
        if name in single:
            return single[name]()
        per_step = {"passk": layout.passk, "eval": layout.eval_samples}
        if name in per_step or name in layout.ATTRIBUTION:
            path = per_step.get(name) or (lambda *a: layout.attribution(name, *a))
            return [path(run, s, task, self.exp) for s in self.steps_of(run)]
        raise KeyError(f"no file for a run's {name!r} table")

    def plot_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Every table a run's figures and report section read (sparks.plot.INPUTS), and with
        ``runs.<name>.evaluate_on`` those of its other evaluation sets (sparks.plot.SET_INPUTS)."""
        from sparks.config import compares_pairs
        from sparks.plot import INPUTS

        compared = self.config["attribute"]["compare_think_at"] != "none"
        names = [n for n in INPUTS if compared or n not in layout.THINK_MODES]
        names = [n for n in names if n not in layout.PAIR_KINDS or compares_pairs(self.config, wildcards.run)]
        tables = {name: self.run_table(name, wildcards.run, wildcards.task) for name in names}
        return tables | self.set_tables(wildcards.run)

    def set_tables(self, run: str) -> dict[str, list[str]]:
        """A run's tables on its other evaluation sets: accuracy at every checkpoint, the samples of
        its first and last (paired gains and losses) and the interventions."""
        from sparks.config import eval_sets

        others = eval_sets(self.config, run)[1:]
        if not others:
            return {}
        steps = self.steps_of(run)
        return {
            "set_passk": [layout.passk(run, s, t, self.exp) for t in others for s in steps],
            "set_eval": [layout.eval_samples(run, s, t, self.exp) for t in others for s in (steps[0], steps[-1])],
            "set_interventions": [layout.interventions(run, t, self.exp) for t in others],
        }

    def report_runs(self) -> list[str]:
        return [r for group in self.config["claim_groups"].values() for r in group]

    def report_sections(self, wildcards: Any = None) -> list[str]:
        """Every run's report section, in the config's order of runs; a replicated run's comparison
        of its replicates comes before their own sections."""
        sections = []
        for run, settings in self.config["runs"].items():
            group = settings["replicate_of"]
            if group is not None and run == self.config["replicates"][group][0]:
                sections.append(layout.report_section(group, self.run_task(run), self.exp))
            sections.append(layout.report_section(run, self.run_task(run), self.exp))
        return sections

    def report_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The runs' sections, every run's tables the report reads (sparks.plot.report.REPORT_INPUTS)
        but those of each checkpoint (:meth:`report_step_inputs`), and the prepared models whose
        accuracy the setup table shows."""
        from sparks.plot.report import REPORT_INPUTS

        runs, groups = self.report_runs(), self.config["claim_groups"]
        tables: dict[str, Any] = {"sections": self.report_sections()}
        for name in REPORT_INPUTS:
            if name in layout.REPLICATES or name == "replicate_claims":  # a claim group's
                tables[name] = [layout.replicates(name, g, self.run_task(rs[0]), self.exp) for g, rs in groups.items()]
            elif name in layout.POLICIES:  # a head-policy group's, if any
                tables[name] = [layout.policies(name, g, self.run_task(groups[g][0]), self.exp) for g in self.policy_groups()]
            elif name not in REPORT_PER_CHECKPOINT:
                tables[name] = [self.run_table(name, r, self.run_task(r)) for r in runs]
        tables["models"] = [layout.model(role, self.exp) for role in self.model_roles()]
        return tables

    def report_step_inputs(self) -> dict[str, Callable[[Any], list[str]]]:
        """The report's per-checkpoint inputs, one input function per run and table
        ("{table}__{run}"): each asks for its own run's checkpoints, so that every run's training
        is planned at once."""
        return {f"{name}__{run}": self._step_tables(name, run) for run in self.report_runs() for name in REPORT_PER_CHECKPOINT}

    def _step_tables(self, name: str, run: str) -> Callable[[Any], list[str]]:
        def tables(wildcards: Any) -> list[str]:
            return self.run_table(name, run, self.run_task(run))

        return tables

    def policy_groups(self) -> dict[str, str]:
        """Each claim group of a head-policy run with ``heads.compare_to`` -> the plain run it is compared with."""
        groups = {}
        for group, members in self.config["claim_groups"].items():
            heads = self.config["runs"][members[0]]["heads"] or {}
            if heads.get("compare_to"):
                groups[group] = heads["compare_to"]
        return groups

    def policy_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        """A policy group's replicates and, paired by seed, its plain run's: every sample's failure
        anatomy (failures) and the emergence cohorts, in replicate order."""
        from sparks.config import paired_run

        members = self.config["claim_groups"][wildcards.group]
        plain = [paired_run(self.config, r, self.policy_groups()[wildcards.group]) for r in members]
        tables: dict[str, list[str]] = {}
        for side, runs in (("policy", members), ("plain", plain)):
            tables[f"{side}_failures"] = [layout.failures("failures", r, self.exp) for r in runs]
            tables[f"{side}_cohorts"] = [layout.circuits("cohorts", r, self.run_task(r), self.exp) for r in runs]
        return tables

    def replicate_names(self, wildcards: Any) -> list[str]:
        return self.config["claim_groups"][wildcards.group]

    def replicate_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        """Each replicate's cohorts, frequency and emergence tables, and its eval samples."""
        from sparks.aggregate.replicates import INPUTS

        replicates = self.replicate_names(wildcards)
        tables = {name: [self.run_table(name, r, wildcards.task) for r in replicates] for name in INPUTS if name != "eval"}
        tables["eval"] = [path for r in replicates for path in self.run_table("eval", r, wildcards.task)]
        return tables

    def claims_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The replicates tables, every replicate's failures (every sample) and null calls and, if
        compared, think overlap."""
        replicates = self.replicate_names(wildcards)
        tables: dict[str, Any] = {
            name: layout.replicates(name, wildcards.group, wildcards.task, self.exp)
            for name in ("replicate_heads", "replicate_reward")
        }
        names = ["failures", "null_calls"]
        if self.config["attribute"]["compare_think_at"] != "none":
            names.append("think_overlap")
        tables |= {name: [self.run_table(name, r, wildcards.task) for r in replicates] for name in names}
        return tables

    # --- the job list ------------------------------------------------------------------------

    def model_roles(self) -> list[str]:
        """The prepared models: every base replicate, and the teacher if a distill run samples it."""
        from sparks.config import base_roles

        teacher = any(r["method"] == "distill" and r["distill"]["teacher"] == "teacher" for r in self.config["runs"].values())
        return base_roles(self.config) + (["teacher"] if teacher else [])

    def jobs(self) -> list[Job]:
        """Every job the DAG runs for this config (a run's per-checkpoint jobs once per step of
        ``steps_of``): the one job list ``sparks plan`` costs and a finished DAG's timings match."""
        from sparks.aggregate.think_modes import compare_steps
        from sparks.config import compares_pairs, eval_sets
        from sparks.methods import training_method

        config = self.config
        jobs = [Job("prepare_model", role) for role in self.model_roles()]
        jobs += [Job("prepare_data", task) for task in config["tasks"]]
        jobs += [
            Job(rule, role, task) for role, task in self.calculation_sets() for rule in ("head_ablations", "calculation_heads")
        ]
        for run, settings in config["runs"].items():
            steps = self.steps_of(run)
            compared = compare_steps(steps, config["attribute"]["compare_think_at"])
            jobs += [Job("head_policy", run)] * (settings["heads"] is not None)
            if settings["method"] != registry.GIVEN:
                jobs.append(Job("train", run))
                jobs += [Job("teacher_traces", run)] * ("teacher_traces" in training_method(settings["method"]).inputs)
            jobs += [Job("style_pairs", run)] * self.uses_style_pairs(run)
            jobs += [Job("attribute", run)] * len(steps) + [Job("attribute_think", run)] * len(compared)
            jobs += [Job("think_modes", run)] * bool(compared)
            if compares_pairs(config, run):
                jobs += [Job("attribute_style", run)] * len(steps) + [Job("aggregate_style", run), Job("pair_kinds", run)]
            for i, task in enumerate(eval_sets(config, run)):  # per evaluation set: the run's own task, then the others
                on = "" if i == 0 else task
                jobs += [Job("evaluate", run, on)] * len(steps)
                jobs += [Job("intervene", run, on)] * (len(self.conditions) if self.split_interventions else 1)
                jobs += [Job("merge_interventions", run, on)] * self.split_interventions
            jobs += [Job(rule, run) for rule in ("aggregate", "failures", "plot")]
        jobs += [Job("policy_comparison", group) for group in self.policy_groups()]
        for group in config["claim_groups"]:
            jobs += [Job("replicates", group), Job("claims", group)]
            jobs += [Job("plot_replicates", group)] * (group in config["replicates"])
        return [*jobs, Job("report")]

    def final_targets(self, wildcards: Any = None) -> list[str]:
        return [layout.report(self.exp)]
