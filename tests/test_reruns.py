"""Reruns on the shared full-size DAG run: a killed job, and every stage rerun on copies of only
its declared inputs. Its own file, scheduled last, so that the second pytest-xdist worker runs it
once the first has built the DAG (conftest's dag_run)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import ENV, REPO, job_counts, snakemake

from sparks import forkserver
from sparks.tables import read_table


@pytest.mark.slow
def test_killed_attribute_job_reruns_to_the_same_table(dag_run, tmp_path):
    """SIGKILL snakemake and its attribute job (a node crash) while the job writes its tables:
    what it left is never trusted, and the rerun writes the same tables as the undisturbed run."""
    from sparks.attribute import TABLES

    work = tmp_path / "work"
    shutil.copytree(dag_run.parent.parent, work)  # file times kept: nothing else is out of date
    results = work / "results" / "embedded"
    outputs = [results / kind / "sft" / "30" / "arith.parquet" for kind in TABLES]
    for path in outputs:
        path.unlink()
    targets = [str(p.relative_to(work)) for p in outputs]
    profile = str(REPO / "profiles" / "local")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work)]
    crashed = subprocess.Popen([*cmd, "--profile", profile, *targets], env=ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folders = {p.parent for p in outputs}
    deadline = time.monotonic() + 600
    while crashed.poll() is None and time.monotonic() < deadline:
        if any(p.exists() for p in outputs):  # one table is in place, the others are being written
            break
        time.sleep(0.002)
    os.killpg(crashed.pid, signal.SIGKILL)  # snakemake and the job, as a crashed node would
    crashed.wait()
    written = [p for p in outputs if p.exists()]
    assert len(written) < len(TABLES), "the job finished before it could be killed"

    # A killed snakemake leaves its lock: `--unlock` once (as after any crash), then rerun.
    assert snakemake(work, "--unlock").returncode == 0
    # Without being told to, snakemake refuses to build on what the killed job left behind.
    plan = snakemake(work, *targets, "-n")
    assert plan.returncode != 0 and "incomplete" in (plan.stdout + plan.stderr).lower()
    # The profile reruns the job; its tables equal the undisturbed run's, and no temporary is left.
    rerun = snakemake(work, "--profile", profile, *targets)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert job_counts(rerun.stdout + rerun.stderr).get("attribute") == 1
    for kind, path in zip(TABLES, outputs):
        before = read_table(dag_run / kind / "sft" / "30" / "arith.parquet", kind).drop("created_at")
        assert read_table(path, kind).drop("created_at").equals(before), kind
    assert not [f for d in folders for f in d.iterdir() if ".tmp-" in f.name]


def planned_jobs(output: str) -> list[dict]:
    """The jobs of a ``snakemake -n -p`` plan: rule, input, output, log and shell command."""
    jobs = []
    for block in re.split(r"^(?:local)?(?:rule|checkpoint) ", output, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0]
        fields = dict(re.findall(r"^    (input|output|log): (.*)$", block, re.MULTILINE))
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append({
            "rule": rule,
            **{key: fields[key].split(", ") if key in fields else [] for key in ("input", "output", "log")},
            "shell": shell[1] if shell else None,
        })  # fmt: skip
    return jobs


@pytest.mark.slow
def test_each_stage_reads_only_the_files_its_rule_declares(dag_run, tmp_path):
    """One job of each rule downstream of training, rerun by hand in an empty folder on copies of
    only its declared inputs, renamed and moved (a manifest travels with the checkpoint folders it
    lists): each succeeds and writes the same tables. A stage that globbed the results folder,
    walked up from a path, or read a file its rule does not declare would fail here."""
    from sparks import layout
    from sparks.manifest import read_manifest

    work = dag_run.parent.parent
    targets = {
        "prepare_data": layout.problems("arith", "embedded"),
        "attribute_think": layout.think_attribution("heads", "on", "sft", 0, "arith", "embedded"),
        "evaluate": layout.eval_samples("sft", 30, "arith", "embedded"),
        "aggregate": layout.circuits("circuit", "sft", "arith", "embedded"),
        "think_modes": layout.circuits("think_modes", "sft", "arith", "embedded"),
        "intervene": layout.interventions("sft", "arithlong", "embedded"),  # the run's arith heads on another set
        "failures": layout.failures("failures", "sft", "embedded"),
        "plot": layout.report_section("sft", "arith", "embedded"),
        "report": layout.report("embedded"),
    }
    jobs = {}
    # prepare_data planned on its own: forcing it would re-plan training, whose outputs are then unknown
    for group in ([targets["prepare_data"]], [t for rule, t in targets.items() if rule != "prepare_data"]):
        plan = snakemake(work, "-n", "-p", "-f", *group)
        assert plan.returncode == 0, plan.stderr[-3000:]
        jobs |= {j["rule"]: j for j in planned_jobs(plan.stdout + plan.stderr) if set(group) & set(j["output"])}
    assert set(jobs) == set(targets), sorted(jobs)

    # Each stage runs as the local workflow runs it, forked by a fork server (sparks.forkserver),
    # here in its own empty folder.
    server = forkserver.start(tmp_path / "server.log", "sparks.cli:main", env=ENV)
    env = {**ENV, forkserver.ENV: server.path}
    try:
        server.wait()
        for rule, job in jobs.items():
            here = tmp_path / rule
            (here / "in").mkdir(parents=True)
            shutil.copy(work / "workflow_config.yaml", here / "workflow_config.yaml")  # a param, not a results file
            moved = {}
            for i, path in enumerate(job["input"]):
                source, target = work / path, here / "in" / str(i) / Path(path).name
                if source.is_dir():
                    shutil.copytree(source, target)
                else:
                    target.parent.mkdir(parents=True)
                    shutil.copy(source, target)
                if source.name == "checkpoints.json":
                    manifest = read_manifest(source)
                    for step in manifest.steps:
                        shutil.copytree(manifest.checkpoint(step), target.parent / manifest.folders[step])
                moved[path] = str(target)
            for i, path in enumerate(job["output"] + job["log"]):
                moved[path] = str(here / "out" / str(i) / Path(path).name)
                Path(moved[path]).parent.mkdir(parents=True)
            command = " ".join(moved.get(token, token) for token in job["shell"].split(" "))
            assert "results/" not in command, command
            done = subprocess.run(command, shell=True, cwd=here, env=env, capture_output=True, text=True, check=False)
            log = Path(moved[job["log"][0]]).read_text() if job["log"] else ""
            assert done.returncode == 0, f"{rule}: {command}\n{done.stderr[-2000:]}{log[-3000:]}"
            for path in job["output"]:
                if path.endswith(".parquet"):
                    ours = pl.read_parquet(moved[path]).drop("created_at")
                    assert ours.equals(pl.read_parquet(work / path).drop("created_at")), f"{rule}: {path} differs"
                else:
                    assert Path(moved[path]).stat().st_size > 0, f"{rule}: {path} is empty"
    finally:
        server.stop()
    assert len(forkserver.forked(server.log)) == len(jobs)
