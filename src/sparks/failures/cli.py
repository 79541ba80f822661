"""``sparks failures``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, files, read_common

OUTPUTS = {"out": "failures", "changes": "failure_changes", "shares": "failure_shares"}


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("failures", help="classify every sample of a run (correct, calculation_error, loop, ...)")
    add_common(p, manifest=True, task=True)
    p.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    p.add_argument("--eval", **files("the run's eval tables, one per checkpoint"))
    p.add_argument("--samples", type=Path, required=True, help="the run's intervention samples table")
    for flag, table in OUTPUTS.items():
        p.add_argument(f"--{flag}", type=Path, required=True, help=f"output: {table} table (Parquet)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    from sparks.failures import failures_stage

    out = {table: getattr(args, flag) for flag, table in OUTPUTS.items()}
    failures_stage(read_common(args), args.manifest, args.task, args.problems, args.eval, args.samples, out)
