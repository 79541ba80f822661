import subprocess
import sys

import pytest

STAGES = ["prepare-model", "prepare-data", "train"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help(stage):
    result = subprocess.run([sys.executable, "-m", "sparks.cli", stage, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--out" in result.stdout


def test_unknown_flag_is_rejected_by_name():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparks.cli",
            "train",
            "--run",
            "sft",
            "--base",
            "b",
            "--data-dir",
            "d",
            "--out-dir",
            "o",
            "--learning-rate",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--learning-rate" in result.stderr
