"""Light entry points: ``sparks --help``, ``sparks plan`` and a Snakefile parse (a dry run of the
embedded default) import neither torch nor transformers nor seaborn nor matplotlib. Each runs in a
subprocess whose path puts stand-ins for those packages first: importing one fails loudly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ENV, REPO, commands

HEAVY = ("torch", "transformers", "seaborn", "matplotlib")


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """An environment in which importing any of HEAVY raises (a RuntimeError, which no
    ``except ImportError`` fallback swallows)."""
    root = tmp_path_factory.mktemp("blocked")
    for name in HEAVY:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise RuntimeError('a light entry point imported {name}')\n")
    return {**ENV, "PYTHONPATH": f"{root}:{REPO / 'src'}"}


def run(env: dict, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)


def test_the_stand_ins_block_a_heavy_import(blocked):
    result = run(blocked, "-c", "import sparks.generate")
    assert result.returncode != 0 and "a light entry point imported torch" in result.stderr


def test_sparks_help_and_every_stage_help_are_light(blocked):
    names = list(commands())
    assert len(names) > 15
    for args in [("--help",), *((command, "--help") for command in names)]:
        result = run(blocked, "-m", "sparks.cli", *args)
        assert result.returncode == 0, result.stderr[-2000:]


def test_sparks_plan_is_light(blocked):
    result = run(blocked, "-m", "sparks.cli", "plan", "--config", str(REPO / "workflow_config.yaml"))
    assert result.returncode == 0 and "total" in result.stdout, result.stderr[-2000:]


def test_a_snakefile_parse_is_light(blocked, tmp_path):
    args = ("-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path))
    result = run(blocked, *args, "--configfile", str(REPO / "workflow_config.yaml"), "-n", "--cores", "1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "rule prepare_model" in result.stdout
