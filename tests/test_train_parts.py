import pytest

from sparks.train.history import log_history_frame
from sparks.train.rewards import REWARDS, correctness, think_format, weighted_rewards


def test_log_history_frame_maps_trl_keys_and_drops_summary():
    history = [
        {
            "loss": 0.5,
            "grad_norm": 1.0,
            "learning_rate": 1e-3,
            "entropy": 2.0,
            "mean_token_accuracy": 0.4,
            "epoch": 0.1,
            "step": 1,
        },
        {
            "loss": 0.1,
            "reward": 0.7,
            "reward_std": 0.2,
            "kl": 0.01,
            "frac_reward_zero_std": 0.25,
            "completions/mean_length": 9.0,
            "step": 2,
        },
        {"train_runtime": 3.0, "train_loss": 0.3, "step": 2},
    ]
    df = log_history_frame(history)
    assert df["step"].to_list() == [1, 2]
    assert df["reward"].to_list() == [None, 0.7]
    assert df["mean_completion_length"].to_list() == [None, 9.0]
    assert df["mean_token_accuracy"].to_list() == [0.4, None]


def test_rewards():
    completions = ["<think>3+4=7</think>7", "<think>3+4=8</think>8", "7", "<think>3+4=7"]
    synthetic = ["synthetic"] * 4
    assert correctness(completions, answer=["7"] * 4, source=synthetic) == [1.0, 0.0, 1.0, 0.0]
    assert think_format(completions, think=[True] * 4, source=synthetic) == [1.0, 1.0, 0.0, 0.0]
    assert think_format(["7", "7 because"], think=[False, False], source=synthetic[:2]) == [1.0, 0.0]


def test_weighted_rewards_names_valid_keys():
    funcs, weights = weighted_rewards({"correctness": 1.0, "format": 0.5})
    assert funcs == [REWARDS["correctness"], REWARDS["format"]] and weights == [1.0, 0.5]
    with pytest.raises(KeyError, match="valid rewards: correctness, format"):
        weighted_rewards({"length": 1.0})
