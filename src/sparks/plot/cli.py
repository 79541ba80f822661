"""``sparks plot`` and ``sparks report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparks.arguments import add_common, files, read_common


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    from sparks.plot import INPUTS, PAIR_INPUTS, PER_CHECKPOINT, SET_INPUTS, THINK_INPUTS

    p = subparsers.add_parser("plot", help="figures and report section of one run, from its tables")
    add_common(p, task=True)
    p.add_argument("--run", required=True, help="run name under runs: in the config")
    for name in INPUTS:
        flag, optional = f"--{name.replace('_', '-')}", name in THINK_INPUTS + PAIR_INPUTS
        if name in PER_CHECKPOINT:
            p.add_argument(flag, **files(f"the run's {name} tables, one per checkpoint"))
        else:
            p.add_argument(
                flag, type=Path, required=not optional, help=f"the run's {name} table" + (" (if compared)" if optional else "")
            )
    for name, schema in SET_INPUTS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}", nargs="+", type=Path, default=None,
            help=f"the run's {schema} tables on its other evaluation sets (runs.<name>.evaluate_on)",
        )  # fmt: skip
    p.add_argument("--figures-out", **files("output: every figure file, {task}_{name}.png and .svg"))
    p.add_argument("--section-out", type=Path, required=True, help="output: the run's report section (HTML)")
    p.set_defaults(func=main)

    from sparks.plot import REPLICATE_INPUTS

    q = subparsers.add_parser(
        "plot-replicates", help="figures and report section of a replicated run, from its replicates tables"
    )
    add_common(q, task=True)
    q.add_argument("--run", required=True, help="the replicated run (a name under runs: with seeds)")
    for name in REPLICATE_INPUTS:
        q.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=f"the run's {name} table")
    q.add_argument("--figures-out", **files("output: every figure file, {task}_{name}.png and .svg"))
    q.add_argument("--section-out", type=Path, required=True, help="output: the run's report section (HTML)")
    q.set_defaults(func=main_plot_replicates)

    from sparks.plot.report import OPTIONAL_INPUTS, REPORT_INPUTS

    r = subparsers.add_parser("report", help="one self-contained HTML page: the answer first, runs side by side, a head explorer")
    add_common(r)
    r.add_argument("--sections", **files("every run's report section (plot stage), in report order"))
    r.add_argument("--models", **files("the prepared base (and teacher) model folders, for their accuracy tables"))
    for name in REPORT_INPUTS:
        optional = name in OPTIONAL_INPUTS
        flag = files(f"every run's {name} tables" + (" (absent or empty: none)" if optional else ""), required=not optional)
        r.add_argument(f"--{name.replace('_', '-')}", **flag | ({"nargs": "*"} if optional else {}))
    r.add_argument("--out", type=Path, required=True, help="output HTML file")
    r.set_defaults(func=main_report)


def main(args: argparse.Namespace) -> None:
    from sparks.config import fixed_circuit_size, task_difficulties
    from sparks.plot import INPUTS, SET_INPUTS, THINK_INPUTS, plot_run, read_inputs
    from sparks.plot.report import behaviour_note, write_section

    config = read_common(args)
    order = task_difficulties(config["tasks"][args.task])
    given = {name: getattr(args, name) for name in (*INPUTS, *SET_INPUTS) if getattr(args, name) is not None}
    if 0 < sum(name in given for name in THINK_INPUTS) < len(THINK_INPUTS):
        raise SystemExit("sparks plot: give both --think-modes and --think-overlap, or neither")
    tables = read_inputs(given)
    fixed_size = fixed_circuit_size(config["aggregate"]["top_n"], config["aggregate"]["faithfulness_target"])
    paths = plot_run(tables, args.run, args.task, args.figures_out, order, fixed_size)
    note = behaviour_note(config, args.run, tables.get("pair_kinds")) if args.run in config["runs"] else ""
    write_section(tables, [p for p in paths if p.suffix == ".svg"], args.run, args.task, order, args.section_out, note)


def main_plot_replicates(args: argparse.Namespace) -> None:
    from sparks.config import task_difficulties
    from sparks.plot import REPLICATE_INPUTS as INPUTS
    from sparks.plot.replicates import plot_replicates, write_replicates_section
    from sparks.tables import read_table

    config = read_common(args)
    tables = {name: read_table(getattr(args, name), name) for name in INPUTS}
    order = task_difficulties(config["tasks"][args.task])
    paths = plot_replicates(tables, order, args.run, args.task, args.figures_out)
    write_replicates_section(tables, [p for p in paths if p.suffix == ".svg"], args.run, args.task, order, args.section_out)


def main_report(args: argparse.Namespace) -> None:
    from sparks.plot.report import REPORT_INPUTS, write_report
    from sparks.tables import read_table

    config = read_common(args)
    tables = {name: read_table(list(getattr(args, name)), name) for name in REPORT_INPUTS if getattr(args, name)}
    write_report(config, args.sections, tables, args.models, args.out)
