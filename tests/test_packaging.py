import tomllib

import yaml
from conftest import REPO


def test_conda_env_matches_pyproject_dependencies():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "sparks.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip if p != ".."] == deps
    assert "torch==2.13.0" in deps  # a looser pin pulls a multi-GB CUDA build


def test_readme_commands_are_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```bash\n")[1:]]
    install_and_run, tests = blocks[0].strip().splitlines()[0], blocks[1].strip()
    assert "pip install -e '.[dev]'" in install_and_run and "snakemake --profile profiles/local" in install_and_run
    ci = (REPO / ".ci" / "run").read_text()
    assert f"\n{tests}\n" in ci
