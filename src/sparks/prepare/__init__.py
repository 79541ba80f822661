"""Prepare stage: the base (and teacher) model, and each task's problems and pairs.

``prepare_model`` pre-trains an embedded tiny Qwen2, or records a hub/local model by reference;
``prepare_data`` writes ``{task}_problems.parquet`` and ``{task}_pairs.parquet``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import config_hash, model_section

log = logging.getLogger(__name__)
ACCURACY_PROBLEMS_PER_LENGTH = 100


def prepare_model(config: dict[str, Any], role: str, out_dir: Path) -> Path:
    """Write ``out_dir`` holding the model of ``role`` (base, teacher or a base replicate,
    ``base-b{seed}``) and its accuracy table."""
    from sparks.model.store import replace_dir, temp_dir_for

    model_section(config, role)  # an unknown role fails here, before anything is written
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
    from sparks.data.prompting import Prompter
    from sparks.generate import greedy_accuracy
    from sparks.model.load import load_model, load_tokenizer, model_hash
    from sparks.model.store import write_pointer
    from sparks.model.tiny import TinyShape, build_tiny_qwen2
    from sparks.model.tokenizer import build_char_tokenizer
    from sparks.prepare.corpus import arithmetic_corpus, ladder_problems
    from sparks.prepare.pretrain import PretrainConfig, pretrain
    from sparks.tables import with_provenance, write_table

    section, base_seed = model_section(config, role)
    torch.manual_seed(config["seed"] + base_seed)
    if section["source"] == "embedded":
        tokenizer = build_char_tokenizer() if section["tokenizer"] is None else load_tokenizer(section["tokenizer"], None)
        model = build_tiny_qwen2(TinyShape.of(section["shape"]), tokenizer)
        p = section["pretrain"]
        seed = config["seed"] + base_seed + (1000 if role == "teacher" else 0)
        texts = arithmetic_corpus(p["n_texts"], p["max_ops"], p["multi_step_decay"], p["think_off_fraction"], seed)
        pretrain(model, tokenizer, texts, PretrainConfig(p["steps"], p["batch_size"], p["lr"], seed), desc=f"pretrain {role}")
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
    prompter = Prompter.of(tokenizer, config)
    for think in (True, False):
        ok = greedy_accuracy(
            model,
            tokenizer,
            [prompter.prompt(arith.question(q), think) for q in problems],
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


def prepare_data(
    config: dict[str, Any], task_name: str, tokenizer_dir: Path, problems_out: Path, pairs_out: Path
) -> tuple[Path, Path]:
    """Write the task's problems table to ``problems_out`` and its clean/corrupted pairs to ``pairs_out``."""
    from sparks.data.prompting import Prompter
    from sparks.data.tasks import task_pairs, task_problems
    from sparks.model.load import load_tokenizer
    from sparks.model.store import resolve
    from sparks.tables import with_provenance, write_table

    if task_name not in config["tasks"]:
        raise KeyError(f"task {task_name!r} is not in the config's tasks ({', '.join(config['tasks'])}); add it under tasks:")
    task = config["tasks"][task_name]
    tokenizer = load_tokenizer(*resolve(tokenizer_dir))
    problems = task_problems(task, config["seed"])
    pairs = task_pairs(problems, task, config["seed"], tokenizer, Prompter.of(tokenizer, config))
    provenance = dict(
        experiment=config["experiment"], run=None, step=None, task=task_name, model_hash=None, config_hash=config_hash(task)
    )
    problems_path = write_table(with_provenance(problems, **provenance), "problems", problems_out)
    pairs_path = write_table(with_provenance(pairs, **provenance), "pairs", pairs_out)
    log.info("task %s: %d problems, %d pairs", task_name, len(problems), len(pairs))
    return problems_path, pairs_path
