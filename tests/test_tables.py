import polars as pl
import pytest

from sparks.tables import (
    PROVENANCE,
    SCHEMAS,
    WRITTEN_BY,
    TableError,
    check_files,
    files_by_step,
    read_table,
    with_provenance,
    write_table,
)


def _problems(n=3):
    df = pl.DataFrame(
        {
            "problem_id": list(range(n)),
            "split": ["train"] * n,
            "difficulty": ["easy"] * n,
            "n_ops": [1] * n,
            "question": ["1+1="] * n,
            "trace": ["1+1=2"] * n,
            "reply": [None] * n,
            "answer": ["2"] * n,
        }
    )
    return with_provenance(df, experiment="e", run=None, step=None, task="arith", model_hash=None, config_hash="c")


def test_write_then_read_round_trips_with_provenance(tmp_path):
    path = write_table(_problems(), "problems", tmp_path / "p.parquet")
    df = read_table(path, "problems")
    assert list(df.columns[: len(PROVENANCE)]) == list(PROVENANCE)
    assert df["sparks_version"].null_count() == 0 and df["created_at"].null_count() == 0
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_missing_column_and_duplicate_key_are_refused(tmp_path):
    with pytest.raises(ValueError, match="missing columns"):
        write_table(_problems().drop("answer"), "problems", tmp_path / "p.parquet")
    dup = pl.concat([_problems(), _problems()])
    with pytest.raises(ValueError, match="primary key"):
        write_table(dup, "problems", tmp_path / "p.parquet")
    assert not (tmp_path / "p.parquet").exists()


def test_failed_write_keeps_the_previous_table(tmp_path, monkeypatch):
    path = write_table(_problems(2), "problems", tmp_path / "p.parquet")

    def boom(self, file, *a, **k):
        open(file, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_table(_problems(3), "problems", path)
    monkeypatch.undo()
    assert read_table(path, "problems").height == 2
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]


def test_unknown_table():
    with pytest.raises(KeyError, match="known tables"):
        write_table(pl.DataFrame(), "nope", "x.parquet")


def test_files_by_step_covers_the_manifest_once(tmp_path):
    paths = []
    for step in (0, 30):
        df = with_provenance(
            pl.DataFrame({"value": [1.0]}), experiment="e", run="r", step=step, task="t", model_hash="m", config_hash="c"
        )
        paths.append(tmp_path / f"{step}.parquet")
        df.write_parquet(paths[-1])
    assert files_by_step(paths[::-1], "heads", [0, 30]) == {0: str(paths[0]), 30: str(paths[1])}  # by content, not order
    with pytest.raises(ValueError, match="hold steps \\[0, 30\\], the manifest lists \\[0, 30, 60\\]"):
        files_by_step(paths, "heads", [0, 30, 60])
    with pytest.raises(ValueError, match="both hold step 0"):
        files_by_step([paths[0], paths[0]], "heads", [0])
    with pytest.raises(FileNotFoundError, match="snakemake"):
        files_by_step([tmp_path / "missing.parquet"], "heads", [0])


def test_a_damaged_or_wrong_table_fails_in_one_line_naming_file_table_and_rule(tmp_path):
    good = write_table(_problems(), "problems", tmp_path / "p.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:2000])
    for reader in (read_table, check_files):
        with pytest.raises(TableError) as err:
            reader([good, cut], "problems")
        message = str(err.value)
        assert "\n" not in message and str(cut) in message and "problems table" in message
        assert "rule prepare_data" in message and "snakemake --forcerun prepare_data" in message
    with pytest.raises(TableError, match=r"not a readable heads table \(missing columns \[.*'layer'"):
        check_files(good, "heads")  # a problems table passed for a heads table
    with pytest.raises(TableError, match="heads table"):
        read_table(good, "heads")
    with pytest.raises(FileNotFoundError, match="run the stage that writes it"):
        read_table(tmp_path / "none.parquet", "problems")


def test_every_table_names_the_rule_that_writes_it():
    from sparks.workflow import CPU_RULES, GPU_RULES

    assert set(WRITTEN_BY) == set(SCHEMAS)
    assert {rule.split()[0] for rule in WRITTEN_BY.values()} <= set(GPU_RULES + CPU_RULES)
