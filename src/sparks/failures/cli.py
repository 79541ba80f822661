"""``sparks failures`` and ``sparks calculation-heads``."""

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

    c = subparsers.add_parser(
        "calculation-heads",
        help="rank a starting model's heads by how much ablating each alone raises the calculation-error share",
    )
    add_common(c, task=True)
    c.add_argument("--samples", type=Path, required=True, help="the model's head-ablation samples (sparks head-ablations)")
    c.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    c.add_argument(
        "--top-k", type=int, required=True,
        help="select the K heads with the largest rise (never one whose ablation does not raise the share)",
    )  # fmt: skip
    c.add_argument("--out", type=Path, required=True, help="output: calculation_heads table (Parquet)")
    c.set_defaults(func=main_calculation_heads)


def main(args: argparse.Namespace) -> None:
    from sparks.failures import failures_stage

    out = {table: getattr(args, f"{table}_out") for table in OUTPUTS}
    failures_stage(read_common(args), args.manifest, args.task, args.problems, args.eval, args.samples, out)


def main_calculation_heads(args: argparse.Namespace) -> None:
    from sparks.failures.calculation import calculation_heads_stage

    calculation_heads_stage(read_common(args), args.samples, args.problems, args.task, args.out, args.top_k)
