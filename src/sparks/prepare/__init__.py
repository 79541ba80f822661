"""Prepare stage: the base (and teacher) model, and each task's problems and pairs.

``prepare_model`` pre-trains an embedded tiny Qwen2, or records a hub/local model by reference;
``prepare_data`` writes ``{task}_problems.parquet`` and ``{task}_pairs.parquet``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import add_config_argument, config_hash, load_config

log = logging.getLogger(__name__)
ACCURACY_PROBLEMS_PER_LENGTH = 100


def prepare_model(config: dict[str, Any], role: str, out_dir: Path) -> Path:
    """Write ``out_dir`` holding the model of ``role`` (base | teacher) and its accuracy table."""
    from sparks.model.store import replace_dir, temp_dir_for

    if role not in ("base", "teacher"):
        raise ValueError(f"role must be 'base' or 'teacher' (got {role!r})")
    out_dir = Path(out_dir)
    tmp = temp_dir_for(out_dir)
    try:
        _write_model(config, role, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        raise
    replace_dir(tmp, out_dir)
    return out_dir


def _write_model(config: dict[str, Any], role: str, tmp: Path) -> None:
    import torch

    from sparks.data import arithmetic as arith
    from sparks.generate import greedy_accuracy
    from sparks.model.load import load_model, load_tokenizer, model_hash
    from sparks.model.store import write_pointer
    from sparks.model.tiny import TinyShape, build_tiny_qwen2
    from sparks.model.tokenizer import build_char_tokenizer
    from sparks.prepare.corpus import arithmetic_corpus, ladder_problems
    from sparks.prepare.pretrain import PretrainConfig, pretrain
    from sparks.tables import with_provenance, write_table

    section = config[role]
    torch.manual_seed(config["seed"])
    if section["source"] == "embedded":
        tokenizer = build_char_tokenizer()
        model = build_tiny_qwen2(TinyShape(**section["shape"]), tokenizer)
        p = section["pretrain"]
        seed = config["seed"] + (0 if role == "base" else 1000)
        texts = arithmetic_corpus(p["n_texts"], p["max_ops"], p["multi_step_decay"], p["think_off_fraction"], seed)
        pretrain(
            model, tokenizer, texts, PretrainConfig(p["steps"], p["batch_size"], p["lr"], seed=seed), desc=f"pretrain {role}"
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_pointer(tmp, ".", None, role=role, n_parameters=sum(t.numel() for t in model.parameters()))
        max_ops = p["max_ops"]
    else:
        tokenizer = load_tokenizer(section["source"], section["revision"])
        model = load_model(section["source"], section["revision"])
        write_pointer(tmp, section["source"], section["revision"], role=role)
        max_ops = 5

    # Accuracy on fresh arithmetic chains of every length, both formats: how competent is it?
    problems = ladder_problems(max_ops, ACCURACY_PROBLEMS_PER_LENGTH, seed=config["seed"] + 7)
    rows = []
    for think in (True, False):
        ok = greedy_accuracy(
            model,
            tokenizer,
            [arith.prompt(q, think) for q in problems],
            [str(q.answer) for q in problems],
            max_new_tokens=12 * max_ops + 8,
        )
        for n_ops in range(1, max_ops + 1):
            hits = [o for o, q in zip(ok, problems) if len(q.ops) == n_ops]
            rows.append(
                {
                    "difficulty": f"{n_ops}_ops",
                    "think": think,
                    "n": len(hits),
                    "correct": sum(hits),
                    "accuracy": sum(hits) / len(hits),
                }
            )
    accuracy = with_provenance(
        pl.DataFrame(rows),
        experiment=config["experiment"],
        run=role,
        step=0,
        task="arith_ladder",
        model_hash=model_hash(tmp if section["source"] == "embedded" else section["source"]),
        config_hash=config_hash(section),
    )
    write_table(accuracy, "accuracy", tmp / "accuracy.parquet")
    for row in rows:
        log.info("%s accuracy %s think=%s: %.2f", role, row["difficulty"], row["think"], row["accuracy"])


def prepare_data(config: dict[str, Any], task_name: str, tokenizer_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write ``{task}_problems.parquet`` and ``{task}_pairs.parquet`` under ``out_dir``."""
    from sparks.data.tasks import task_pairs, task_problems
    from sparks.model.load import load_tokenizer
    from sparks.model.store import resolve
    from sparks.tables import with_provenance, write_table

    if task_name not in config["tasks"]:
        raise KeyError(f"task {task_name!r} is not in the config's tasks ({', '.join(config['tasks'])}); add it under tasks:")
    task = config["tasks"][task_name]
    tokenizer = load_tokenizer(*resolve(tokenizer_dir))
    problems = task_problems(task, config["seed"])
    pairs = task_pairs(problems, task, config["seed"], tokenizer)
    provenance = dict(
        experiment=config["experiment"], run=None, step=None, task=task_name, model_hash=None, config_hash=config_hash(task)
    )
    out_dir = Path(out_dir)
    problems_path = write_table(with_provenance(problems, **provenance), "problems", out_dir / f"{task_name}_problems.parquet")
    pairs_path = write_table(with_provenance(pairs, **provenance), "pairs", out_dir / f"{task_name}_pairs.parquet")
    log.info("task %s: %d problems, %d pairs", task_name, len(problems), len(pairs))
    return problems_path, pairs_path


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("prepare-model", help="pre-train an embedded base/teacher model or record a hub model")
    add_config_argument(model)
    model.add_argument(
        "--role", choices=["base", "teacher"], default="base", help="which model of the config (default: %(default)s)"
    )
    model.add_argument("--out", type=Path, required=True, help="output folder, e.g. results/embedded/base")
    model.set_defaults(func=main_model)

    data = subparsers.add_parser("prepare-data", help="write a task's problems and clean/corrupted pairs")
    add_config_argument(data)
    data.add_argument("--task", required=True, help="task name under tasks: in the config")
    data.add_argument(
        "--tokenizer", type=Path, required=True, help="model folder from prepare-model (its tokenizer sets pair lengths)"
    )
    data.add_argument("--out-dir", type=Path, required=True, help="output folder, e.g. results/embedded/data")
    data.set_defaults(func=main_data)


def main_model(args: argparse.Namespace) -> None:
    prepare_model(load_config(args.config), args.role, args.out)


def main_data(args: argparse.Namespace) -> None:
    prepare_data(load_config(args.config), args.task, args.tokenizer, args.out_dir)
