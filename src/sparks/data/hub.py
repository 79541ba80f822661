"""Loaders for hub datasets (math sets and GPQA), by hub id or from a local folder in the same layout.

A hub id is first resolved to its snapshot in the local Hugging Face cache (what
``huggingface-cli download --repo-type dataset ID`` leaves there), and the snapshot folder is
loaded like any local folder: ``datasets`` refuses a hub id offline even when it is cached. Only
an id that is not cached goes to the hub. A local folder holds the dataset's files (Parquet or
JSONL or CSV) and, for several splits or subsets, a README with ``configs:``.

Every source maps a record to ``question``, ``trace`` (the reasoning, without think tags),
``reply`` (what a worked answer says after its trace) and ``answer`` (the reference). Records
without an answer, or whose answer the source's checker cannot read (math-verify for the math
sets, one letter A-D for multiple choice), are skipped and counted in the log: a reference
nothing can match would only add silent zero rewards.

Multiple choice (GPQA) becomes a question whose text holds its four options, lettered A-D in an
order fixed by the experiment's seed and the record's id (:func:`choice_order`), and whose answer
is the correct option's letter: the problems table row alone says what the model saw and what
counts as right.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)
_GSM8K_ANSWER = re.compile(r"####\s*(?P<answer>.+?)\s*$", re.DOTALL)
_GSM8K_CALC = re.compile(r"<<[^>]*>>")  # calculator annotations inside GSM8K traces
_THINK = re.compile(r"^\s*<think>(?P<trace>.*?)</think>(?P<reply>.*)$", re.DOTALL)


ANSWER_LEAD = "The final answer is $\\boxed{"  # a worked reply up to its answer


def boxed_reply(answer: str) -> str:
    """The closing line of a worked answer, the answer in ``\\boxed{}`` as math graders read it."""
    return f"{ANSWER_LEAD}{answer}}}$."


def resolve_dataset(path: str, revision: str | None = None) -> str:
    """A local folder as it is; a hub id as its snapshot folder in the local cache when it is
    there, else the id itself (``datasets`` then downloads it, or explains that it is offline)."""
    if Path(path).exists():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(path, repo_type="dataset", revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return path


def _load(path: str, subset: str | None, split: str, options: dict | None = None):
    """One split of a dataset; a dataset with a single split under another name (AIME_2024's
    hub copy has only ``train``, the evaluation suite's JSONL only ``test``) gives that one.
    ``options`` go to the dataset's builder (e.g. CSV reading options)."""
    import datasets

    where = resolve_dataset(path)
    if subset is not None and Path(where).is_dir() and not _declares_configs(Path(where)):
        subset = None  # a plain folder of files (e.g. train.jsonl, test.jsonl) has no named configs
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    try:
        splits = datasets.load_dataset(where, subset, **(options or {}))
    except Exception as err:  # datasets raises many types here (offline, missing files, bad configs)
        if not Path(path).exists():
            hint = (
                "it is not in the local Hugging Face cache"
                + (" and the hub is off (HF_HUB_OFFLINE=1)" if offline else "")
                + f": download it once with `huggingface-cli download --repo-type dataset {path}` where there "
                "is network (same HF_HOME), or point tasks.<name>.path at a local copy"
            )
        else:
            hint = f"check that {path} holds the dataset's files (and a README with configs for several splits)"
        raise RuntimeError(f"could not load dataset {path!r} (subset {subset!r}, split {split!r}): {err}; {hint}") from err
    if split in splits:
        return splits[split]
    if len(splits) == 1:
        return next(iter(splits.values()))
    raise RuntimeError(f"dataset {path!r} (subset {subset!r}) has no split {split!r}; its splits: {', '.join(splits)}")


def _declares_configs(folder: Path) -> bool:
    readme = folder / "README.md"
    return readme.is_file() and "configs:" in readme.read_text(errors="replace")


def _gsm8k_row(record: dict, train: bool = True, seed: int = 0) -> dict | None:
    match = _GSM8K_ANSWER.search(record.get("answer") or "")
    if match is None:
        return None
    answer = match["answer"].replace(",", "")
    trace = _GSM8K_CALC.sub("", record["answer"][: match.start()]).strip()
    return {"question": record["question"].strip(), "trace": trace, "reply": boxed_reply(answer), "answer": answer}


def _openr1_row(record: dict, train: bool = True, seed: int = 0) -> dict | None:
    """The first R1 generation that math-verify judged correct, split at its ``</think>``. A
    training row with none is skipped (the human ``solution`` is not a reasoning trace); an eval
    row keeps its problem either way, so the eval set is not limited to what R1 solved."""
    answer = record.get("answer")
    if answer is None or not str(answer).strip():
        return None
    verdicts = record.get("correctness_math_verify") or []
    for text, ok in zip(record.get("generations") or [], verdicts):
        match = _THINK.match(text or "") if ok else None
        if match:
            return {
                "question": record["problem"].strip(),
                "trace": match["trace"].strip(),
                "reply": match["reply"].strip(),
                "answer": str(answer).strip(),
            }
    if not train:
        return {"question": record["problem"].strip(), "trace": "", "reply": None, "answer": str(answer).strip()}
    return None


def _eval_row(record: dict, train: bool = False, seed: int = 0) -> dict | None:
    """AIME / AMC / MATH-500 rows: a problem and its answer (a worked solution when there is one);
    column names in any case (AIME_2024 on the hub capitalises them)."""
    record = {k.lower(): v for k, v in record.items()}
    answer = record.get("answer")
    if answer is None or not str(answer).strip():
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)  # AMC 2023 stores 27.0
    question = record.get("problem") or record.get("question") or ""
    return {"question": question.strip(), "trace": (record.get("solution") or "").strip(), "reply": None, "answer": str(answer)}


CHOICE_INSTRUCTION = (
    "Answer the following multiple choice question. Give the letter of the correct option "
    "(A, B, C or D) as your final answer, in \\boxed{}."
)  # the answer format the system prompt, the circuit pairs' ``\boxed{`` and the checker share
GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def choice_order(seed: int, record_id: str, n: int = 4) -> tuple[int, ...]:
    """The record's option indices (0 the correct one) in the order they are shown, sorted by the
    sha256 of ``"{seed}/{record_id}/{i}"``: the same seed and record id give the same order on
    every machine and Python version, and records (and seeds) differ."""
    digest = [hashlib.sha256(f"{seed}/{record_id}/{i}".encode()).hexdigest() for i in range(n)]
    return tuple(sorted(range(n), key=digest.__getitem__))


def _cell(value: object) -> str:
    """A CSV cell as text: empty for a missing one, ``11`` for the 11.0 a numeric column reads."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _gpqa_row(record: dict, train: bool = False, seed: int = 0) -> dict | None:
    """A GPQA record (Idavidrein/gpqa's CSV columns): the question with its four options
    lettered A-D in :func:`choice_order`, the correct option's letter as the answer and the
    writer's explanation as the trace. A record missing an option, or with two equal options
    (two right letters), is skipped."""
    from sparks.data.answers import LETTERS

    question = _cell(record.get("Question"))
    options = [_cell(record.get(column)) for column in GPQA_OPTIONS]
    if not question or not all(options) or len(set(options)) < len(options):
        return None
    record_id = _cell(record.get("Record ID")) or hashlib.sha256(question.encode()).hexdigest()[:16]
    order = choice_order(seed, record_id, len(options))
    lettered = "\n".join(f"{LETTERS[place]}) {options[i]}" for place, i in enumerate(order))
    return {
        "question": f"{CHOICE_INSTRUCTION}\n\n{question}\n\n{lettered}",
        "trace": _cell(record.get("Explanation")),
        "reply": None,
        "answer": LETTERS[order.index(0)],
    }


@dataclass(frozen=True)
class HubSource:
    """One dataset family: its hub id, default subset, sparks split -> dataset split (None: no
    training rows, an evaluation set), the (record, is it a training row?, experiment seed) -> row
    function (None skips the record) and options for the dataset's builder. Its answer checker
    is :func:`sparks.data.answers.answer_checker` of the source's name."""

    hub_id: str
    subset: str | None
    splits: dict[str, str | None]
    to_row: Callable[[dict, bool, int], dict | None]
    load_options: dict = field(default_factory=dict)


SOURCES: dict[str, HubSource] = {
    "gsm8k": HubSource("openai/gsm8k", "main", {"train": "train", "eval": "test"}, _gsm8k_row),
    "openr1": HubSource("open-r1/OpenR1-Math-220k", "default", {"train": "train", "eval": "train"}, _openr1_row),
    # evaluation sets (Qwen2.5-Math evaluation suite layout: one JSONL/Parquet test split)
    "aime24": HubSource("Maxwell-Jia/AIME_2024", None, {"train": None, "eval": "test"}, _eval_row),
    "aime25": HubSource("math-ai/aime25", None, {"train": None, "eval": "test"}, _eval_row),
    "amc23": HubSource("math-ai/amc23", None, {"train": None, "eval": "test"}, _eval_row),
    "math500": HubSource("HuggingFaceH4/MATH-500", None, {"train": None, "eval": "test"}, _eval_row),
    # GPQA Diamond (198 questions; gated on the hub: accept its terms before downloading); its one split is train.
    # Its CSV is read without pandas' default NA strings, so an option such as "None" or "NA" stays text.
    "gpqa": HubSource("Idavidrein/gpqa", "gpqa_diamond", {"train": None, "eval": "train"}, _gpqa_row, {"keep_default_na": False}),
}
EVAL_ONLY = tuple(name for name, s in SOURCES.items() if s.splits["train"] is None)


def _rows(ds, indices, source: str, train: bool, seed: int) -> tuple[list[dict], int]:
    from sparks.data.answers import answer_checker

    spec, reads = SOURCES[source], answer_checker(source).reads_reference
    rows, skipped = [], 0
    for i in indices:
        row = spec.to_row(ds[i], train, seed)
        if row is None or not row["question"] or not reads(row["answer"]):
            skipped += 1
            continue
        rows.append(row)
    return rows, skipped


def load_hub_problems(
    source: str, path: str | None, subset: str | None, n_train: int, n_eval: int, seed: int = 0
) -> pl.DataFrame:
    """Problems table rows (no provenance) for a hub dataset: question, trace, reply, answer.

    OpenR1-Math-220k has only a train split: its eval rows come from the end of it, disjoint from
    the training rows. Evaluation sets (aime24, aime25, amc23, math500, gpqa) have no training
    rows. ``seed`` (the experiment's) fixes the order of multiple-choice options.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown hub task source {source!r}; known: {', '.join(SOURCES)}")
    spec = SOURCES[source]
    path = path or spec.hub_id
    subset = subset or spec.subset
    frames = []
    for split in ("train", "eval"):
        if spec.splits[split] is None:
            continue
        ds = _load(path, subset, spec.splits[split], spec.load_options)
        n = n_train if split == "train" else n_eval
        if spec.splits["train"] == spec.splits["eval"]:  # one split: train from the start, eval from the end
            if len(ds) < n_train + n_eval:
                raise ValueError(f"{path} has {len(ds)} records, fewer than n_train + n_eval = {n_train + n_eval}")
            indices = range(n_train) if split == "train" else range(len(ds) - n_eval, len(ds))
        else:
            indices = range(min(n, len(ds)))
        rows, skipped = _rows(ds, indices, source, split == "train", seed)
        if skipped:
            log.warning(
                "%s %s: skipped %d of %d records (no answer, no verified trace, or a reference its checker cannot read)",
                path,
                split,
                skipped,
                len(indices),
            )
        if not rows:
            raise ValueError(f"{path} {split}: none of {len(indices)} records is usable (see the warning above)")
        frames.append(pl.DataFrame(rows, schema_overrides={"reply": pl.String}).with_columns(pl.lit(split).alias("split")))
    df = pl.concat(frames)
    return df.with_columns(
        pl.int_range(pl.len()).cast(pl.Int64).alias("problem_id"),
        pl.lit("all").alias("difficulty"),
        pl.lit(None, dtype=pl.Int64).alias("n_ops"),
    )
