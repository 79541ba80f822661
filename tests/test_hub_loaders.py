"""Hub loaders on local folders with the hub's files and README configs (no network)."""

import subprocess
import sys
import textwrap

import polars as pl
import pytest

from sparks.data.hub import load_hub_problems
from sparks.data.tasks import task_pairs
from sparks.model.load import load_model, load_tokenizer

GSM8K_README = """\
---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
---
"""

OPENR1_README = """\
---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
"""


@pytest.fixture
def gsm8k_dir(tmp_path):
    (tmp_path / "main").mkdir()
    (tmp_path / "README.md").write_text(GSM8K_README)
    rows = [
        {
            "question": f"Tom has {i} apples and buys {i + 2} more. How many apples does he have?",
            "answer": f"He has {i}+{i + 2}=<<{i}+{i + 2}={2 * i + 2}>>{2 * i + 2} apples.\n#### {2 * i + 2:,}",
        }
        for i in range(1, 13)
    ]
    pl.DataFrame(rows[:8]).write_parquet(tmp_path / "main" / "train-00000-of-00001.parquet")
    pl.DataFrame(rows[8:] + [{"question": "Big?", "answer": "1000+234=1234\n#### 1,234"}]).write_parquet(
        tmp_path / "main" / "test-00000-of-00001.parquet"
    )
    return tmp_path


@pytest.fixture
def openr1_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text(OPENR1_README)
    rows = [
        {
            "problem": f"Compute {i} + {i}.",
            "solution": f"Adding gives {2 * i}.",
            "answer": str(2 * i),
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
            "source": "olympiads",
            "uuid": f"id-{i}",
            "is_reasoning_complete": [True],
            "generations": [f"<think>{i}+{i}={2 * i}</think> {2 * i}"],
            "correctness_math_verify": [True],
        }
        for i in range(10)
    ]
    pl.DataFrame(rows).write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    return tmp_path


def test_gsm8k_loader_reads_hub_layout(gsm8k_dir):
    df = load_hub_problems("gsm8k", str(gsm8k_dir), None, n_train=5, n_eval=10)
    assert df.filter(pl.col("split") == "train").height == 5
    assert df.filter(pl.col("split") == "eval").height == 5  # the test split has 5 records
    first = df.row(0, named=True)
    assert first["answer"] == "4"
    assert "<<" not in first["trace"] and "####" not in first["trace"]
    assert df.filter(pl.col("question") == "Big?")["answer"].item() == "1234"


def test_openr1_loader_keeps_eval_disjoint(openr1_dir):
    df = load_hub_problems("openr1", str(openr1_dir), None, n_train=6, n_eval=3)
    train, held_out = df.filter(pl.col("split") == "train"), df.filter(pl.col("split") == "eval")
    assert train["answer"].to_list() == [str(2 * i) for i in range(6)]
    assert held_out["answer"].to_list() == [str(2 * i) for i in range(7, 10)]
    with pytest.raises(ValueError, match="fewer than n_train"):
        load_hub_problems("openr1", str(openr1_dir), None, n_train=8, n_eval=3)


def test_hub_pairs_change_one_digit_and_keep_length(gsm8k_dir, tokenizer):
    task = {"source": "gsm8k", "path": str(gsm8k_dir), "subset": None, "n_train": 8, "n_eval": 2, "n_pairs": 4}
    problems = load_hub_problems("gsm8k", task["path"], None, 8, 2)
    pairs = task_pairs(problems, task, 0, tokenizer)
    assert pairs.height == 8  # 4 per think mode
    for row in pairs.iter_rows(named=True):
        assert row["clean"] != row["corrupt"] and len(row["clean"]) == len(row["corrupt"])
        assert sum(a != b for a, b in zip(row["clean"], row["corrupt"])) == 1
        assert row["corrupt_answer"] is None


def test_missing_dataset_fails_with_a_hint(tmp_path):
    with pytest.raises(RuntimeError, match="could not load dataset"):
        load_hub_problems("gsm8k", str(tmp_path / "empty"), None, 2, 2)


def test_model_loader_reads_a_local_hf_folder(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.num_key_value_heads == 2 and model.config.num_attention_heads == 4
    assert tokenizer.padding_side == "left"


def test_model_loader_explains_an_uncached_hub_id_offline():
    code = textwrap.dedent(
        """
        from sparks.model.load import load_model
        try:
            load_model("sparks-test-org/no-such-model")
        except RuntimeError as err:
            print(err)
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "could not load model 'sparks-test-org/no-such-model'" in result.stdout
    assert "huggingface-cli download" in result.stdout
