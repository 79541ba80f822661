"""``sparks <stage> ...``: one thin entry point per stage; the work is in the stage packages."""

from __future__ import annotations

import argparse
import logging
import sys

from sparks import __version__
from sparks.config import ConfigError
from sparks.manifest import ManifestError
from sparks.sources import ModelError

STAGES = (  # each stage package's cli module: make_parser(subparsers) and the commands' main functions
    "sparks.prepare.cli",
    "sparks.train.cli",
    "sparks.attribute.cli",
    "sparks.aggregate.cli",
    "sparks.evaluate.cli",
    "sparks.failures.cli",
    "sparks.plot.cli",
    "sparks.plan",  # not a stage: what a config will cost
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="sparks", description="Attention-head circuits across post-training checkpoints.")
    parser.add_argument("--version", action="version", version=f"sparks {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for module in STAGES:
        importlib.import_module(module).make_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a command line: a local workflow's fork server may run it (sparks.forkserver)
        from sparks.forkserver import run_via_server

        code = run_via_server(sys.argv[1:])
        if code is not None:
            return code
    from sparks.tables import TableError  # polars sets its allocator's variable on import: after the hand-off

    args = build_parser().parse_args(argv)  # unknown flags exit 2 with argparse's message
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except ConfigError as err:
        print(f"sparks {args.command}: config error: {err}", file=sys.stderr)
        return 2
    except (
        FileNotFoundError,
        KeyError,
        TableError,
        ManifestError,
        ModelError,
    ) as err:  # a missing or damaged input, run, step or task: one line
        if args.verbose:
            raise
        print(f"sparks {args.command}: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
