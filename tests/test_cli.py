import pytest
from conftest import commands, run_sparks

STAGES = {
    "prepare-model": "--out",
    "prepare-data": "--problems-out",
    "train": "--manifest-out",
    "attribute": "--heads-out",
    "aggregate": "--cohorts-out",
    "evaluate": "--passk-out",
    "intervene": "--intervention-samples-out",
    "think-modes": "--think-overlap-out",
    "failures": "--failure-changes-out",
    "plot": "--figures-out",
    "report": "--out",
    "replicates": "--replicate-heads-out",
    "claims": "--out",
    "plot-replicates": "--section-out",
}


@pytest.mark.parametrize(("stage", "output_flag"), STAGES.items())
def test_stage_help(stage, output_flag):
    result = run_sparks(stage, "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and output_flag in result.stdout


def test_unknown_flag_is_rejected_by_name():
    outputs = ("--manifest-out", "m", "--train-log-out", "t")
    result = run_sparks("train", "--run", "sft", "--base", "b", "--problems", "p", *outputs, "--learning-rate", "1")
    assert result.returncode == 2
    assert "--learning-rate" in result.stderr


def test_every_handler_is_named_for_its_command():
    """``main`` for the command a stage package is named for, ``main_<command>`` for the others."""
    for command, parser in commands().items():
        func = parser.get_default("func")
        package = func.__module__.split(".")[1]
        expected = "main" if command == package else f"main_{command.replace('-', '_')}"
        assert func.__name__ == expected, f"sparks {command}: {func.__module__}.{func.__name__}"


def test_outputs_are_out_or_named_out():
    """A command with one output names it --out; one with several, --<name>-out each; no input ends in -out."""
    for command, parser in commands().items():
        flags = {a.option_strings[0]: (a.help or "").startswith("output") for a in parser._actions if a.option_strings}
        outputs = [f for f, out in flags.items() if out]
        assert outputs == ["--out"] or all(f.endswith("-out") for f in outputs) and len(outputs) > 1 or not outputs, command
        assert not [f for f, out in flags.items() if f.endswith("-out") and not out], command
