import json

import pytest

from sparks.config import check_config
from sparks.model.store import resolve
from sparks.prepare import prepare_model
from sparks.tables import read_table


def test_local_model_is_recorded_by_reference_with_its_accuracy(raw_config, tiny_model_dir, tmp_path):
    raw_config["base"]["source"] = str(tiny_model_dir)
    out = prepare_model(check_config(raw_config), "base", tmp_path / "base")
    assert resolve(out) == (str(tiny_model_dir), None)
    assert json.loads((out / "sparks_model.json").read_text())["role"] == "base"
    accuracy = read_table(out / "accuracy.parquet", "accuracy")
    assert accuracy.height == 10 and accuracy["n"].to_list() == [100] * 10


def test_failed_prepare_leaves_nothing_behind(raw_config, tiny_model_dir, tmp_path, monkeypatch):
    import sparks.model.load

    def broken(*args, **kwargs):
        raise RuntimeError("could not load model")

    monkeypatch.setattr(sparks.model.load, "load_model", broken)
    raw_config["base"]["source"] = str(tiny_model_dir)
    with pytest.raises(RuntimeError, match="could not load model"):
        prepare_model(check_config(raw_config), "base", tmp_path / "base")
    assert list(tmp_path.iterdir()) == []
