"""Loaders for hub math datasets, by name or from a local folder in the same layout.

``datasets.load_dataset`` reads a hub id and a local folder (Parquet files plus a README with
``configs:``) through the same code path, so the tests exercise exactly what a cluster run does,
on small local files. Nothing here downloads in tests: offline, a missing dataset fails with a
message that says how to make it available.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

GSM8K_ID, OPENR1_ID = "openai/gsm8k", "open-r1/OpenR1-Math-220k"
_GSM8K_ANSWER = re.compile(r"####\s*(?P<answer>.+?)\s*$", re.S)
_GSM8K_CALC = re.compile(r"<<[^>]*>>")  # calculator annotations inside GSM8K traces


def _load(path: str, subset: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(path, subset, split=split)
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        hint = (
            "the machine is offline or the dataset is not in the local cache: download it once with "
            f"`huggingface-cli download --repo-type dataset {path}` where there is network, or point "
            "tasks.<name>.path at a local copy"
            if not Path(path).exists()
            else f"check that {path} holds the dataset's files and a README with configs"
        )
        raise RuntimeError(f"could not load dataset {path!r} (subset {subset!r}, split {split!r}): {err}; {hint}") from err


def _gsm8k_rows(record: dict) -> dict:
    match = _GSM8K_ANSWER.search(record["answer"])
    if match is None:
        raise ValueError(f"GSM8K record has no '#### answer' line: {record['answer'][-80:]!r}")
    trace = _GSM8K_CALC.sub("", record["answer"][: match.start()]).strip()
    return {"question": record["question"].strip(), "trace": trace, "answer": match["answer"].replace(",", "")}


def _openr1_rows(record: dict) -> dict:
    return {"question": record["problem"].strip(), "trace": record["solution"].strip(), "answer": str(record["answer"]).strip()}


LOADERS: dict[str, tuple[str, str | None, dict[str, str], Callable[[dict], dict]]] = {
    # source: (hub id, default subset, sparks split -> dataset split, record -> row)
    "gsm8k": (GSM8K_ID, "main", {"train": "train", "eval": "test"}, _gsm8k_rows),
    "openr1": (OPENR1_ID, "default", {"train": "train", "eval": "train"}, _openr1_rows),
}


def load_hub_problems(source: str, path: str | None, subset: str | None, n_train: int, n_eval: int) -> pl.DataFrame:
    """Problems table rows (no provenance) for a hub math dataset: question, trace, answer.

    OpenR1-Math-220k has only a train split: its eval rows are the last ``n_eval`` records, kept
    disjoint from the first ``n_train`` used for training.
    """
    if source not in LOADERS:
        raise ValueError(f"unknown hub task source {source!r}; known: {', '.join(LOADERS)}")
    hub_id, default_subset, splits, to_row = LOADERS[source]
    path = path or hub_id
    subset = subset or default_subset
    frames = []
    for split in ("train", "eval"):
        ds = _load(path, subset, splits[split])
        n = n_train if split == "train" else n_eval
        if splits["train"] == splits["eval"]:
            if len(ds) < n_train + n_eval:
                raise ValueError(f"{path} has {len(ds)} records, fewer than n_train + n_eval = {n_train + n_eval}")
            indices = range(n_train) if split == "train" else range(len(ds) - n_eval, len(ds))
        else:
            indices = range(min(n, len(ds)))
        rows = [to_row(ds[i]) for i in indices]
        frames.append(pl.DataFrame(rows).with_columns(pl.lit(split).alias("split")))
    df = pl.concat(frames)
    return df.with_columns(
        pl.int_range(pl.len()).cast(pl.Int64).alias("problem_id"),
        pl.lit("all").alias("difficulty"),
        pl.lit(None, dtype=pl.Int64).alias("n_ops"),
    )
