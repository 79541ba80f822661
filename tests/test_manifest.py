"""The run manifest: written and read through one module, checked against its schema on read."""

from __future__ import annotations

import json

import pytest

from sparks.manifest import read_manifest, write_manifest


def test_round_trip_and_checkpoint_folders(tmp_path):
    elsewhere = tmp_path / "other" / "final"
    path = write_manifest(
        tmp_path / "run" / "checkpoints.json", "sft", "sft", {0: "checkpoint-0", 10: str(elsewhere)}, {0: "a", 10: "b"}
    )
    manifest = read_manifest(path)
    assert manifest.steps == (0, 10) and manifest.run == "sft" and manifest.method == "sft"
    assert manifest.checkpoint(0) == tmp_path / "run" / "checkpoint-0"  # relative to the manifest's folder
    assert manifest.checkpoint(10) == elsewhere  # an absolute folder stays itself
    assert manifest.model_hash(10) == "b"
    with pytest.raises(KeyError, match=r"step 5 is not in .* \(steps: 0, 10\)"):
        manifest.checkpoint(5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"run": "sft", "steps": [0], "checkpoints": {"0": "c"}, "model_hashes": {"0": "h"}}, "'method' is a required"),
        (
            {"run": "sft", "method": "sft", "steps": [0, 5], "checkpoints": {"0": "c"}, "model_hashes": {"0": "h"}},
            "checkpoints must list",
        ),
        (
            {
                "run": "sft",
                "method": "sft",
                "steps": [5, 0],
                "checkpoints": {"0": "c", "5": "d"},
                "model_hashes": {"0": "h", "5": "i"},
            },
            "ascending",
        ),
        (
            {"run": "sft", "method": "sft", "steps": [0], "checkpoints": {"0": "c"}, "model_hashes": {"0": "h"}, "x": 1},
            "Additional",
        ),
    ],
)
def test_a_bad_manifest_is_refused_on_read(tmp_path, data, message):
    path = tmp_path / "checkpoints.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_manifest(path)


def test_a_missing_manifest_names_its_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        read_manifest(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a valid sparks manifest"):
        read_manifest(tmp_path / "broken.json")


def test_registry_implementations_must_match_the_names():
    from sparks.registry import implement

    assert list(implement(("a", "b"), {"b": 2, "a": 1})) == ["a", "b"]
    with pytest.raises(RuntimeError, match="do not match"):
        implement(("a", "b"), {"a": 1})


def test_check_config_checks_registry_names_before_any_job(raw_config):
    from sparks.config import ConfigError, check_config

    raw_config["runs"]["grpo"]["grpo"]["rewards"] = {"correctness": 1.0, "brevity": 0.1}
    with pytest.raises(ConfigError, match="runs.grpo.grpo.rewards.brevity = 'brevity' is not one of correctness, format"):
        check_config(raw_config)
    raw_config["runs"]["grpo"]["grpo"]["rewards"] = {"correctness": 1.0}
    raw_config["evaluate"] = {"ablation": "noise"}
    with pytest.raises(ConfigError, match="evaluate.ablation = 'noise' is not one of mean, zero"):
        check_config(raw_config)


def test_section_defaults_come_from_the_schema():
    from sparks.config import ConfigError, schema
    from sparks.model.tiny import TinyShape

    shape = TinyShape.defaults()
    assert shape.__dict__ == {k: v["default"] for k, v in schema()["$defs"]["shape"]["properties"].items()}
    with pytest.raises(ConfigError, match="shape.n_heads"):
        TinyShape.defaults(n_heads=0)
