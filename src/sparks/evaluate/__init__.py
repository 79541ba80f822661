"""Benchmark stage: sampled accuracy per checkpoint (``sparks evaluate``) and head interventions
(``sparks intervene``): mean/zero ablation of a run's emergent heads (or ``evaluate.heads``) in its
final checkpoint and scaling of those heads in the base model, each against control heads
(``evaluate.controls``: same layers, the base circuit, outside every circuit)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from sparks.config import config_hash, run_provenance
from sparks.data.prompting import Prompter, PromptSettings
from sparks.evaluate.conditions import Condition, EvaluateSettings, conditions

if TYPE_CHECKING:  # generate imports torch: the stage functions import it when they run
    from sparks.generate import GenerationSettings

__all__ = ["Condition", "EvaluateSettings", "conditions"]  # the light part, for the workflow and plan

log = logging.getLogger(__name__)


def sample_table(
    model,
    tokenizer,
    problems: pl.DataFrame,
    settings: EvaluateSettings,
    intervention=None,
    seed: int = 0,
    source: str = "synthetic",
    prompter: Prompter | None = None,
    engine: GenerationSettings | None = None,
) -> pl.DataFrame:
    """One row per (problem, sample): sample_id (the problem), k (sample index), correct, n_tokens,
    answer (extracted; null when none), completion (the reply, after a ``<think>`` its prompt
    opened). Prompts come from ``prompter`` (default: the schema's prompt settings for this tokenizer);
    ``engine`` is the generation section (None: hf; an intervention needs hf). ``model`` may be the
    :class:`~sparks.generate.ModelSource` of :func:`~sparks.generate.load_generator` on vLLM."""
    from sparks.data.answers import answer_checker
    from sparks.evaluate.interventions import intervene
    from sparks.generate import generate

    if intervention is not None and intervention.heads and engine is not None and engine.backend != "hf":
        raise ValueError(
            f"a head intervention needs generation.backend: hf (got {engine.backend}): its hooks run in the Hugging Face "
            "model, which vLLM's engine does not run; sample interventions without engine="
        )
    prompter = prompter or Prompter(tokenizer, PromptSettings.defaults())
    check = answer_checker(source)
    # evaluate.think: by default the think-on prompt for every run (think-off runs too): the model decides how to reason
    repeated = [prompter.prompt(q, think=settings.think) for q in problems["question"] for _ in range(settings.n_samples)]
    with intervene(model, intervention):
        completions = generate(
            model,
            tokenizer,
            repeated,
            settings.max_new_tokens,
            settings.batch_size,
            settings.temperature,
            seed,
            progress=True,
            top_p=settings.top_p,
            engine=engine,
            top_k=settings.top_k,
            min_p=settings.min_p,
            repetition_penalty=settings.repetition_penalty,
        )
    n_tokens = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    replies = [prompter.reply_text(p, c) for p, c in zip(repeated, completions)]  # with a <think> the prompt opened
    answers = [a for a in problems["answer"] for _ in range(settings.n_samples)]
    return pl.DataFrame(
        {
            "difficulty": [d for d in problems["difficulty"] for _ in range(settings.n_samples)],
            "sample_id": [i for i in problems["problem_id"] for _ in range(settings.n_samples)],
            "k": list(range(settings.n_samples)) * problems.height,
            "correct": [check.is_correct(c, a) for c, a in zip(replies, answers)],
            "n_tokens": n_tokens,
            "answer": [check.extract(c) for c in replies],
            "completion": replies,
        },
        schema_overrides={"answer": pl.String},
    )


def pass_table(samples: pl.DataFrame, ks: tuple[int, ...]) -> pl.DataFrame:
    """Per difficulty and k: accuracy (mean over samples) with its standard error over problems,
    the number of problems, and pass@k, success@k (the study's: a correct answer among the first k
    samples, in generation order ``k``) and all-correct@k, each a mean over problems."""
    from sparks.evaluate.passk import all_correct_at_k, pass_at_k, success_at_k

    # groups in the order of the samples, so that sums run in one order and two runs agree to the bit
    per_problem = samples.group_by("difficulty", "sample_id", maintain_order=True).agg(
        pl.len().alias("n"),
        pl.col("correct").sum().alias("c"),
        pl.col("correct").mean().alias("share"),
        pl.col("correct").sort_by("k").alias("in_order"),
    )
    rows = []
    for (difficulty,), group in per_problem.group_by("difficulty", maintain_order=True):
        accuracy = samples.filter(pl.col("difficulty") == difficulty)["correct"].mean()
        se = group["share"].std() / group.height**0.5 if group.height > 1 else None
        for k in ks:
            rows.append(
                {
                    "difficulty": difficulty,
                    "k_samples": k,
                    "accuracy": accuracy,
                    "accuracy_se": se,
                    "n_problems": group.height,
                    "pass_at_k": sum(pass_at_k(n, c, k) for n, c in group.select("n", "c").rows()) / group.height,
                    "success_at_k": sum(success_at_k(ordered, k) for ordered in group["in_order"]) / group.height,
                    "all_correct_at_k": sum(all_correct_at_k(n, c, k) for n, c in group.select("n", "c").rows()) / group.height,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"accuracy_se": pl.Float64}).sort("difficulty", "k_samples")


def evaluate_stage(
    config: dict[str, Any], manifest: Path, step: int, task: str, problems_path: Path, out: Path, passk_out: Path
) -> Path:
    """Sample every eval problem of ``task`` with checkpoint ``step``: every sample to ``out``, and
    accuracy, pass@k, success@k and all-correct@k by difficulty for k = 1 .. n_samples to ``passk_out``."""
    from sparks.data.tasks import eval_problems
    from sparks.generate import GenerationSettings, load_generator
    from sparks.manifest import read_manifest
    from sparks.tables import with_provenance, write_table

    settings = EvaluateSettings.from_config(config)
    engine = GenerationSettings.from_config(config)
    run = read_manifest(manifest)
    model, tokenizer = load_generator(run.checkpoint(step), engine)  # on vLLM, no weights here: the card is the engine's
    samples = sample_table(
        model,
        tokenizer,
        eval_problems(problems_path),
        settings,
        seed=config["seed"] + step,
        prompter=Prompter.of(tokenizer, config),
        source=config["tasks"][task]["source"],
        engine=engine,
    )
    log.info("step %d accuracy by difficulty: %s", step, samples.group_by("difficulty").agg(pl.col("correct").mean()).rows())
    provenance = {
        "experiment": config["experiment"],
        "run": run.run,
        "step": step,
        "task": task,
        "model_hash": run.model_hash(step),
        "config_hash": config_hash(config["evaluate"]),
    }
    passk = pass_table(samples, tuple(range(1, settings.n_samples + 1)))
    write_table(with_provenance(passk, **provenance), "passk", passk_out)
    return write_table(with_provenance(samples, **provenance), "eval", out)


def intervened_heads(
    settings: EvaluateSettings,
    cohorts: pl.DataFrame,
    think_modes: pl.DataFrame | None,
    replicate_heads: pl.DataFrame | None = None,
) -> tuple:
    """The heads ``evaluate.heads`` names: the run's emergent heads (cohorts), or, given a
    replicated run's ``replicate_heads``, its robust emergent set; or the heads of one think mode
    only at the last checkpoint the think_modes table compares."""
    from sparks.types import HeadId

    if settings.heads == "emergent" and replicate_heads is not None:
        chosen = replicate_heads.filter(pl.col("robust")).select("layer", "head").unique()
    elif settings.heads == "emergent":
        chosen = cohorts.filter(pl.col("status") == "emergent")
    else:
        if think_modes is None:
            raise ValueError(f"evaluate.heads = {settings.heads} needs the run's think_modes table (--think-modes)")
        chosen = think_modes.filter((pl.col("step") == think_modes["step"].max()) & (pl.col("mode") == settings.heads))
    return tuple(HeadId(layer, head) for layer, head in chosen.select("layer", "head").sort("layer", "head").rows())


def active_heads(frequency: pl.DataFrame | None) -> set:
    """Heads active in the circuit at any checkpoint (a frequency or replicate_heads table: of any replicate)."""
    from sparks.types import HeadId

    if frequency is None:
        return set()
    return {HeadId(layer, head) for layer, head in frequency.filter(pl.col("frequency") > 0).select("layer", "head").rows()}


def intervention_table(
    config: dict[str, Any],
    manifest: Path,
    task: str,
    problems_path: Path,
    cohorts: pl.DataFrame,
    think_modes: pl.DataFrame | None = None,
    replicate_heads: pl.DataFrame | None = None,
    only: str | None = None,
    frequency: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ablation of the run's emergent heads (or ``evaluate.heads``: see :func:`intervened_heads`) in
    its final checkpoint and their scaling in its starting (base) model, each next to no
    intervention and to ``evaluate.controls`` (control heads as many as the intervened ones,
    ``evaluate.random_seeds`` draws each; see ``control_heads``). The intervened heads are labelled
    ``heads_from`` = the ``evaluate.heads`` value.

    Returns the summary (interventions table) and every sample behind it (intervention_samples);
    with ``only`` (a :class:`Condition` name), the rows of that one condition. ``frequency``: the
    run's frequency table, whose active heads the ``outside`` control never draws (with
    ``replicate_heads``, every replicate's).
    """
    from sparks.data.tasks import eval_problems
    from sparks.evaluate.interventions import HeadIntervention, control_heads, draw_seed, head_means
    from sparks.generate import GenerationSettings
    from sparks.manifest import read_manifest
    from sparks.model.load import load_checkpoint

    settings = EvaluateSettings.from_config(config)
    if GenerationSettings.from_config(config).backend != "hf":
        log.info(
            "intervene generates with hf: head ablation and scaling hook the Hugging Face model's attention, which vLLM does not run"
        )
    run = read_manifest(manifest)
    steps = run.steps
    problems = eval_problems(problems_path)
    intervened = intervened_heads(settings, cohorts, think_modes, replicate_heads)
    own = config["runs"].get(run.run, {})
    active = active_heads(frequency if replicate_heads is None else replicate_heads)
    if not intervened:
        log.warning("run has no %s heads: the interventions table lists only the unmodified models", settings.heads)
    rows, all_samples = [], []
    if only is not None and only not in {c.name for c in conditions(settings)}:
        raise ValueError(
            f"no intervention condition {only!r} in this config; one of: {', '.join(c.name for c in conditions(settings))}"
        )
    for kind, step, alphas in (("ablate", steps[-1], (None,)), ("scale", steps[0], settings.alphas)):
        if only is not None and not only.startswith(f"{kind}-"):
            continue
        model, tokenizer = load_checkpoint(run.checkpoint(step))
        prompter = Prompter.of(tokenizer, config)
        n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
        prompts = [prompter.prompt(q, think=settings.think) for q in problems["question"]]  # what the model is evaluated on
        means = head_means(model, tokenizer, prompts) if kind == "ablate" else {}
        variants = [("none", None, ())]
        if intervened:
            variants.append((settings.heads, None, intervened))
            for control in settings.controls:
                drawn: dict[tuple, int] = {}  # a small pool gives the same heads again: sample them once
                for s in range(settings.random_seeds):
                    seed = draw_seed(own.get("seed"), own.get("base_seed"), s)
                    drawn.setdefault(control_heads(control, intervened, cohorts, n_layers, n_heads, seed, active), s)
                drawn.pop((), None)
                if not drawn:
                    log.warning("no %s control heads to draw from: that control is left out", control)
                variants += [(control, s, heads) for heads, s in drawn.items()]
        for alpha in alphas:
            for heads_from, seed, heads in variants:
                if heads_from == "none" and alpha not in (None, alphas[0]):
                    continue  # one unmodified run per model
                alpha_value = None if kind == "ablate" or heads_from == "none" else alpha
                if only is not None and Condition(kind, heads_from, seed, alpha_value).name != only:
                    continue
                change = HeadIntervention(kind, heads, alpha or 1.0, settings.ablation, means) if heads else None
                samples = sample_table(
                    model,
                    tokenizer,
                    problems,
                    settings,
                    change,
                    seed=config["seed"],
                    source=config["tasks"][task]["source"],
                    prompter=prompter,
                )
                all_samples.append(
                    samples.with_columns(
                        pl.lit(step, pl.Int64).alias("step"),
                        pl.lit(kind).alias("kind"),
                        pl.lit(heads_from).alias("heads_from"),
                        pl.lit(seed, pl.Int64).alias("seed"),
                        pl.lit(alpha_value, pl.Float64).alias("alpha"),
                    )
                )
                for r in pass_table(samples, (max(settings.k),)).iter_rows(named=True):
                    rows.append(
                        {
                            "step": step,
                            "kind": kind,
                            "heads_from": heads_from,
                            "seed": seed,
                            "heads": " ".join(h.name for h in heads),
                            "alpha": alpha_value,
                            "difficulty": r["difficulty"],
                            "n_samples": samples.filter(pl.col("difficulty") == r["difficulty"]).height,
                            "accuracy": r["accuracy"],
                            "k_samples": r["k_samples"],
                            "pass_at_k": r["pass_at_k"],
                            "success_at_k": r["success_at_k"],
                            "all_correct_at_k": r["all_correct_at_k"],
                        }
                    )
    if not rows:  # one condition whose control draw repeated an earlier one, or found no heads
        from sparks.tables import full_schema

        return pl.DataFrame(schema=full_schema("interventions")), pl.DataFrame(schema=full_schema("intervention_samples"))
    return pl.DataFrame(rows, schema_overrides={"seed": pl.Int64, "alpha": pl.Float64}), pl.concat(all_samples)


def intervene_stage(
    config: dict[str, Any],
    manifest: Path,
    task: str,
    problems_path: Path,
    cohorts_path: Path,
    out: Path,
    samples_out: Path,
    think_modes_path: Path | None = None,
    replicate_heads_path: Path | None = None,
    condition: str | None = None,
    frequency_path: Path | None = None,
) -> Path:
    """Write the interventions and intervention_samples tables of a run (of one ``condition``
    only, for evaluate.split_interventions: see :func:`merge_interventions`)."""
    from sparks.manifest import read_manifest
    from sparks.tables import read_table, with_provenance, write_table

    think_modes = None if think_modes_path is None else read_table(think_modes_path, "think_modes")
    replicate_heads = None if replicate_heads_path is None else read_table(replicate_heads_path, "replicate_heads")
    cohorts = read_table(cohorts_path, "cohorts")
    frequency = None if frequency_path is None else read_table(frequency_path, "frequency")
    table, samples = intervention_table(
        config, manifest, task, problems_path, cohorts, think_modes, replicate_heads, condition, frequency
    )
    provenance = run_provenance(config, read_manifest(manifest).run, task, "evaluate", "aggregate")
    write_table(with_provenance(samples, **provenance), "intervention_samples", samples_out)
    return write_table(with_provenance(table, **provenance), "interventions", out)


def merge_interventions(tables: list[Path], samples: list[Path], out: Path, samples_out: Path) -> Path:
    """Join one run's per-condition interventions and intervention_samples tables (in the order of
    :func:`conditions`) into the tables a single intervene job writes."""
    from sparks.tables import read_table, write_table

    write_table(pl.concat([read_table(p, "intervention_samples") for p in samples]), "intervention_samples", samples_out)
    return write_table(pl.concat([read_table(p, "interventions") for p in tables]), "interventions", out)
