"""``sparks train``, ``head-policy``, ``accelerate-config`` and ``teacher-traces``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, read_common


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="post-train with TRL (sft | grpo | distill) and save checkpoints, or list a models run's checkpoints"
    )
    add_common(p)
    p.add_argument("--run", required=True, help="run name under runs: in the config")
    p.add_argument("--base", type=Path, default=None, help="model folder from prepare-model (runs that train)")
    p.add_argument("--problems", type=Path, default=None, help="the run's task problems table (runs that train)")
    p.add_argument("--teacher-traces", type=Path, default=None, help="distill runs: the teacher_traces table to learn from")
    p.add_argument("--head-policy", type=Path, default=None, help="runs with heads: the head_policy table (sparks head-policy)")
    p.add_argument("--manifest-out", type=Path, required=True, help="output: checkpoints.json (checkpoints are saved beside it)")
    p.add_argument("--train-log-out", type=Path, required=True, help="output: the trainer's log history (Parquet)")
    p.set_defaults(func=main)

    h = subparsers.add_parser("head-policy", help="resolve a run's head policy (runs.<name>.heads) into heads")
    add_common(h)
    h.add_argument("--run", required=True, help="run name under runs: in the config")
    for policy in ("freeze", "train_only", "anchor"):
        h.add_argument(
            f"--{policy.replace('_', '-')}", type=Path, default=None, help=f"the table heads.{policy}'s set is read from"
        )
    h.add_argument("--out", type=Path, required=True, help="output: the head_policy table (Parquet)")
    h.set_defaults(func=main_head_policy)

    a = subparsers.add_parser("accelerate-config", help="the accelerate config of a several-GPU training job (resources.train)")
    add_common(a)
    a.add_argument("--out", type=Path, required=True, help="output: accelerate config (YAML)")
    a.set_defaults(func=main_accelerate_config)

    t = subparsers.add_parser("teacher-traces", help="sample a distill run's teacher on its training problems (cached)")
    add_common(t)
    t.add_argument("--run", required=True, help="distill run name under runs: in the config")
    t.add_argument("--problems", type=Path, required=True, help="the run's task problems table (prepare-data)")
    t.add_argument("--teacher", type=Path, default=None, help="the model folder it samples (distill.teacher teacher or base)")
    t.add_argument("--out", type=Path, required=True, help="output: the teacher_traces table (Parquet)")
    t.set_defaults(func=main_teacher_traces)


def main(args: argparse.Namespace) -> None:
    from sparks.train import train_run

    config = read_common(args)
    policy = None
    if config["runs"].get(args.run, {}).get("heads") is not None:
        from sparks.train.policy import read_policy

        if args.head_policy is None:
            raise SystemExit(
                f"sparks train: runs.{args.run}.heads is set: pass --head-policy (the table sparks head-policy writes)"
            )
        policy = read_policy(config, args.run, args.head_policy)
    train_run(config, args.run, args.base, args.problems, args.manifest_out, args.train_log_out, args.teacher_traces, policy)


def main_head_policy(args: argparse.Namespace) -> None:
    from sparks.config import POLICIES
    from sparks.train.policy import head_policy_stage

    given = {p: getattr(args, p) for p in POLICIES if getattr(args, p) is not None}
    head_policy_stage(read_common(args), args.run, given, args.out)


def main_teacher_traces(args: argparse.Namespace) -> None:
    from sparks.train.teacher import sample_teacher_traces

    sample_teacher_traces(read_common(args), args.run, args.problems, args.teacher, args.out)


def main_accelerate_config(args: argparse.Namespace) -> None:
    from sparks.train.launch import write_accelerate_config

    job = read_common(args)["resources"]["train"]
    write_accelerate_config(job["gpus"], job["strategy"], args.out)
