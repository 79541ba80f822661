import pytest
from conftest import run_sparks

STAGES = {
    "prepare-model": "--out",
    "prepare-data": "--problems",
    "train": "--manifest",
    "attribute": "--heads",
    "aggregate": "--cohorts",
    "evaluate": "--step",
    "intervene": "--samples",
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
