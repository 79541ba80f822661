"""profiles/slurm on a real SLURM: slurmctld + slurmd + munge started on localhost by the test.

The embedded default runs through ``snakemake --profile profiles/slurm`` with every job an
``sbatch``. The node advertises two fake GPUs (GRES), so the GPU stages' ``gpu=1`` requests are
really scheduled; the code finds no CUDA and runs on the CPU. What the CI override changes, and
nothing else: the status command is ``squeue`` (no accounting database here) with short polling
intervals, and the experiment's step and sample counts are scaled down (``scaled_down`` below) so
that this second full DAG fits the suite's time budget next to the full-size local run.

Needs root and Debian's SLURM packages; ``.ci/run`` installs them and sets SPARKS_REQUIRE_SLURM=1,
which turns a missing SLURM into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from conftest import ENV, REPO
from slurm_cluster import PACKAGES, LocalSlurm, missing_binaries

from sparks import workflow

GPU_RULES = set(workflow.GPU_RULES)
# Rules this config does not need: style_pairs runs only with attribute.pairs: style, which excludes
# the think-mode comparison (attribute_think) that this test needs; tests/test_given_dag.py and
# tests/test_hub_shaped.py run it locally. The replicates rules (CPU jobs wired like aggregate's)
# need replicated runs, which put three more sbatch round trips of about 45 s each on this test's
# critical path; tests/test_replicates.py runs them locally. So do the head-policy rules (a run with
# runs.<name>.heads) and the pair-kind comparison (attribute.compare_pairs), which study configs
# use and the embedded default does not.
NOT_HERE = {"all", "style_pairs", "plot_replicates"}
NOT_HERE |= {"head_ablations", "calculation_heads", "head_policy", "policy_comparison"}
NOT_HERE |= {"attribute_style", "aggregate_style", "pair_kinds"}


def scaled_down(config: dict) -> dict:
    """The embedded default with fewer steps and samples and one run, distillation (the one
    that needs both prepared models): same model family, task and every rule of the workflow.
    This test checks wiring; the full-size DAG runs locally (conftest's dag_run)."""
    for role in ("base", "teacher"):
        config[role]["pretrain"]["steps"] = 60
    task = config["tasks"]["arith"]
    task.update(n_train=96, n_eval=6, n_pairs=12)
    del config["tasks"]["arithlong"]  # a second evaluation set: the same rules again (tests/test_workflow.py runs it)
    distill = {k: v for k, v in config["runs"]["distill"].items() if k != "evaluate_on"}
    config["runs"] = {"distill": {**distill, "max_steps": 2, "save_steps": 2}}
    config["aggregate"] = {"bootstrap": 10}
    config["evaluate"] = {**config.get("evaluate", {}), "random_seeds": 1}  # wiring: one draw per control
    return config


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_binaries()
    if missing or os.geteuid() != 0:
        why = f"SLURM needs root and `apt-get install {PACKAGES}` (missing: {', '.join(missing) or 'root'})"
        if os.environ.get("SPARKS_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.mark.slow
def test_embedded_default_runs_through_sbatch(slurm, tmp_path):
    config = scaled_down(yaml.safe_load((REPO / "workflow_config.yaml").read_text()))
    (tmp_path / "workflow_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    first_job = slurm.next_job_id()
    cmd = [
        "timeout", "-k", "30", "1200",  # snakemake ignores SIGTERM while it waits on SLURM
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path),
        "--profile", str(REPO / "profiles" / "slurm"),
        # CI override: no slurmdbd here, so no sacct; poll squeue often on a 2-core node.
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",  # the plugin adds 10 s per check that finds nothing
        "--seconds-between-status-checks", "5",
        "--latency-wait", "5",
        "--retries", "0",
        # a 2-core node: the training and generating jobs' cores (sparks.workflow.resources) would never schedule
        "--set-resources", *(f"{rule}:cpus_per_task=1" for rule in GPU_RULES),
    ]  # fmt: skip
    env = {**ENV, "SBATCH_PARTITION": slurm.partition}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]

    # Every job snakemake ran went through sbatch, and SLURM ran each to completion.
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log)
    ran = Counter(rule for rule in finished if rule != "all")  # `all` is a local target rule
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == ran.total(), f"{ran.total()} jobs ran, {len(submitted)} went to SLURM"
    assert slurm.next_job_id() - first_job == len(submitted)
    jobs = {job["JobId"]: job for job in slurm.completed_jobs()}
    assert all(jobs[j]["JobState"] == "COMPLETED" and jobs[j]["Partition"] == slurm.partition for j in submitted)

    # Every rule of the workflow ran there; GPU stages asked SLURM for a GPU, CPU stages did not.
    details = slurm.job_details()
    by_rule = Counter()
    for job_id in submitted:
        fields = details[job_id]
        rule = fields["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        by_rule[rule] += 1
        asked_gpu = "gpu:1" in fields.get("TresPerJob", "") + fields.get("TresPerNode", "")
        assert asked_gpu == (rule in GPU_RULES), f"job {job_id} of rule {rule}: {fields}"
    assert by_rule == ran
    assert set(ran) == workflow_rules() - NOT_HERE

    # All outputs exist: the plan from the finished folder is empty.
    again = subprocess.run([*cmd[4:], "-n"], capture_output=True, text=True, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    assert (tmp_path / "results" / "embedded" / "report.html").stat().st_size > 0


def workflow_rules() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, env=ENV, check=True,
    )  # fmt: skip
    return set(out.stdout.split())
