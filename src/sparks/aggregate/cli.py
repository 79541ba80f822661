"""``sparks aggregate`` and ``sparks think-modes``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, files, read_common


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    from sparks.aggregate import INPUTS, TABLES

    p = subparsers.add_parser("aggregate", help="circuits, cohorts, frequency and stability of one run")
    add_common(p, manifest=True, task=True)
    for kind in INPUTS:
        p.add_argument(f"--{kind.replace('_', '-')}", **files(f"the run's {kind} tables, one per checkpoint"))
    p.add_argument("--train-log", type=Path, required=True, help="the run's train_log.parquet (reward for emergence)")
    for name in TABLES:
        p.add_argument(f"--{name}-out", type=Path, required=True, help=f"output: {name} table (Parquet)")
    p.set_defaults(func=main)

    t = subparsers.add_parser("think-modes", help="circuits of the same checkpoints on think-on vs think-off prompts")
    add_common(t, task=True)
    t.add_argument("--run", required=True, help="run name under runs: in the config")
    for kind in ("heads", "edges"):
        for mode in ("on", "off"):
            t.add_argument(f"--{kind}-{mode}", **files(f"{kind} tables of the compared checkpoints, think {mode}"))
    t.add_argument("--out", type=Path, required=True, help="output: think_modes table (Parquet)")
    t.add_argument("--overlap", type=Path, required=True, help="output: think_overlap table (Parquet)")
    t.set_defaults(func=main_think_modes)


def main(args: argparse.Namespace) -> None:
    from sparks.aggregate import INPUTS, TABLES, aggregate_stage

    config = read_common(args)
    inputs = {kind: getattr(args, kind) for kind in INPUTS}
    out = {name: getattr(args, f"{name}_out") for name in TABLES}
    aggregate_stage(config, args.manifest, args.task, inputs, args.train_log, out)


def main_think_modes(args: argparse.Namespace) -> None:
    from sparks.aggregate.think_modes import think_modes_stage

    config = read_common(args)
    inputs = {(kind, mode == "on"): getattr(args, f"{kind}_{mode}") for kind in ("heads", "edges") for mode in ("on", "off")}
    think_modes_stage(config, inputs, args.task, args.run, args.out, args.overlap)
