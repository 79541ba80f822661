"""``sparks aggregate``, ``think-modes``, ``pair-kinds``, ``replicates``, ``claims`` and ``policy-comparison``."""

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
        p.add_argument(f"--{name.replace('_', '-')}-out", type=Path, required=True, help=f"output: {name} table (Parquet)")
    p.set_defaults(func=main)

    t = subparsers.add_parser("think-modes", help="circuits of the same checkpoints on think-on vs think-off prompts")
    add_common(t, task=True)
    t.add_argument("--run", required=True, help="run name under runs: in the config")
    for kind in ("heads", "edges"):
        for mode in ("on", "off"):
            t.add_argument(f"--{kind}-{mode}", **files(f"{kind} tables of the compared checkpoints, think {mode}"))
    t.add_argument("--think-modes-out", type=Path, required=True, help="output: think_modes table (Parquet)")
    t.add_argument("--think-overlap-out", type=Path, required=True, help="output: think_overlap table (Parquet)")
    t.set_defaults(func=main_think_modes)

    k = subparsers.add_parser("pair-kinds", help="emergence calls of one run on operand vs style pairs")
    add_common(k, task=True)
    k.add_argument("--run", required=True, help="run name under runs: in the config")
    k.add_argument("--operand", type=Path, required=True, help="the run's cohorts table on operand pairs")
    k.add_argument("--style", type=Path, required=True, help="the run's cohorts table on style pairs")
    k.add_argument("--out", type=Path, required=True, help="output: pair_kinds table (Parquet)")
    k.set_defaults(func=main_pair_kinds)

    from sparks.aggregate.replicates import INPUTS as REPLICATE_INPUTS
    from sparks.aggregate.replicates import TABLES as REPLICATE_TABLES

    r = subparsers.add_parser("replicates", help="a replicated run's replicates compared: robust heads, agreement, intervals")
    add_common(r, task=True)
    r.add_argument("--run", required=True, help="the replicated run (a name under runs: with seeds)")
    for kind in REPLICATE_INPUTS:
        r.add_argument(f"--{kind}", **files(f"the replicates' {kind} tables"))
    for name in REPLICATE_TABLES:
        r.add_argument(f"--{name.replace('_', '-')}-out", type=Path, required=True, help=f"output: {name} table (Parquet)")
    r.set_defaults(func=main_replicates)

    c = subparsers.add_parser("claims", help="the study's claims tested across a replicated run's replicates")
    add_common(c, task=True)
    c.add_argument("--run", required=True, help="the replicated run (a name under runs: with seeds)")
    for name in ("replicate_heads", "replicate_reward"):
        c.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=f"the run's {name} table")
    c.add_argument("--failures", **files("the replicates' failures tables (every eval and intervention sample)"))
    c.add_argument("--think-overlap", **files("the replicates' think_overlap tables, if compared", required=False))
    c.add_argument("--null-calls", **files("the replicates' null_calls tables (heads that stay are counted against them)"))
    c.add_argument("--out", type=Path, required=True, help="output: replicate_claims table (Parquet)")
    c.set_defaults(func=main_claims)

    h = subparsers.add_parser("policy-comparison", help="a head-policy run's replicates against its plain run's, paired by seed")
    add_common(h, task=True)
    h.add_argument("--run", required=True, help="the head-policy run (a name under runs: with heads.compare_to)")
    for side in ("policy", "plain"):
        run = "the policy run's" if side == "policy" else "the plain run's (heads.compare_to)"
        h.add_argument(f"--{side}-failures", **files(f"{run} replicates' failures tables, in replicate order"))
        h.add_argument(f"--{side}-cohorts", **files(f"{run} replicates' cohorts tables, in replicate order"))
    h.add_argument("--out", type=Path, required=True, help="output: policy_comparison table (Parquet)")
    h.set_defaults(func=main_policy_comparison)


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
    think_modes_stage(config, inputs, args.task, args.run, args.think_modes_out, args.think_overlap_out)


def main_pair_kinds(args: argparse.Namespace) -> None:
    from sparks.aggregate.pair_kinds import pair_kinds_stage

    config = read_common(args)
    pair_kinds_stage(config, {"operand": args.operand, "style": args.style}, args.task, args.run, args.out)


def main_replicates(args: argparse.Namespace) -> None:
    from sparks.aggregate.replicates import INPUTS, TABLES, replicates_stage

    config = read_common(args)
    out = {name: getattr(args, f"{name}_out") for name in TABLES}
    replicates_stage(config, args.run, args.task, {kind: getattr(args, kind) for kind in INPUTS}, out)


def main_claims(args: argparse.Namespace) -> None:
    from sparks.aggregate.claims import claims_stage

    config = read_common(args)
    tables = {name: getattr(args, name) for name in ("replicate_heads", "replicate_reward")}
    claims_stage(config, args.run, args.task, tables, args.failures, args.think_overlap, args.out, args.null_calls)


def main_policy_comparison(args: argparse.Namespace) -> None:
    from sparks.aggregate.policies import policy_comparison_stage

    config = read_common(args)
    names = ("policy_failures", "plain_failures", "policy_cohorts", "plain_cohorts")
    policy_comparison_stage(config, args.run, args.task, {name: getattr(args, name) for name in names}, args.out)
