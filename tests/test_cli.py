import pytest

from conftest import run_sparks

STAGES = ["prepare-model", "prepare-data", "train"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help(stage):
    result = run_sparks(stage, "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--out" in result.stdout


def test_unknown_flag_is_rejected_by_name():
    result = run_sparks("train", "--run", "sft", "--base", "b", "--data-dir", "d", "--out-dir", "o", "--learning-rate", "1")
    assert result.returncode == 2
    assert "--learning-rate" in result.stderr
