"""Hub loaders on local folders with the hub's files and README configs (no network)."""

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import polars as pl
import pytest

from sparks.config import check_config
from sparks.data.answers import LETTERS, is_correct_choice
from sparks.data.hub import CHOICE_INSTRUCTION, _gpqa_row, choice_order, load_hub_problems
from sparks.data.prompting import Prompter, PromptSettings
from sparks.data.tasks import task_pairs
from sparks.model.load import load_model, load_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"

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


def unique_dir(tmp_path):
    """A folder no earlier session used: datasets caches a local folder by its path and file
    times, and pytest's numbered temp folders come back, so a recycled path could load stale rows."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    return folder


@pytest.fixture
def gsm8k_dir(tmp_path):
    tmp_path = unique_dir(tmp_path)
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
    tmp_path = unique_dir(tmp_path)
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
            "generations": [
                f"<think>{i}+{i}={2 * i + 1}</think> {2 * i + 1}",
                f"<think>{i}+{i}={2 * i}</think> $\\boxed{{{2 * i}}}$",
            ],
            "correctness_math_verify": [False, True],
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
    first = train.row(1, named=True)  # the R1 generation math-verify judged correct, not the human solution
    assert first["trace"] == "1+1=2" and first["reply"] == "$\\boxed{2}$"
    assert held_out["answer"].to_list() == [str(2 * i) for i in range(7, 10)]
    with pytest.raises(ValueError, match="fewer than n_train"):
        load_hub_problems("openr1", str(openr1_dir), None, n_train=8, n_eval=3)


def test_hub_pairs_change_one_digit_and_keep_length(gsm8k_dir, tokenizer):
    task = {
        "source": "gsm8k",
        "path": str(gsm8k_dir),
        "subset": None,
        "n_train": 8,
        "n_eval": 2,
        "n_pairs": 4,
        "max_pair_tokens": 1024,
    }
    problems = load_hub_problems("gsm8k", task["path"], None, 8, 2)
    pairs = task_pairs(problems, task, 0, tokenizer, Prompter(tokenizer, PromptSettings.defaults()))
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


def hub_cache(
    cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "e53f048856ff4f594e959d75785d2c2d37b678ee"
) -> None:
    """A dataset laid out as `huggingface-cli download --repo-type dataset {repo_id}` leaves it:
    blobs named by hash, a snapshot folder of symlinks, refs/main naming the snapshot."""
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for relative, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def hub_cache_with_gsm8k(cache: Path) -> None:
    """openai/gsm8k in the hub cache (:func:`hub_cache`). The rows are real GSM8K rows, in the hub's
    Parquet files and README configs."""
    files = {"README.md": GSM8K_README.encode()}
    for split, name in (("train", "train.jsonl"), ("test", "test.jsonl")):
        frame = pl.read_ndjson(FIXTURES / "gsm8k" / name)
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        files[f"main/{split}-00000-of-00001.parquet"] = buffer.getvalue()
    hub_cache(cache, "openai/gsm8k", files)


def test_a_hub_id_loads_offline_from_the_local_hub_cache(tmp_path):
    """datasets alone refuses `openai/gsm8k` offline even when it is cached; sparks resolves the id
    to the cached snapshot first (in a fresh process: the hub cache path is read at import)."""
    hub_cache_with_gsm8k(tmp_path / "hub")
    code = textwrap.dedent(
        """
        from sparks.data.hub import load_hub_problems
        df = load_hub_problems("gsm8k", None, None, n_train=5, n_eval=3)
        print(df.height, df["answer"][0], df["split"].to_list().count("eval"))
        """
    )
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["8", "72", "3"]  # Natalia's clips: the first GSM8K training answer
    uncached = subprocess.run(
        [sys.executable, "-c", "from sparks.data.hub import load_hub_problems; load_hub_problems('openr1', None, None, 1, 1)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert uncached.returncode != 0
    assert "not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE=1)" in uncached.stderr
    assert "huggingface-cli download --repo-type dataset open-r1/OpenR1-Math-220k" in uncached.stderr


@pytest.mark.parametrize(("source", "n", "first"), [("aime24", 30, "204"), ("aime25", 30, "807"), ("amc23", 40, "27")])
def test_evaluation_sets_load_from_their_jsonl_with_every_answer_readable(tmp_path, source, n, first):
    folder = unique_dir(tmp_path)
    shutil.copy(FIXTURES / source / "test.jsonl", folder / "test.jsonl")
    df = load_hub_problems(source, str(folder), None, n_train=1, n_eval=100)
    assert df["split"].unique().to_list() == ["eval"]  # an evaluation set has no training rows
    assert df.height == n and df["answer"][0] == first  # AMC's 27.0 is read as 27
    assert all(df["question"].str.len_chars() > 20)


def test_records_without_a_usable_answer_are_skipped_and_counted(tmp_path, caplog):
    folder = unique_dir(tmp_path)
    rows = [
        {"problem": "What is $1+1$?", "answer": "2"},
        {"problem": "No answer here.", "answer": None},
        {"problem": "Broken reference.", "answer": "\\frac{"},
        {"problem": "What is $\\sqrt{4}$?", "answer": "\\sqrt{4}"},
    ]
    pl.DataFrame(rows).write_ndjson(folder / "test.jsonl")
    df = load_hub_problems("math500", str(folder), None, n_train=1, n_eval=10)
    assert df["answer"].to_list() == ["2", "\\sqrt{4}"]
    assert "skipped 2 of 4 records" in caplog.text


# --- GPQA Diamond and AIME 2025: hand-made rows in the hub datasets' own files (see their READMEs)


def fixture_copy(tmp_path: Path, name: str) -> Path:
    folder = unique_dir(tmp_path)
    for file in (FIXTURES / name).iterdir():
        shutil.copy(file, folder / file.name)
    return folder


def gpqa_records() -> list[dict]:
    with (FIXTURES / "gpqa" / "gpqa_diamond.csv").open(newline="") as f:
        return list(csv.DictReader(f))


GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def lettered_options(question: str) -> dict[str, str]:
    """The options a question shows, by letter: its last four lines, "A) ..." to "D) ..."."""
    lines = question.rsplit("\n", 4)[1:]
    assert [line[:3] for line in lines] == [f"{letter}) " for letter in LETTERS]
    return {line[0]: line[3:] for line in lines}


@pytest.mark.parametrize(("source", "repo_id", "n"), [("gpqa", "Idavidrein/gpqa", 8), ("aime25", "math-ai/aime25", 30)])
def test_new_evaluation_sets_load_by_hub_id_as_from_their_folder(tmp_path, monkeypatch, source, repo_id, n):
    """The hub id goes through the local hub cache to its snapshot, then the same loader as a folder
    (README configs: gpqa's subset gpqa_diamond is a CSV read as a train split, aime25 a test JSONL)."""
    import huggingface_hub.constants

    by_folder = load_hub_problems(source, str(fixture_copy(tmp_path, source)), None, n_train=1, n_eval=500)
    files = {file.name: file.read_bytes() for file in (FIXTURES / source).iterdir()}
    hub_cache(tmp_path / "hub", repo_id, files, commit=uuid.uuid4().hex + "0" * 8)  # a snapshot no session used
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    by_id = load_hub_problems(source, None, None, n_train=1, n_eval=500)
    assert by_id.equals(by_folder)
    assert by_id.height == n and by_id["split"].unique().to_list() == ["eval"]  # evaluation sets: no training rows


def test_gpqa_letters_each_questions_options_in_an_order_its_seed_and_record_fix(tmp_path):
    folder = str(fixture_copy(tmp_path, "gpqa"))
    df = load_hub_problems("gpqa", folder, None, n_train=1, n_eval=500, seed=0)
    records = gpqa_records()
    assert df.height == len(records) == 8
    orders = set()
    for row, record in zip(df.iter_rows(named=True), records):
        options = lettered_options(row["question"])
        written = [record[column].strip() for column in GPQA_OPTIONS]
        assert options[row["answer"]] == record["Correct Answer"].strip()  # the answer is the correct option's letter
        order = choice_order(0, record["Record ID"])
        assert [options[letter] for letter in LETTERS] == [written[i] for i in order]
        assert row["question"].startswith(CHOICE_INSTRUCTION) and record["Question"].strip() in row["question"]
        assert row["trace"] == record["Explanation"].strip() and row["reply"] is None
        assert is_correct_choice(f"<think>...</think>The final answer is $\\boxed{{{row['answer']}}}$.", row["answer"])
        orders.add(order)
    assert len(orders) > 1 and df["answer"].n_unique() > 1  # rows are shuffled differently
    assert df["answer"].to_list() == ["A", "D", "B", "D", "A", "A", "C", "B"]  # pinned: a change to the shuffle shows
    assert load_hub_problems("gpqa", folder, None, 1, 500, seed=0).equals(df)  # reproducible
    other = load_hub_problems("gpqa", folder, None, 1, 500, seed=1)
    assert other["question"].to_list() != df["question"].to_list()  # the experiment's seed changes the orders


def test_gpqa_skips_records_without_four_distinct_options_and_reads_numeric_cells(tmp_path, caplog):
    folder = unique_dir(tmp_path)
    shutil.copy(FIXTURES / "gpqa" / "README.md", folder / "README.md")
    records = gpqa_records()
    records[0]["Incorrect Answer 3"] = ""  # a missing option
    records[1]["Incorrect Answer 2"] = records[1]["Correct Answer"]  # two right letters
    records[2]["Incorrect Answer 3"] = "None"  # text, not pandas' missing value
    with (folder / "gpqa_diamond.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    df = load_hub_problems("gpqa", str(folder), None, n_train=1, n_eval=500)
    assert df.height == 6 and "skipped 2 of 8 records" in caplog.text
    assert "None" in lettered_options(df["question"][0]).values()
    numeric = dict(zip(GPQA_OPTIONS, (3.0, 1.0, 2.5, 11)))  # what pandas makes of an all-number column
    row = _gpqa_row({"Question": "pH?", **numeric, "Record ID": "r", "Explanation": float("nan")}, False, 0)
    assert lettered_options(row["question"])[row["answer"]] == "3"
    assert sorted(lettered_options(row["question"]).values()) == ["1", "11", "2.5", "3"] and row["trace"] == ""


def test_gpqa_pairs_end_where_the_letter_is_written(tmp_path, tokenizer):
    folder = str(fixture_copy(tmp_path, "gpqa"))
    task = {"source": "gpqa", "path": folder, "subset": None, "n_train": 1, "n_eval": 8, "n_pairs": 3, "max_pair_tokens": 4096}
    problems = load_hub_problems("gpqa", folder, None, 1, 8)
    pairs = task_pairs(problems, task, 0, tokenizer, Prompter(tokenizer, PromptSettings.defaults()))
    assert pairs.height == 6 and set(pairs["clean_answer"]) <= set(LETTERS)
    assert all(text.endswith("\\boxed{") for text in pairs["clean"])


@pytest.mark.parametrize("source", ["gpqa", "aime25"])
def test_config_accepts_the_new_evaluation_sets(raw_config, source):
    raw_config["tasks"]["bench"] = {"source": source, "n_train": 1, "n_eval": 198, "n_pairs": 4}
    assert check_config(raw_config)["tasks"]["bench"]["source"] == source
