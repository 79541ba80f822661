"""What a config will cost before it runs: per rule, the jobs, an estimate of GPU-hours and the
disk its outputs take (``sparks plan --config X``).

Every estimate is a count the config fixes (steps, examples, samples, tokens, checkpoints) times
a throughput stated here, once, with where it comes from (``Throughput``). Token counts take each
length limit at its maximum (base models rarely stop early), so GPU-hours are upper bounds for
generation and honest orders of magnitude for the rest; measure on your cluster and scale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from sparks import memory, registry
from sparks.config import ConfigError, pairs_kind
from sparks.evaluate.conditions import EvaluateSettings, conditions
from sparks.memory import model_shape
from sparks.methods import training_method
from sparks.model.graph import Graph
from sparks.sources import check_model_type
from sparks.workflow import GPU_RULES, RESOURCES_OF, Job, Workflow, resources


@dataclass(frozen=True)
class Throughput:
    """One H100-class GPU (989 TFLOP/s dense bf16, 3.35 TB/s).

    - ``hf_tokens_per_s_1b5``: batched ``model.generate`` (batch 64, bf16) of a 1.5B model:
      about 4,000 tokens/s, the rate behind issue 18's own estimate (0.6-0.9 GPU-hours for 8
      samples of 1,319 GSM8K problems to 1,024 tokens). Decoding reads every weight once per
      step, so the rate scales as 1 / parameters.
    - ``vllm_speedup``: continuous batching and paged attention; vLLM's published benchmarks put
      it at 10-20x ``generate`` at this batch size: 10 is taken.
    - ``mfu``: the share of peak a training or attribution step reaches (0.35 is typical of
      Hugging Face trainers on one GPU at these sizes).
    """

    peak_flops: float = 989e12
    mfu: float = 0.35
    hf_tokens_per_s_1b5: float = 4000.0
    vllm_speedup: float = 10.0

    def generation_hours(self, tokens: float, params: float, vllm: bool = False) -> float:
        rate = self.hf_tokens_per_s_1b5 * 1.5e9 / params * (self.vllm_speedup if vllm else 1.0)
        return tokens / rate / 3600

    def compute_hours(self, flops: float) -> float:
        return flops / (self.peak_flops * self.mfu) / 3600


# Prompt tokens per problem (templated prompts of each source; the synthetic task's chains are short).
PROMPT_TOKENS = {
    "synthetic": 24,
    "gsm8k": 160,
    "openr1": 260,
    "aime24": 220,
    "aime25": 220,
    "amc23": 200,
    "math500": 180,
    "gpqa": 400,
}
TRAIN_TOKENS = {"synthetic": 64, "gsm8k": 400}  # SFT example length where max_length would overstate it
BYTES_FP32 = 4
CURVE_POINTS = 12  # forwards per pair of the faithfulness curve (sizes) on top of EAP-IG
log = logging.getLogger(__name__)
TEACHER_BATCH = 64  # prompts per generation batch of teacher_traces (sparks.generate's default)


class Cost(NamedTuple):
    """One job's estimate: GPU-hours, disk in bytes, and peak GPU memory (None: a CPU job)."""

    gpu_hours: float
    disk: float
    memory: memory.Estimate | None = None


def planned_steps(name: str, run: dict[str, Any]) -> list[int]:
    """The steps a run will save: step 0, every save_steps and the last, or the ones a models run names."""
    if run["method"] == registry.GIVEN:
        from sparks.sources import given_checkpoints

        return [c.step for c in given_checkpoints(run["checkpoints"], f"runs.{name}.checkpoints")]
    return sorted({0, *range(run["save_steps"], run["max_steps"], run["save_steps"]), run["max_steps"]})


class JobCost:
    """Per job of a rule: estimated GPU-hours, disk and peak GPU memory from the checked config."""

    def __init__(self, config: dict[str, Any], throughput: Throughput):
        self.config, self.t = config, throughput
        self.base = model_shape(config["base"])
        self.n_conditions = len(conditions(EvaluateSettings.from_config(config)))

    def __call__(self, job: Job) -> Cost:
        cost = getattr(self, job.rule, None)
        if cost is None:
            return Cost(0.0, 0.0)
        return cost(job.of, job.task) if job.task else cost(job.of)

    def _run(self, name: str, on: str = "") -> tuple[dict[str, Any], dict[str, Any], int]:
        """A run's section, and its task's (or evaluation set ``on``'s) section and prompt tokens."""
        run = self.config["runs"][name]
        task = self.config["tasks"][on or run["task"]]
        return run, task, PROMPT_TOKENS.get(task["source"], 200)

    def _generation(self, shape: memory.Shape, rows: int, prompt: int, new: int) -> memory.Estimate:
        return memory.generation(shape, rows, prompt, new, memory.BFLOAT16)  # bfloat16 on a GPU (sparks.model.load)

    def prepare_model(self, role: str) -> Cost:
        shape = model_shape(self.config["teacher"]) if role == "teacher" else self.base
        return Cost(0.0, shape.params * BYTES_FP32)

    def train(self, name: str) -> Cost:
        run, task, prompt = self._run(name)
        method = training_method(run["method"])
        example = min(run["max_length"], TRAIN_TOKENS.get(task["source"], run["max_length"]))
        hours = method.cost(run, prompt, example, self.base.params, self.t)
        params = self.base.params
        resume_state = 2 * params * BYTES_FP32  # Adam moments, kept in the newest checkpoint only
        saved = 2 if run["save_dtype"] == "bfloat16" else BYTES_FP32  # every checkpoint but the newest (the peak)
        weights = (len(planned_steps(name, run)) - 1) * params * saved + params * BYTES_FP32
        peak = method.peak_memory(run, prompt, self.base, self.config["resources"]["train"])
        if (run["heads"] or {}).get("anchor"):  # sparks.train.anchor: a frozen float32 copy of the start, and one more forward
            peak = memory.Estimate({**peak.terms, "anchor reference": params * BYTES_FP32})
            hours *= 4 / 3  # a forward without backward is about a third of a training step's compute
        return Cost(hours, weights + resume_state, peak)

    def teacher_traces(self, name: str) -> Cost:
        run, task, prompt = self._run(name)
        d = run["distill"]
        teacher = model_shape(self.config["teacher"]) if d["teacher"] == "teacher" else self.base
        samples = task["n_train"] * d["samples_per_problem"] * d["max_new_tokens"]
        peak = self._generation(teacher, TEACHER_BATCH, prompt, d["max_new_tokens"])
        return Cost(self.t.generation_hours(samples, teacher.params), 0.0, peak)

    def style_pairs(self, name: str) -> Cost:
        _, task, prompt = self._run(name)
        opening = self.config["attribute"]["style"]["opening_tokens"] + 1
        openings = 2 * task["n_eval"] * opening  # two models
        peak = self._generation(self.base, self.config["evaluate"]["batch_size"], prompt, opening)
        return Cost(self.t.generation_hours(openings, self.base.params), 0.0, peak)

    def attribute(self, name: str, think: bool | None = None, curve: bool = True, style: bool | None = None) -> Cost:
        run, task, prompt = self._run(name)
        at = self.config["attribute"]
        think = at["think"] if think is None else think
        pairs = min(task["n_pairs"], at["max_pairs"] or task["n_pairs"])
        exact = 0
        if at["exact"] == "on":  # 2 forwards, then one of n_heads copies per layer (sparks.attribute.patching)
            exact = (2 + self.base.n_layers * self.base.n_heads) * min(pairs, at["exact_pairs"] or pairs) / pairs
        hours = self.t.compute_hours(2 * self.base.params * pairs * prompt * (2 + 3 * at["ig_steps"] + CURVE_POINTS + exact))
        style = pairs_kind(at, run["task"]) == "style" if style is None else style  # the prompt and the opening sampled
        tokens = prompt + at["style"]["opening_tokens"] + 1 if style else pair_tokens(task, prompt, think)
        batch = min(at["batch_size"], pairs)
        peak = memory.eap_ig(self.base, batch, tokens, at["ig_steps"], at["stack_ig_steps"])
        if curve:  # the attribute job's faithfulness curve (attribute_think scores heads and edges only)
            peak = max(
                peak, memory.faithfulness(self.base, batch, tokens, len(at["faithfulness_fractions"])), key=lambda e: e.total
            )
        n_edges = Graph(self.base.n_layers, self.base.n_heads, self.base.n_kv_heads).n_edges
        return Cost(hours, pairs * n_edges * BYTES_FP32, peak)  # disk: the per-pair edges table

    def attribute_think(self, name: str) -> Cost:
        cost = self.attribute(name, think=not self.config["attribute"]["think"], curve=False)  # the other think mode
        return Cost(cost.gpu_hours, 0.0, cost.memory)

    def head_ablations(self, role: str, task_name: str) -> Cost:
        """The starting model evaluated once whole and once per head ablated alone (sparks.evaluate.ablations)."""
        task = self.config["tasks"][task_name]
        ev = self.config["evaluate"]
        shape = self.base
        passes = 1 + shape.n_layers * shape.n_heads
        generated = passes * task["n_eval"] * ev["n_samples"] * ev["max_new_tokens"]
        peak = self._generation(shape, ev["batch_size"], PROMPT_TOKENS.get(task["source"], 200), ev["max_new_tokens"])
        return Cost(self.t.generation_hours(generated, shape.params), 0.0, peak)

    def attribute_style(self, name: str) -> Cost:
        return self.attribute(name, think=True, style=True)  # a compared run's style pairs (attribute.compare_pairs)

    def evaluate(self, name: str, on: str = "") -> Cost:
        _, task, prompt = self._run(name, on)
        ev = self.config["evaluate"]
        generated = task["n_eval"] * ev["n_samples"] * ev["max_new_tokens"]
        peak = self._generation(self.base, ev["batch_size"], prompt, ev["max_new_tokens"])
        return Cost(self.t.generation_hours(generated, self.base.params), generated * 4, peak)

    def intervene(self, name: str, on: str = "") -> Cost:
        passes = 1 if self.config["evaluate"]["split_interventions"] else self.n_conditions  # one pass per condition
        one = self.evaluate(name, on)
        return Cost(passes * one.gpu_hours, passes * one.disk, one.memory)


def pair_tokens(task: dict[str, Any], prompt: int, think: bool) -> int:
    """The longest clean/corrupted text attributed: the prompt (think off), or the prompt and the
    reference trace, at most the task's max_pair_tokens (think on)."""
    if not think:
        return prompt
    return prompt + TRAIN_TOKENS["synthetic"] if task["source"] == "synthetic" else task["max_pair_tokens"]


def plan_jobs(config: dict[str, Any], throughput: Throughput | None = None) -> pl.DataFrame:
    """One row per job of the config's DAG (sparks.workflow.Workflow.jobs): its GPU-hours, disk,
    wall minutes, peak GPU memory and the largest term of that peak, beside its rule's limits
    (``resources.<rule>.runtime`` and ``gpu_mem_gb``)."""
    cost = JobCost(config, throughput or Throughput())
    graph = Workflow(config, "", steps_of=lambda run: planned_steps(run, config["runs"][run]))
    rows = []
    for job in graph.jobs():
        c = cost(job)
        section = RESOURCES_OF.get(job.rule, job.rule)  # the resources.<section> the job takes
        job_resources = resources(config, job.rule)
        rows.append(
            {
                "rule": job.rule,
                "of": job.of + (f" on {job.task}" if job.task else ""),
                "gpu": job.rule in GPU_RULES,
                "gpu_hours": c.gpu_hours,
                "disk_gb": c.disk / memory.GB,
                "minutes": c.gpu_hours * 60 / job_resources.get("gpu", 1),  # GPU-hours over the job's GPUs
                "runtime_limit": job_resources["runtime"],
                "peak_gb": None if c.memory is None else c.memory.total / memory.GB,
                "largest_term": None if c.memory is None else c.memory.largest(),
                "gpu_mem_gb": float(config["resources"][section]["gpu_mem_gb"]) if job.rule in GPU_RULES else None,
                "resources": section,
            }
        )
    return pl.DataFrame(rows, schema=JOB_SCHEMA)


JOB_SCHEMA = {
    "rule": pl.String,
    "of": pl.String,
    "gpu": pl.Boolean,
    "gpu_hours": pl.Float64,
    "disk_gb": pl.Float64,
    "minutes": pl.Float64,
    "runtime_limit": pl.Int64,
    "peak_gb": pl.Float64,
    "largest_term": pl.String,
    "gpu_mem_gb": pl.Float64,
    "resources": pl.String,  # the config section of the job's limits (resources.<resources>)
}


def plan_table(config: dict[str, Any], throughput: Throughput | None = None) -> pl.DataFrame:
    """Per rule: whether its jobs run on a GPU (sparks.workflow.GPU_RULES), jobs, GPU-hours
    (estimate), disk in GB, and its longest job's minutes and largest peak GPU memory beside the
    rule's limits: :func:`plan_jobs` summed per rule."""
    return per_rule(plan_jobs(config, throughput))


def per_rule(jobs: pl.DataFrame) -> pl.DataFrame:
    return jobs.group_by("rule", maintain_order=True).agg(
        pl.col("gpu").first(),
        pl.len().cast(pl.Int64).alias("jobs"),
        pl.col("gpu_hours").sum(),
        pl.col("disk_gb").sum(),
        pl.col("minutes").max().alias("max_minutes"),
        pl.col("runtime_limit").first(),
        pl.col("peak_gb").max(),
        pl.col("gpu_mem_gb").first(),
    )


def over_limits(jobs: pl.DataFrame) -> list[str]:
    """One line per job whose estimate exceeds its rule's time or GPU-memory limit, naming the key
    to change (jobs of one rule and run with the same estimate share a line)."""
    lines: list[str] = []
    for row in jobs.filter(pl.col("minutes") > pl.col("runtime_limit")).iter_rows(named=True):
        lines.append(
            f"{row['rule']} job of {row['of']} takes about {row['minutes']:.0f} min against a limit of "
            f"{row['runtime_limit']}: raise resources.{row['resources']}.runtime"
            + (" or set evaluate.split_interventions: true" if row["rule"] == "intervene" else "")
            + (" or resources.train.gpus" if row["rule"] == "train" else "")
        )
    for row in jobs.filter(pl.col("peak_gb") > pl.col("gpu_mem_gb")).iter_rows(named=True):
        lines.append(
            f"{row['rule']} job of {row['of']} needs about {row['peak_gb']:.0f} GB of GPU memory (most: "
            f"{row['largest_term']}) against resources.{row['resources']}.gpu_mem_gb = "
            f"{row['gpu_mem_gb']:g}: {SHRINK[row['rule']]}"
        )
    return [f"{line} ({lines.count(line)} jobs)" if lines.count(line) > 1 else line for line in dict.fromkeys(lines)]


SHRINK = {  # what lowers each GPU rule's peak memory
    "train": "lower runs.<name>.micro_batch_size, set runs.<name>.gradient_checkpointing: true, or shard over "
    "resources.train.gpus with strategy zero3/fsdp",
    "teacher_traces": "lower distill.max_new_tokens or use a larger card",
    "head_ablations": "lower evaluate.batch_size",
    "style_pairs": "lower evaluate.batch_size",
    "attribute": "set attribute.stack_ig_steps: false, lower attribute.batch_size or the task's max_pair_tokens",
    "attribute_think": "set attribute.stack_ig_steps: false, lower attribute.batch_size or the task's max_pair_tokens",
    "attribute_style": "set attribute.stack_ig_steps: false, lower attribute.batch_size or attribute.style.opening_tokens",
    "evaluate": "lower evaluate.batch_size",
    "intervene": "lower evaluate.batch_size",
}


def check_fits(config: dict[str, Any]) -> None:
    """Refuse (ConfigError) a config with a job that cannot fit its GPU card or its time limit. A
    model whose shape cannot be read here (a hub id neither known nor in the local cache) is
    not checked: a warning says so."""
    try:
        jobs = plan_jobs(config)
    except memory.UnknownShape as err:
        log.warning("memory and time not checked: %s", err)
        return
    base = config["base"]["source"]
    if base != "embedded":  # a hub base read from the local cache (a local folder was checked with the config)
        check_model_type(
            {"model_type": model_shape(config["base"]).model_type}, f"config key base.source = {base!r}", ConfigError
        )
    lines = over_limits(jobs) + length_problems(config)
    if lines:
        raise ConfigError(
            f"experiment {config['experiment']}: {len(lines)} job(s) will not fit (sparks plan shows every job):\n  "
            + "\n  ".join(lines)
        )


def length_problems(config: dict[str, Any]) -> list[str]:
    """Token lengths that would bias results without an error: a model asked to read or write past
    its context (max_position_embeddings), or evaluated on shorter completions than it was
    trained to write (long correct answers would count as truncated)."""
    lines = []
    new = config["evaluate"]["max_new_tokens"]
    base = {config["base"]["source"]: model_shape(config["base"])}
    for name, run in config["runs"].items():
        task = config["tasks"][run["task"]]
        prompt = PROMPT_TOKENS.get(task["source"], 200)
        models = dict(base)
        if run["method"] == registry.GIVEN:
            from sparks.sources import given_checkpoints

            for c in given_checkpoints(run["checkpoints"], f"runs.{name}.checkpoints"):
                models.setdefault(c.source, model_shape({"source": c.source}))
        for source, shape in models.items():
            if shape.max_positions and prompt + new > shape.max_positions:
                lines.append(
                    f"runs.{name}: {source} reads {shape.max_positions} tokens at most, but evaluation asks for a "
                    f"~{prompt}-token prompt and evaluate.max_new_tokens = {new}: lower evaluate.max_new_tokens"
                )
        trained = 0  # a models run, or the synthetic task (its traces are a few dozen tokens, not max_length)
        if run["method"] != registry.GIVEN and task["source"] != "synthetic":
            trained = training_method(run["method"]).longest_completion(run, prompt)
        if trained > new and not config["evaluate"]["short_generation_ok"]:
            lines.append(
                f"runs.{name} trains on completions of up to {trained} tokens but evaluate.max_new_tokens = {new}: "
                f"its long correct answers would count as truncated; raise evaluate.max_new_tokens to at least {trained} "
                "(or, for a smoke test, set evaluate.short_generation_ok: true)"
            )
        if trained and prompt + trained > models[config["base"]["source"]].max_positions > 0:
            lines.append(
                f"runs.{name} trains on ~{prompt}-token prompts with completions of up to {trained} tokens, past "
                f"{config['base']['source']}'s {models[config['base']['source']].max_positions}-token context"
            )
    return lines


def format_plan(jobs: pl.DataFrame, config: dict[str, Any]) -> str:
    """The plan as text: one line per rule (its longest job and largest peak against the limits),
    the totals, and every job that may outrun its limits."""
    table = per_rule(jobs)
    lines = [f"experiment {config['experiment']}: jobs, estimated GPU-hours (H100-class), disk and peak GPU memory", ""]
    lines.append(
        f"{'rule':<20}{'on':>4}{'jobs':>6}{'GPU-hours':>12}{'disk GB':>10}{'max min':>9}{'limit':>7}{'peak GB':>9}{'card':>6}"
    )
    for row in table.iter_rows(named=True):
        peak = "" if row["peak_gb"] is None else f"{row['peak_gb']:.1f}"
        card = "" if row["gpu_mem_gb"] is None else f"{row['gpu_mem_gb']:g}"
        lines.append(
            f"{row['rule']:<20}{'GPU' if row['gpu'] else 'CPU':>4}{row['jobs']:>6}{row['gpu_hours']:>12.1f}"
            f"{row['disk_gb']:>10.1f}{row['max_minutes']:>9.0f}{row['runtime_limit']:>7}{peak:>9}{card:>6}"
        )
    lines.append(f"{'total':<24}{table['jobs'].sum():>6}{table['gpu_hours'].sum():>12.1f}{table['disk_gb'].sum():>10.1f}")
    lines += [f"warning: {line}" for line in over_limits(jobs) + length_problems(config)]
    lines += [
        "",
        "Throughputs assumed: sparks.plan.Throughput (generation runs every sample to its token limit);",
        "memory: sparks.memory (benchmarks/memory_estimate.py compares it with measured peaks).",
    ]
    return "\n".join(lines)


def make_parser(subparsers) -> None:
    from sparks.arguments import add_common

    p = subparsers.add_parser("plan", help="jobs, estimated GPU-hours and disk per rule of a config, before running it")
    add_common(p)
    p.add_argument("--configfile", dest="config", type=Path, help="the same as --config (snakemake's spelling)")
    p.add_argument("--out", type=Path, default=None, help="output (optional): the plan's jobs as a Parquet table too")
    p.set_defaults(func=main)


def main(args) -> None:
    from sparks.arguments import read_common
    from sparks.atomic import atomic_file

    config = read_common(args)
    jobs = plan_jobs(config)
    print(format_plan(jobs, config))
    if args.out is not None:
        with atomic_file(args.out) as tmp:
            jobs.write_parquet(tmp)
