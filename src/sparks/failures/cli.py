"""``sparks failures``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, files, read_common

OUTPUTS = ("failures", "failure_changes", "failure_shares")  # each --<table>-out


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("failures", help="classify every sample of a run (correct, calculation_error, loop, ...)")
    add_common(p, manifest=True, task=True)
    p.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    p.add_argument("--eval", **files("the run's eval tables, one per checkpoint"))
    p.add_argument("--samples", type=Path, required=True, help="the run's intervention samples table")
    for table in OUTPUTS:
        p.add_argument(f"--{table.replace('_', '-')}-out", type=Path, required=True, help=f"output: {table} table (Parquet)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    from sparks.failures import failures_stage

    out = {table: getattr(args, f"{table}_out") for table in OUTPUTS}
    failures_stage(read_common(args), args.manifest, args.task, args.problems, args.eval, args.samples, out)
