"""Every stage given damaged inputs (each cut to its first 2,000 bytes) stops with exit code 2 and
one line that names a file it was given and what it should be (a table: and the rule that writes
it; a manifest: rerun its train job; a model folder: what it lacks); it writes nothing. The GPU
stages meet their first input the same way (most, the manifest). tests/test_workflow.py cuts
aggregate's heads table in a real run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, commands

from sparks.cli import main

COMMANDS = (
    "aggregate",
    "think-modes",
    "replicates",
    "claims",
    "failures",
    "plot",
    "plot-replicates",
    "report",
    "merge-interventions",
    "attribute",
    "evaluate",
    "intervene",
    "style-pairs",
    "teacher-traces",
    "train",
)


def arguments(command: str, cut: Path, out: Path) -> list[str]:
    """Every flag of ``command``: inputs get the cut file, outputs a path under ``out``."""
    parser = commands()[command]
    args = [command]
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag in (None, "-h"):
            continue
        if flag == "--config":
            args += [flag, str(REPO / "workflow_config.yaml")]
            continue
        if (action.help or "").startswith("output"):
            args += [flag, str(out / flag.strip("-"))]
        elif flag == "--task":
            args += [flag, "arith"]
        elif flag == "--run":
            args += [flag, "distill" if command == "teacher-traces" else "sft"]
        elif flag == "--step":
            args += [flag, "0"]
        elif action.type is Path:
            args += [flag, str(cut)]
    return args


@pytest.mark.parametrize("command", COMMANDS)
def test_a_cut_table_stops_the_stage_in_one_line(command, tmp_path, capsys):
    table = tmp_path / "whole.parquet"
    pl.DataFrame({"x": list(range(2000))}).write_parquet(table)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(table.read_bytes()[:2000])
    out = tmp_path / "out"
    code = main(arguments(command, cut, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len([line for line in err if line.startswith(f"sparks {command}: error:")]) == 1, err
    line = err[-1]
    print(line)
    what = (
        " table (" in line and "written by rule" in line,
        "not a valid sparks manifest" in line,
        "not a complete Hugging Face model folder" in line,
    )
    assert str(cut) in line and any(what), line
    assert not out.exists() or not any(out.iterdir())
