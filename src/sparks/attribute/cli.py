"""``sparks attribute``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, read_common
from sparks.layout import ATTRIBUTION


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attribute", help="EAP-IG head and edge scores of one checkpoint on one task")
    add_common(p, manifest=True, task=True)
    p.add_argument("--step", type=int, required=True, help="checkpoint step (one listed in the manifest)")
    p.add_argument(
        "--pairs", type=Path, required=True, help="the pairs table: the task's (prepare-data) or the run's style pairs"
    )
    p.add_argument("--think", choices=("on", "off"), default=None, help="score these pairs (default: attribute.think)")
    p.add_argument("--heads-out", type=Path, help="output: head table (Parquet)")
    p.add_argument("--edges-out", type=Path, help="output: edge table (Parquet)")
    p.add_argument("--pair-edges-out", type=Path, help="output: each pair's edge scores (Parquet)")
    p.add_argument("--faithfulness-out", type=Path, help="output: faithfulness curve (Parquet; the costly one)")
    p.add_argument("--head-effects-out", type=Path, help="output: each pair's exact per-head effects (Parquet; attribute.exact)")
    p.set_defaults(func=main)

    s = subparsers.add_parser("style-pairs", help="a run's style-contrast pairs: its starting and reasoning models' openings")
    add_common(s, manifest=True, task=True)
    s.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    s.add_argument("--out", type=Path, required=True, help="output: the style pairs (Parquet, the pairs schema)")
    s.set_defaults(func=main_style_pairs)


def main_style_pairs(args: argparse.Namespace) -> None:
    from sparks.attribute.style import style_pairs_stage

    style_pairs_stage(read_common(args), args.manifest, args.task, args.problems, args.out)


def main(args: argparse.Namespace) -> None:
    from sparks.attribute import attribute_checkpoint

    config = read_common(args)
    out = {name: getattr(args, f"{name}_out") for name in ATTRIBUTION if getattr(args, f"{name}_out") is not None}
    if not out:
        raise SystemExit(
            "sparks attribute: name at least one output (--heads-out, --edges-out, --pair-edges-out, --faithfulness-out, --head-effects-out)"
        )
    think = None if args.think is None else args.think == "on"
    attribute_checkpoint(config, args.manifest, args.step, args.task, args.pairs, out, think)
