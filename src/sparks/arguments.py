"""The arguments every stage command shares (config, manifest, task), added and read in one place."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sparks.config import check_task, load_config


def add_common(parser: argparse.ArgumentParser, manifest: bool = False, task: bool = False) -> None:
    """``--config`` always; ``--manifest`` and ``--task`` where the stage reads a run or a task."""
    parser.add_argument(
        "--config", type=Path, default=Path("workflow_config.yaml"), help="experiment YAML (default: %(default)s)"
    )
    if manifest:
        parser.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    if task:
        parser.add_argument("--task", required=True, help="task name under tasks: in the config")


def files(help: str, required: bool = True) -> dict[str, Any]:
    """argparse keywords of a flag that takes one or more files (a rule's list input)."""
    return {"type": Path, "nargs": "+", "required": required, "help": help}


def read_common(args: argparse.Namespace) -> dict[str, Any]:
    """The checked config, after checking ``--task`` (when the command has one) against it."""
    config = load_config(args.config)
    if getattr(args, "task", None) is not None:
        check_task(config, args.task)
    return config
