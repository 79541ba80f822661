"""Turn a trainer's ``log_history`` into the ``train_log`` table."""

from __future__ import annotations

from typing import Any

import polars as pl

# train_log column <- the first key TRL logs it under
_COLUMNS = {
    "epoch": ("epoch",),
    "loss": ("loss",),
    "reward": ("reward",),
    "reward_std": ("reward_std",),
    "reward_correctness": ("rewards/correctness/mean",),
    "reward_format": ("rewards/think_format/mean",),
    "kl": ("kl",),
    "learning_rate": ("learning_rate",),
    "grad_norm": ("grad_norm",),
    "entropy": ("entropy",),
    "frac_reward_zero_std": ("frac_reward_zero_std",),
    "mean_completion_length": ("completions/mean_length", "completion_length"),
    "mean_token_accuracy": ("mean_token_accuracy",),
    "anchor": ("anchor",),  # sparks.train.anchor's penalty, unweighted; null without an anchor
}


def log_history_frame(history: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per logged training step; the end-of-training summary entry is dropped."""
    rows = []
    for entry in history:
        if "train_runtime" in entry or "step" not in entry:
            continue
        row = {"step": int(entry["step"])}
        for column, keys in _COLUMNS.items():
            value = next((entry[k] for k in keys if k in entry), None)
            row[column] = None if value is None else float(value)
        rows.append(row)
    schema = {"step": pl.Int64, **{c: pl.Float64 for c in _COLUMNS}}
    return pl.DataFrame(rows, schema=schema).unique("step", keep="last", maintain_order=True)
