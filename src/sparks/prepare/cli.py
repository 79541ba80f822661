"""``sparks prepare-model`` and ``sparks prepare-data``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, read_common


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("prepare-model", help="pre-train an embedded base/teacher model or record a hub model")
    add_common(model)
    model.add_argument(
        "--role",
        default="base",
        help="which model of the config: base, teacher or a base replicate base-b{seed} (default: %(default)s)",
    )
    model.add_argument("--out", type=Path, required=True, help="output: the model folder")
    model.set_defaults(func=main_prepare_model)

    data = subparsers.add_parser("prepare-data", help="write a task's problems and clean/corrupted pairs")
    add_common(data, task=True)
    data.add_argument(
        "--tokenizer", type=Path, required=True, help="model folder from prepare-model (its tokenizer sets pair lengths)"
    )
    data.add_argument("--problems-out", type=Path, required=True, help="output: the task's problems table (Parquet)")
    data.add_argument("--pairs-out", type=Path, required=True, help="output: the task's clean/corrupted pairs (Parquet)")
    data.set_defaults(func=main_prepare_data)


def main_prepare_model(args: argparse.Namespace) -> None:
    from sparks.prepare import prepare_model

    prepare_model(read_common(args), args.role, args.out)


def main_prepare_data(args: argparse.Namespace) -> None:
    from sparks.prepare import prepare_data

    prepare_data(read_common(args), args.task, args.tokenizer, args.problems_out, args.pairs_out)
