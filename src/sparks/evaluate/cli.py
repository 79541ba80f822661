"""``sparks evaluate``, ``intervene``, ``merge-interventions`` and ``head-ablations``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, files, read_common


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="sampled accuracy of one checkpoint on the task's eval problems")
    add_common(p, manifest=True, task=True)
    p.add_argument("--step", type=int, required=True, help="checkpoint step (one listed in the manifest)")
    p.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    p.add_argument("--eval-out", type=Path, required=True, help="output: every sample (eval table, Parquet)")
    p.add_argument("--passk-out", type=Path, required=True, help="output: accuracy, pass@k, success@k, all-correct@k (Parquet)")
    p.set_defaults(func=main)

    q = subparsers.add_parser("intervene", help="ablate / scale a run's emergent heads (evaluate.heads) against control heads")
    add_common(q, manifest=True, task=True)
    q.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    q.add_argument("--cohorts", type=Path, required=True, help="the run's cohorts.parquet (aggregate stage)")
    q.add_argument(
        "--frequency",
        type=Path,
        default=None,
        help="the run's frequency.parquet: the outside control never draws a head active in it",
    )
    q.add_argument("--think-modes", type=Path, default=None, help="the run's think_modes.parquet (evaluate.heads: think_*_only)")
    q.add_argument(
        "--replicate-heads",
        type=Path,
        default=None,
        help="a replicated run's replicate_heads.parquet: intervene on its robust emergent set instead of the run's own",
    )
    q.add_argument(
        "--condition", default=None, help="evaluate one condition only (evaluate.split_interventions), e.g. scale-emergent-a1.3"
    )
    q.add_argument("--interventions-out", type=Path, required=True, help="output: interventions table (Parquet)")
    q.add_argument("--intervention-samples-out", type=Path, required=True, help="output: every sample behind the table (Parquet)")
    q.set_defaults(func=main_intervene)

    m = subparsers.add_parser("merge-interventions", help="join one run's per-condition intervene tables")
    m.add_argument("--tables", **files("the per-condition interventions tables, in condition order"))
    m.add_argument("--samples", **files("the per-condition intervention_samples tables, in the same order"))
    m.add_argument("--interventions-out", type=Path, required=True, help="output: interventions table (Parquet)")
    m.add_argument("--intervention-samples-out", type=Path, required=True, help="output: intervention_samples table (Parquet)")
    m.set_defaults(func=main_merge_interventions)

    h = subparsers.add_parser(
        "head-ablations", help="a starting model's samples with each head ablated alone (calculation heads)"
    )
    add_common(h, task=True)
    h.add_argument("--model", type=Path, required=True, help="the prepared model's folder (prepare-model)")
    h.add_argument("--problems", type=Path, required=True, help="the task's problems table (prepare-data)")
    h.add_argument("--role", default=None, help="the model's role, for the provenance run column (default: the folder's name)")
    h.add_argument(
        "--out", type=Path, required=True, help="output: intervention_samples table, heads_from none or a head (Parquet)"
    )
    h.set_defaults(func=main_head_ablations)


def main(args: argparse.Namespace) -> None:
    from sparks.evaluate import evaluate_stage

    evaluate_stage(read_common(args), args.manifest, args.step, args.task, args.problems, args.eval_out, args.passk_out)


def main_intervene(args: argparse.Namespace) -> None:
    from sparks.evaluate import intervene_stage

    intervene_stage(
        read_common(args),
        args.manifest,
        args.task,
        args.problems,
        args.cohorts,
        args.interventions_out,
        args.intervention_samples_out,
        args.think_modes,
        args.replicate_heads,
        args.condition,
        args.frequency,
    )


def main_merge_interventions(args: argparse.Namespace) -> None:
    from sparks.evaluate import merge_interventions

    merge_interventions(args.tables, args.samples, args.interventions_out, args.intervention_samples_out)


def main_head_ablations(args: argparse.Namespace) -> None:
    from sparks.evaluate.ablations import head_ablations_stage

    head_ablations_stage(read_common(args), args.model, args.task, args.problems, args.out, args.role)
