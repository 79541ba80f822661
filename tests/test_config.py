import pytest
import yaml
from conftest import REPO, run_sparks

from sparks.config import ConfigError, check_config, load_config


def test_default_config_is_valid_and_filled(raw_config):
    config = check_config(raw_config)
    assert config["runs"]["sft"]["task"] == "arith"  # default filled in
    assert config["runs"]["grpo"]["grpo"]["rewards"] == {"correctness": 1.0, "format": 0.2}
    assert config["base"]["shape"]["n_kv_heads"] == 2


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["runs"]["sft"].update(max_step=10), "unknown config key runs.sft.max_step"),
        (lambda c: c.update(experimnt="x"), "unknown config key experimnt"),
        (lambda c: c["runs"]["sft"].update(max_steps="many"), "config key runs.sft.max_steps = 'many'"),
        (lambda c: c["runs"]["sft"].update(max_steps=0), "runs.sft.max_steps"),
        (lambda c: c["runs"]["sft"].update(method="ppo"), "runs.sft.method = 'ppo'"),
        (lambda c: c["runs"]["sft"].update(task="gsm"), "runs.sft.task = 'gsm' in the config names no task"),
        (lambda c: c["runs"]["sft"].update(save_steps=1000), "runs.sft.save_steps = 1000"),
        (lambda c: c["base"].update(source="./no/such/model"), "base.source = './no/such/model'"),
        (lambda c: c["base"]["shape"].update(n_kv_heads=3), "base.shape"),
        (lambda c: c["runs"]["grpo"].update(batch_size=30), "runs.grpo.batch_size = 30"),
        (lambda c: c.pop("runs"), "config key runs is missing"),
    ],
)
def test_bad_config_fails_in_one_line_naming_the_key(raw_config, edit, expected):
    edit(raw_config)
    with pytest.raises(ConfigError) as info:
        check_config(raw_config)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_hub_id_and_local_folder_are_accepted(raw_config, tiny_model_dir):
    raw_config["base"]["source"] = "Qwen/Qwen2.5-Math-1.5B"
    raw_config["teacher"]["source"] = str(tiny_model_dir)
    check_config(raw_config)


def test_load_config_rejects_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_prints_one_line_config_error(tmp_path, raw_config):
    raw_config["runs"]["sft"]["learning_rte"] = 0.1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw_config))
    result = run_sparks(
        "train",
        "--config",
        str(path),
        "--run",
        "sft",
        "--base",
        "b",
        "--problems",
        "p",
        "--manifest-out",
        "m",
        "--train-log-out",
        "t",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown config key runs.sft.learning_rte" in lines[0]


def test_schema_gives_every_key_a_description_and_default():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    missing = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if "$ref" not in sub and "description" not in sub:
                missing.append(f"{path}{key}: description")
            if "$ref" not in sub and "default" not in sub and key not in node.get("required", []):
                missing.append(f"{path}{key}: default")
            walk(sub, f"{path}{key}.")

    walk(schema, "")
    for name, node in schema["$defs"].items():
        walk(node, f"$defs.{name}.")
    assert not missing
