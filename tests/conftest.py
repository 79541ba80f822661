"""Shared fixtures: the char tokenizer, a tokenizer with Qwen2.5's real vocabulary and chat
template (built offline, tests/qwen_tokenizer.py), a minimal valid config, and a saved tiny Qwen2 folder."""

from __future__ import annotations

import os

# Tests never reach a hub: loaders are exercised on local folders in the hub's layout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Two pytest-xdist workers share the cores: torch in a test (or in a stage it starts) takes one
# thread, as Snakemake gives each job; two threads each on two busy cores run 5-10x slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparks.sources import SUPPORTED_MODEL_TYPES  # light: no torch

REPO = Path(__file__).resolve().parents[1]


# The suite runs on two pytest-xdist workers (pyproject's addopts: -n 2, --dist loadfile), one test
# file at a time each, so a file's module fixtures are built once. The full-size DAG (dag_run) is
# built once per session, by the first worker that asks, and shared through a lock. The files that
# take longest go first: test_workflow.py starts the DAG on one worker while the one-core tests
# (SLURM, the hub-shaped DAG) fill the other; test_reruns.py, which reruns parts of the finished
# DAG, goes last, to whichever worker is free once the DAG is built.
FIRST = ("tests/test_workflow.py", "tests/test_slurm.py", "tests/test_hub_shaped.py")
LAST = (
    "tests/test_given_dag.py",
    "tests/test_replicates.py",
    "tests/test_plan.py",
    "tests/test_split_interventions.py",
    "tests/test_reruns.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return FIRST.index(path) if path in FIRST else len(FIRST) + 1 if path in LAST else len(FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def tokenizer():
    from sparks.model.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def qwen25_tokenizer_dir(tmp_path_factory) -> Path:
    from qwen_tokenizer import build_qwen25_tokenizer

    return build_qwen25_tokenizer(tmp_path_factory.mktemp("qwen25_tokenizer"))


@pytest.fixture(scope="session")
def qwen25_tokenizer(qwen25_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen25_tokenizer_dir)


@pytest.fixture(scope="session")
def qwen25_think_tokenizer(tmp_path_factory):
    """Qwen2.5's vocabulary plus Qwen3's added tokens: <think> and </think> are whole tokens."""
    from qwen_tokenizer import build_qwen25_tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(build_qwen25_tokenizer(tmp_path_factory.mktemp("qwen25_think"), think_tokens=True))


@pytest.fixture
def raw_config() -> dict:
    """The embedded default's YAML as a plain dict (tests edit their own copy)."""
    return copy.deepcopy(yaml.safe_load((REPO / "workflow_config.yaml").read_text()))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A random 2-layer tiny Qwen2 (4 heads, 2 KV heads) saved as a Hugging Face folder."""
    import torch

    from sparks.model.tiny import TinyShape, build_tiny_qwen2

    folder = tmp_path_factory.mktemp("tiny_qwen2")
    torch.manual_seed(0)  # the same random model in every session
    model = build_tiny_qwen2(
        TinyShape.defaults(hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=64), tokenizer
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", params=SUPPORTED_MODEL_TYPES)
def tiny_architecture_dir(request, tmp_path_factory, tokenizer) -> Path:
    """A random 2-layer tiny model (4 heads, 2 KV heads) of each architecture in
    sparks.sources.SUPPORTED_MODEL_TYPES, saved as a Hugging Face folder: the attribution's
    exactness tests run on each (a new architecture needs its entry in ``own``).

    Qwen2 has q/k/v biases; Qwen3 per-head q/k norms, no bias and heads wider than hidden_size /
    n_heads (as Qwen3-0.6B to 4B have); this Llama q/k/v/o and MLP biases (real Llamas have none,
    but Qwen3 covers that, and nothing else has an o_proj bias).
    Every bias and norm weight is moved off its init (0 and 1), so that one the edgewise forward
    drops shows."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    own = {"qwen2": {}, "qwen3": {"head_dim": 16}, "llama": {"attention_bias": True, "mlp_bias": True}}[request.param]
    config = AutoConfig.for_model(
        request.param,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **own,
    )
    torch.manual_seed(0)  # the same random models in every session
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.2 * torch.randn_like(param))
    folder = tmp_path_factory.mktemp(f"tiny_{request.param}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def silence_heads_except(model, live: set[tuple[int, int]]) -> None:
    """Zero the output-projection columns of every head not in ``live`` ((layer, head) pairs): the
    answer then depends on the sequence only through the live heads (a planted circuit)."""
    import torch

    from sparks.model import head_dim

    dh = head_dim(model.config)
    with torch.no_grad():
        for layer, block in enumerate(model.model.layers):
            for head in range(model.config.num_attention_heads):
                if (layer, head) not in live:
                    block.self_attn.o_proj.weight[:, head * dh : (head + 1) * dh] = 0


ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(workdir: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


@pytest.fixture(scope="session")
def dag_run(tmp_path_factory) -> Path:
    """The whole embedded default, as the README runs it (profiles/local, 2 cores), built once for
    all pytest-xdist workers of the session (the first to ask builds it; the others wait).

    A developer iterating on the slow tests may point SPARKS_TEST_DAG at the folder of a finished
    run of the same commit (it then holds results/embedded/); CI never sets it."""
    from filelock import FileLock

    if os.environ.get("SPARKS_TEST_DAG"):
        return Path(os.environ["SPARKS_TEST_DAG"]) / "results" / "embedded"
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    workdir, failed = shared / "dag", shared / "dag.failed"
    with FileLock(shared / "dag.lock"):
        if failed.exists():
            pytest.fail(f"the shared DAG run failed (built by another worker):\n{failed.read_text()}")
        if not (workdir / "results" / "embedded" / "report.html").exists():
            workdir.mkdir(exist_ok=True)
            shutil.copy(REPO / "workflow_config.yaml", workdir / "workflow_config.yaml")
            result = snakemake(workdir, "--profile", str(REPO / "profiles" / "local"), "--cores", "2")
            if result.returncode != 0:
                failed.write_text(result.stdout[-3000:] + result.stderr[-5000:])
                pytest.fail(failed.read_text())
    return workdir / "results" / "embedded"


def commands() -> dict:
    """Every ``sparks`` command: name -> its argparse parser."""
    import argparse

    from sparks.cli import build_parser

    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def run_sparks(*args: str) -> subprocess.CompletedProcess:
    """Run the ``sparks`` CLI in a subprocess, as a Snakemake rule would."""
    return subprocess.run([sys.executable, "-m", "sparks.cli", *args], capture_output=True, text=True)
