"""What a config will cost before it runs: per rule, the jobs, an estimate of GPU-hours and the
disk its outputs take (``sparks plan --config X``).

Every estimate is a count the config fixes (steps, examples, samples, tokens, checkpoints) times
a throughput stated here, once, with where it comes from (``Throughput``). Token counts take each
length limit at its maximum (base models rarely stop early), so GPU-hours are upper bounds for
generation and honest orders of magnitude for the rest; measure on your cluster and scale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sparks import registry
from sparks.evaluate.conditions import EvaluateSettings, conditions
from sparks.methods import training_method
from sparks.model.graph import Graph
from sparks.workflow import GPU_RULES, Job, Workflow


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


# Shapes of the hub models the configs name (config.json of each), used when no local copy is
# found: layers, query heads, KV heads, hidden size, parameters.
KNOWN_SHAPES = {
    "Qwen/Qwen2.5-Math-1.5B": (28, 12, 2, 1536, 1.54e9),
    "Qwen/Qwen2.5-1.5B": (28, 12, 2, 1536, 1.54e9),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": (28, 12, 2, 1536, 1.78e9),
    "Qwen/Qwen2.5-0.5B": (24, 14, 2, 896, 0.49e9),
    "Qwen/Qwen3-8B": (36, 32, 8, 4096, 8.19e9),
}
# Prompt tokens per problem (templated prompts of each source; the synthetic task's chains are short).
PROMPT_TOKENS = {"synthetic": 24, "gsm8k": 160, "openr1": 260, "aime24": 220, "amc23": 200, "math500": 180}
TRAIN_TOKENS = {"synthetic": 64, "gsm8k": 400}  # SFT example length where max_length would overstate it
BYTES_FP32 = 4
CURVE_POINTS = 12  # forwards per pair of the faithfulness curve (sizes) on top of EAP-IG


@dataclass(frozen=True)
class Shape:
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden: int
    params: float

    @property
    def graph(self) -> Graph:
        return Graph(self.n_layers, self.n_heads, self.n_kv_heads)


def model_shape(section: dict[str, Any]) -> Shape:
    """The shape of a base/teacher section: an embedded model's config, a local folder's
    config.json, or a known hub model."""
    source = section["source"]
    if source == "embedded":
        s = section["shape"]
        d, layers, inter = s["hidden_size"], s["n_layers"], s["intermediate_size"]
        kv = d // s["n_heads"] * s["n_kv_heads"]
        params = layers * (2 * d * d + 2 * d * kv + 3 * d * inter)
        return Shape(layers, s["n_heads"], s["n_kv_heads"], d, params)
    folder = Path(source) / "config.json"
    if folder.is_file():
        c = json.loads(folder.read_text())
        d, layers = c["hidden_size"], c["num_hidden_layers"]
        params = layers * (4 * d * d + 3 * d * c["intermediate_size"]) + c["vocab_size"] * d
        return Shape(layers, c["num_attention_heads"], c["num_key_value_heads"], d, params)
    if source in KNOWN_SHAPES:
        return Shape(*KNOWN_SHAPES[source])
    raise ValueError(
        f"no shape known for model {source!r}: give a local folder with config.json (or add it to sparks.plan.KNOWN_SHAPES)"
    )


def planned_steps(name: str, run: dict[str, Any]) -> list[int]:
    """The steps a run will save: step 0, every save_steps and the last, or the ones a models run names."""
    if run["method"] == registry.GIVEN:
        from sparks.sources import given_checkpoints

        return [c.step for c in given_checkpoints(run["checkpoints"], f"runs.{name}.checkpoints")]
    return sorted({0, *range(run["save_steps"], run["max_steps"], run["save_steps"]), run["max_steps"]})


class JobCost:
    """Per job of a rule: estimated GPU-hours and disk (bytes) from the checked config."""

    def __init__(self, config: dict[str, Any], throughput: Throughput):
        self.config, self.t = config, throughput
        self.base = model_shape(config["base"])
        self.n_conditions = len(conditions(EvaluateSettings.from_config(config)))

    def __call__(self, job: Job) -> tuple[float, float]:
        cost = getattr(self, job.rule, None)
        return cost(job.of) if cost else (0.0, 0.0)

    def _run(self, name: str) -> tuple[dict[str, Any], dict[str, Any], int]:
        run = self.config["runs"][name]
        task = self.config["tasks"][run["task"]]
        return run, task, PROMPT_TOKENS.get(task["source"], 200)

    def prepare_model(self, role: str) -> tuple[float, float]:
        shape = model_shape(self.config["teacher"]) if role == "teacher" else self.base
        return 0.0, shape.params * BYTES_FP32

    def train(self, name: str) -> tuple[float, float]:
        run, task, prompt = self._run(name)
        example = min(run["max_length"], TRAIN_TOKENS.get(task["source"], run["max_length"]))
        hours = training_method(run["method"]).cost(run, prompt, example, self.base.params, self.t)
        params = self.base.params
        resume_state = 2 * params * BYTES_FP32  # Adam moments, kept in the newest checkpoint only
        saved = 2 if run["save_dtype"] == "bfloat16" else BYTES_FP32  # every checkpoint but the newest (the peak)
        weights = (len(planned_steps(name, run)) - 1) * params * saved + params * BYTES_FP32
        return hours, weights + resume_state

    def teacher_traces(self, name: str) -> tuple[float, float]:
        run, task, _ = self._run(name)
        d = run["distill"]
        teacher = model_shape(self.config["teacher"]) if d["teacher"] == "teacher" else self.base
        samples = task["n_train"] * d["samples_per_problem"] * d["max_new_tokens"]
        return self.t.generation_hours(samples, teacher.params), 0.0

    def style_pairs(self, name: str) -> tuple[float, float]:
        _, task, _ = self._run(name)
        openings = 2 * task["n_eval"] * (self.config["attribute"]["style"]["opening_tokens"] + 1)  # two models
        return self.t.generation_hours(openings, self.base.params), 0.0

    def attribute(self, name: str) -> tuple[float, float]:
        _, task, prompt = self._run(name)
        at = self.config["attribute"]
        pairs = min(task["n_pairs"], at["max_pairs"] or task["n_pairs"])
        exact = 0
        if at["exact"] == "on":  # 2 forwards, then one of n_heads copies per layer (sparks.attribute.patching)
            exact = (2 + self.base.n_layers * self.base.n_heads) * min(pairs, at["exact_pairs"] or pairs) / pairs
        hours = self.t.compute_hours(2 * self.base.params * pairs * prompt * (2 + 3 * at["ig_steps"] + CURVE_POINTS + exact))
        return hours, pairs * self.base.graph.n_edges * BYTES_FP32  # the per-pair edges table

    def attribute_think(self, name: str) -> tuple[float, float]:
        return self.attribute(name)[0], 0.0

    def _evaluation(self, name: str) -> tuple[float, float]:
        _, task, _ = self._run(name)
        ev = self.config["evaluate"]
        generated = task["n_eval"] * ev["n_samples"] * ev["max_new_tokens"]
        return self.t.generation_hours(generated, self.base.params), generated * 4

    evaluate = _evaluation

    def intervene(self, name: str) -> tuple[float, float]:
        passes = 1 if self.config["evaluate"]["split_interventions"] else self.n_conditions  # one pass per condition
        hours, disk = self._evaluation(name)
        return passes * hours, passes * disk


def plan_table(config: dict[str, Any], throughput: Throughput | None = None) -> pl.DataFrame:
    """Per rule: whether its jobs run on a GPU (sparks.workflow.GPU_RULES), jobs, GPU-hours
    (estimate) and disk in GB, from the checked config. The jobs are the workflow's own list
    (sparks.workflow.Workflow.jobs), each costed by :class:`JobCost`."""
    cost = JobCost(config, throughput or Throughput())
    graph = Workflow(config, "", steps_of=lambda run: planned_steps(run, config["runs"][run]))
    rows: dict[str, dict[str, float]] = {}
    for job in graph.jobs():
        hours, disk = cost(job)
        row = rows.setdefault(job.rule, {"jobs": 0, "gpu_hours": 0.0, "disk_gb": 0.0})
        row["jobs"] += 1
        row["gpu_hours"] += hours
        row["disk_gb"] += disk / 1e9
    return pl.DataFrame(
        [{"rule": rule, "gpu": rule in GPU_RULES, **row} for rule, row in rows.items()],
        schema={"rule": pl.String, "gpu": pl.Boolean, "jobs": pl.Int64, "gpu_hours": pl.Float64, "disk_gb": pl.Float64},
    )


def with_limits(table: pl.DataFrame, config: dict[str, Any]) -> pl.DataFrame:
    """Add each rule's mean estimated minutes per job and its runtime limit (resources.<rule>)."""
    limits = {rule: job["runtime"] for rule, job in config["resources"].items()}
    return table.with_columns(
        (pl.col("gpu_hours") * 60 / pl.col("jobs")).alias("minutes_per_job"),
        pl.col("rule").replace_strict(limits, default=None, return_dtype=pl.Int64).alias("runtime_limit"),
    )


def format_plan(table: pl.DataFrame, config: dict[str, Any]) -> str:
    """The plan as text: one line per rule, the totals, and the rules whose jobs may outrun their limit."""
    table = with_limits(table, config)
    lines = [f"experiment {config['experiment']}: jobs, estimated GPU-hours (H100-class) and disk", ""]
    lines.append(f"{'rule':<20}{'on':>4}{'jobs':>6}{'GPU-hours':>12}{'disk GB':>10}{'min/job':>10}{'limit':>8}")
    for row in table.iter_rows(named=True):
        limit = "" if row["runtime_limit"] is None else str(row["runtime_limit"])
        lines.append(
            f"{row['rule']:<20}{'GPU' if row['gpu'] else 'CPU':>4}{row['jobs']:>6}{row['gpu_hours']:>12.1f}"
            f"{row['disk_gb']:>10.1f}{row['minutes_per_job']:>10.0f}{limit:>8}"
        )
    lines.append(f"{'total':<24}{table['jobs'].sum():>6}{table['gpu_hours'].sum():>12.1f}{table['disk_gb'].sum():>10.1f}")
    over = table.filter(pl.col("minutes_per_job") > pl.col("runtime_limit"))
    for row in over.iter_rows(named=True):
        lines.append(
            f"warning: {row['rule']} jobs take about {row['minutes_per_job']:.0f} min against a limit of "
            f"{row['runtime_limit']} (resources.{row['rule']}.runtime): raise it"
            + (
                " or set evaluate.split_interventions: true"
                if row["rule"] == "intervene" and row["jobs"] <= len(config["runs"])
                else ""
            )
        )
    lines += ["", "Throughputs assumed: sparks.plan.Throughput (generation runs every sample to its token limit)."]
    return "\n".join(lines)


def make_parser(subparsers) -> None:
    from sparks.arguments import add_common

    p = subparsers.add_parser("plan", help="jobs, estimated GPU-hours and disk per rule of a config, before running it")
    add_common(p)
    p.add_argument("--configfile", dest="config", type=Path, help="the same as --config (snakemake's spelling)")
    p.add_argument("--out", type=Path, default=None, help="output (optional): the plan as a Parquet table too")
    p.set_defaults(func=main)


def main(args) -> None:
    from sparks.arguments import read_common
    from sparks.atomic import atomic_file

    config = read_common(args)
    table = plan_table(config)
    print(format_plan(table, config))
    if args.out is not None:
        with atomic_file(args.out) as tmp:
            table.write_parquet(tmp)
