"""sparks.forkserver: a job the fork server runs is the job a new process runs (same tables, exit
status and messages), a killed job takes its stage with it, and the server ends with its workflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ENV

from sparks import forkserver

ENTRY = "sparks.cli:main"  # what the workflow's jobs run


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = forkserver.start(tmp_path_factory.mktemp("server") / "server.log", ENTRY, env=ENV)  # the jobs' environment
    assert started is not None
    try:
        started.wait()  # it preloads torch first
        yield started
    finally:
        started.stop()


def sparks(args: str, cwd: Path, server: forkserver.Server | None, **env: str) -> subprocess.CompletedProcess:
    """A job's command line, as a rule's shell runs it: through the server, or (None) in a new process."""
    environment = {**ENV, **env, forkserver.ENV: server.path if server else "off"}
    return subprocess.run(f"sparks {args}", shell=True, cwd=cwd, env=environment, capture_output=True, text=True)


@pytest.mark.slow
def test_a_served_job_writes_what_a_new_process_writes(server, tmp_path, raw_config, tiny_model_dir):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw_config))
    before = len(forkserver.forked(server.log))
    outputs = {}
    for name, via in (("served", server), ("plain", None)):
        out = tmp_path / name
        args = (
            f"prepare-data --config config.yaml --task arith --tokenizer {tiny_model_dir} "
            f"--problems {out}/problems.parquet --pairs {out}/pairs.parquet"
        )
        done = sparks(args, tmp_path, via, OMP_NUM_THREADS="1")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "fork server" not in done.stderr
        outputs[name] = [pl.read_parquet(out / f"{table}.parquet").drop("created_at") for table in ("problems", "pairs")]
    assert all(a.equals(b) for a, b in zip(outputs["served"], outputs["plain"]))
    assert [argv for _, argv in forkserver.forked(server.log)[before:]] == [args.replace("plain", "served").split()]


def test_a_failing_job_fails_the_same_way(server, tmp_path):
    before = len(forkserver.forked(server.log))
    args = "attribute --config nowhere.yaml --manifest none.json --step 0 --task arith --pairs none.parquet --heads-out h.parquet"
    results = [sparks(args, tmp_path, via) for via in (server, None)]
    assert [r.returncode for r in results] == [2, 2]
    assert results[0].stderr == results[1].stderr and "nowhere.yaml" in results[0].stderr
    bad_flag = [sparks("--no-such-flag evaluate", tmp_path, via) for via in (server, None)]
    assert [r.returncode for r in bad_flag] == [2, 2] and bad_flag[0].stderr == bad_flag[1].stderr
    assert "required: --manifest" in bad_flag[0].stderr
    assert len(forkserver.forked(server.log)) - before == 2


def test_a_job_in_another_environment_runs_in_its_own_process(server, tmp_path):
    before = len(forkserver.forked(server.log))
    done = sparks("evaluate --no-such-flag", tmp_path, server, HF_HUB_OFFLINE="0")
    assert done.returncode == 2
    assert "not using the fork server (the job's environment differs from the server's in HF_HUB_OFFLINE)" in done.stderr
    assert len(forkserver.forked(server.log)) == before


def test_no_server_or_a_dead_socket_runs_the_job_itself(tmp_path):
    for path in ("off", str(tmp_path / "no-socket")):
        done = subprocess.run(
            "sparks evaluate --no-such-flag",
            shell=True,
            cwd=tmp_path,
            env={**ENV, forkserver.ENV: path},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2 and "required: --manifest" in done.stderr and "fork server" not in done.stderr


@pytest.mark.slow
def test_killing_the_job_kills_its_stage(server, tmp_path, raw_config):
    raw_config["base"]["pretrain"]["steps"] = 1_000_000  # runs until killed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw_config))
    before = len(forkserver.forked(server.log))
    job = subprocess.Popen(
        ["sparks", "prepare-model", "--config", "config.yaml", "--role", "base", "--out", str(tmp_path / "base")],
        cwd=tmp_path, env={**ENV, forkserver.ENV: server.path, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stage = None
    try:
        wait_for(lambda: len(forkserver.forked(server.log)) > before, what="the server to fork the stage")
        stage = forkserver.forked(server.log)[before][0]
        assert alive(stage)
        job.send_signal(signal.SIGKILL)  # no chance to pass anything on: the stage sees its client gone
        job.wait()
        wait_for(lambda: not alive(stage), timeout=10, what=f"the stage (pid {stage}) to end with its job")
    finally:  # a failure leaves nothing running
        job.kill()
        if stage is not None and alive(stage):
            os.kill(stage, signal.SIGKILL)


def test_the_server_ends_with_the_workflow_that_started_it(tmp_path):
    script = (
        "import os, sys, time; from pathlib import Path; from sparks import forkserver\n"
        f"server = forkserver.start(Path({str(tmp_path / 'server.log')!r}), {ENTRY!r})\n"
        "print(server.path, server.process.pid, flush=True)\n"
        "while not os.path.exists(server.path): time.sleep(0.05)\n"
        "os._exit(0)  # no stop(): as if Snakemake were killed\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    path, pid = done.stdout.split()
    wait_for(lambda: not os.path.exists(path), timeout=30, what="the orphaned server to remove its socket")
    wait_for(lambda: not alive(int(pid)), timeout=30, what="the orphaned server to exit")
    assert not Path(path).parent.exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[1].startswith("Z"))  # a zombie has ended
