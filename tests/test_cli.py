import pytest
from conftest import run_sparks

STAGES = {
    "prepare-model": "--out",
    "prepare-data": "--problems",
    "train": "--manifest",
    "attribute": "--heads",
    "aggregate": "--cohorts",
    "evaluate": "--step",
    "intervene": "--samples-out",
    "think-modes": "--out",
    "failures": "--changes",
    "plot": "--figures",
    "report": "--out",
    "replicates": "--replicate-heads-out",
    "claims": "--failures",
    "plot-replicates": "--section",
}


@pytest.mark.parametrize(("stage", "output_flag"), STAGES.items())
def test_stage_help(stage, output_flag):
    result = run_sparks(stage, "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and output_flag in result.stdout


def test_unknown_flag_is_rejected_by_name():
    result = run_sparks(
        "train", "--run", "sft", "--base", "b", "--problems", "p", "--manifest", "m", "--train-log", "t", "--learning-rate", "1"
    )
    assert result.returncode == 2
    assert "--learning-rate" in result.stderr


def test_every_handler_is_named_for_its_command():
    """``main`` for the command a stage package is named for, ``main_<command>`` for the others."""
    import argparse

    from sparks.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command, parser in commands.items():
        func = parser.get_default("func")
        package = func.__module__.split(".")[1]
        expected = "main" if command == package else f"main_{command.replace('-', '_')}"
        assert func.__name__ == expected, f"sparks {command}: {func.__module__}.{func.__name__}"
