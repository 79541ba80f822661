"""Style-contrast pairs, as the study builds its circuit inputs (arXiv 2509.25758, Sec. 3, App. A.5).

For each held-out problem, the starting model (a run's first checkpoint) and a reasoning model
(the run's final checkpoint, or a named model) each sample an opening of the answer to the same
prompt (think on: the model decides how to answer). A pair's clean input is the prompt followed by
the reasoning model's opening, its corrupted input the prompt followed by the starting model's,
both cut to the same number of tokens (the study does not say how it matches lengths; sparks keeps
the shorter opening's length minus one, at most ``attribute.style.opening_tokens``, so the next
token of each opening is the pair's answer). Pairs whose cut openings are the same carry no contrast and are
dropped, as are pairs whose texts tokenize to different lengths; both are counted in the log.

The study analyses each model on its own style: the reasoning model with its opening clean, the
starting model with its own opening clean. :func:`oriented` swaps clean and corrupted for the
run's first checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)


def style_pairs_stage(config: dict[str, Any], manifest: Path, task: str, problems_path: Path, out: Path) -> Path:
    """Sample the openings of the run in ``manifest`` (its first checkpoint, and the reasoning model
    ``attribute.style.reasoning``) on ``task``'s held-out problems and write the style pairs to ``out``."""
    from sparks.config import config_hash
    from sparks.data.prompting import Prompter
    from sparks.data.tasks import eval_problems
    from sparks.generate import GenerationSettings, free_engine, generate, load_generator
    from sparks.manifest import read_manifest
    from sparks.model.load import model_hash
    from sparks.tables import with_provenance, write_table

    style = config["attribute"]["style"]
    engine = GenerationSettings.from_config(config)
    run = read_manifest(manifest)
    starting = run.checkpoint(run.steps[0])
    reasoning = run.checkpoint(run.steps[-1]) if style["reasoning"] == "final" else Path(style["reasoning"])
    problems = eval_problems(problems_path)
    tokenizer = None
    openings: dict[str, list[list[int]]] = {}
    for name, folder in (("starting", starting), ("reasoning", reasoning)):
        model, own = load_generator(folder, engine)  # on vLLM only where the weights are: the engine loads them
        if tokenizer is None:  # the starting model's tokenizer and template make every text
            tokenizer, prompts = own, [Prompter.of(own, config).prompt(q, think=True) for q in problems["question"]]
        ids = generate(
            model, own, prompts, style["opening_tokens"] + 1, config["evaluate"]["batch_size"], style["temperature"],
            seed=config["seed"] + (name == "reasoning"), decode=False, engine=engine,
        )  # fmt: skip
        if (
            own is not tokenizer and own.get_vocab() != tokenizer.get_vocab()
        ):  # another vocabulary: its text in the starting model's tokens
            ids = [tokenizer(_text(own, row), add_special_tokens=False)["input_ids"] for row in ids]
        openings[name] = ids
        del model
    free_engine()
    pairs = style_pairs(problems, openings["reasoning"], openings["starting"], prompts, tokenizer, style["opening_tokens"])
    provenance = dict(
        experiment=config["experiment"],
        run=run.run,
        step=run.steps[-1],
        task=task,
        model_hash=run.model_hash(run.steps[-1]) if style["reasoning"] == "final" else model_hash(reasoning),
        config_hash=config_hash({"style": style, "prompt": config["prompt"], "seed": config["seed"]}),
    )
    return write_table(with_provenance(pairs, **provenance), "pairs", out)


def style_pairs(
    problems: pl.DataFrame,
    reasoning: list[list[int]],
    starting: list[list[int]],
    prompts: list[str],
    tokenizer: Any,
    opening_tokens: int,
) -> pl.DataFrame:
    """The pairs table (kind ``style``, think on) of ``problems`` (problem_id, difficulty) from each
    model's sampled opening (token ids, with ``tokenizer``) of the same ``prompts``."""
    rows, same, unequal, short = [], 0, 0, 0
    for (problem_id, difficulty), prompt, a, b in zip(
        problems.select("problem_id", "difficulty").rows(), prompts, reasoning, starting
    ):
        n = min(opening_tokens, len(a) - 1, len(b) - 1)
        if n < 1:
            short += 1
            continue
        if a[:n] == b[:n]:
            same += 1
            continue
        clean, corrupt = prompt + _text(tokenizer, a[:n]), prompt + _text(tokenizer, b[:n])
        n_clean, n_corrupt = (len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (clean, corrupt))
        if n_clean != n_corrupt:
            unequal += 1
            continue
        rows.append(
            {
                "difficulty": difficulty,
                "think": True,
                "clean": clean,
                "corrupt": corrupt,
                "clean_answer": _text(tokenizer, a[n : n + 1]),
                "corrupt_answer": _text(tokenizer, b[n : n + 1]),
                "n_tokens": n_clean,
                "kind": "style",
                "clean_opening": _text(tokenizer, a),
                "corrupt_opening": _text(tokenizer, b),
                "opening_tokens": n,
                "pair_id": problem_id,
            }
        )
    log.info(
        "style pairs: %d of %d problems (dropped: %d openings the same when cut, %d of different token length, %d too short)",
        len(rows), problems.height, same, unequal, short,
    )  # fmt: skip
    if not rows:
        raise ValueError(
            f"no style pair: of {problems.height} problems the two models' openings were the same ({same}), of different "
            f"token length ({unequal}) or shorter than 2 tokens ({short}); check attribute.style.reasoning"
        )
    columns = ["pair_id", "difficulty", "think", "clean", "corrupt", "clean_answer", "corrupt_answer", "n_tokens"]
    return pl.DataFrame(rows).select(*columns, "kind", "clean_opening", "corrupt_opening", "opening_tokens")


def _text(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def oriented(pairs: pl.DataFrame, starting_model: bool) -> pl.DataFrame:
    """Style pairs as a model is analysed on them: the starting model with its own opening clean
    (clean and corrupted swapped), any later checkpoint as built. Operand pairs are unchanged."""
    if not starting_model:
        return pairs
    style = pl.col("kind") == "style"
    swap = {a: pl.when(style).then(pl.col(b)).otherwise(pl.col(a)) for a, b in _SWAPPED}
    return pairs.with_columns(**swap)


_SWAPPED = [
    ("clean", "corrupt"), ("corrupt", "clean"),
    ("clean_answer", "corrupt_answer"), ("corrupt_answer", "clean_answer"),
    ("clean_opening", "corrupt_opening"), ("corrupt_opening", "clean_opening"),
]  # fmt: skip
