"""A replicated run's replicates side by side (``runs.<name>.seeds``: one shared base, one trainer
seed each, so head identities are comparable): how many replicates each head emerges in and the
robust set, how much the replicates' emergent sets agree, and every count, correlation and
accuracy as a mean with a 95 % interval over replicates.

Intervals are Student t over replicates (``mean_interval``): with 3 replicates the half-width is
2.48 standard deviations, so only large, consistent effects exclude zero. Base replicates
(base.seeds: another pre-training seed each) share nothing head by head: for them the shares,
the robust set and the Jaccard indices are left empty, and counts by layer, cohort timing,
accuracy and effect sizes are what compares.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import polars as pl

from sparks.aggregate.emergence import pearson_with_interval
from sparks.aggregate.paired import crossed, difference, per_problem
from sparks.layout import REPLICATES
from sparks.stats import mean_interval

STATUSES = ("emergent", "transient", "maintained", "lost")  # the cohort statuses counted per replicate


def is_robust(share: float, robust_share: float) -> bool:
    """Emergent in at least ``robust_share`` of the replicates (aggregate.robust_share)."""
    return share >= robust_share


def head_table(
    cohorts: Mapping[str, pl.DataFrame],
    frequency: Mapping[str, pl.DataFrame],
    seeds: Mapping[str, int],
    robust_share: float,
    same_base: bool = True,
) -> pl.DataFrame:
    """One row per replicate and head of the model (the frequency tables list every head): its
    cohort status and step there (null where that replicate's circuit never held it), activation
    frequency, whether it is emergent there, and over the replicates: n_replicates, emergent_in,
    share, robust. Replicates on different bases (``same_base`` false) share no head identities:
    those three are null."""
    names = list(seeds)
    parts = []
    for name in names:
        part = (
            frequency[name]
            .select("layer", "head", "frequency")
            .join(cohorts[name].select("layer", "head", "status", "cohort_step"), on=["layer", "head"], how="full", coalesce=True)
            .with_columns(pl.lit(name).alias("replicate"), pl.lit(seeds[name], pl.Int64).alias("seed"))
        )
        parts.append(part)
    heads = pl.concat(parts, how="diagonal_relaxed").select("layer", "head").unique()
    grid = pl.DataFrame({"replicate": names, "seed": [seeds[n] for n in names]}).join(heads, how="cross")
    table = grid.join(pl.concat(parts, how="diagonal_relaxed").drop("seed"), on=["replicate", "layer", "head"], how="left")
    table = table.with_columns(
        pl.col("frequency").fill_null(0.0),
        (pl.col("status") == "emergent").fill_null(False).alias("emergent"),
    )
    n = len(names)
    table = table.with_columns(
        pl.lit(n, pl.Int64).alias("n_replicates"),
        pl.col("emergent").sum().over("layer", "head").cast(pl.Int64).alias("emergent_in"),
    ).with_columns((pl.col("emergent_in") / n).alias("share"))
    table = table.with_columns(
        pl.col("share").map_elements(lambda s: is_robust(s, robust_share), return_dtype=pl.Boolean).alias("robust")
    )
    if not same_base:
        table = table.with_columns(
            pl.lit(None, pl.Int64).alias("emergent_in"),
            pl.lit(None, pl.Float64).alias("share"),
            pl.lit(None, pl.Boolean).alias("robust"),
        )
    columns = ("replicate", "seed", "layer", "head", "status", "cohort_step", "frequency", "emergent", "n_replicates")
    return table.select(*columns, "emergent_in", "share", "robust").sort("layer", "head", "seed")


def robust_heads(heads: pl.DataFrame) -> list[tuple[int, int]]:
    """(layer, head) of the robust emergent set, sorted."""
    return sorted(heads.filter(pl.col("robust")).select("layer", "head").unique().rows())


def emergent_sets(heads: pl.DataFrame) -> dict[str, set[tuple[int, int]]]:
    """Each replicate's emergent heads, in the order of their seeds."""
    ordered = heads.select("replicate", "seed").unique().sort("seed")["replicate"].to_list()
    return {r: set(heads.filter((pl.col("replicate") == r) & pl.col("emergent")).select("layer", "head").rows()) for r in ordered}


def same_base(heads: pl.DataFrame) -> bool:
    """Whether the replicates share their base (head_table leaves the robust column null if not)."""
    return heads["robust"].null_count() < heads.height


def jaccard_table(heads: pl.DataFrame) -> pl.DataFrame:
    """Per pair of replicates: both emergent sets' sizes, the heads they share and their Jaccard
    index (null when both are empty: nothing to agree on). No rows for replicates on different
    bases, whose heads are not the same heads."""
    sets = emergent_sets(heads)
    rows = []
    for a, b in itertools.combinations(sets if same_base(heads) else {}, 2):
        union = sets[a] | sets[b]
        rows.append(
            {
                "replicate_a": a,
                "replicate_b": b,
                "n_a": len(sets[a]),
                "n_b": len(sets[b]),
                "n_shared": len(sets[a] & sets[b]),
                "jaccard": len(sets[a] & sets[b]) / len(union) if union else None,
            }
        )
    schema = {
        "replicate_a": pl.String,
        "replicate_b": pl.String,
        "n_a": pl.Int64,
        "n_b": pl.Int64,
        "n_shared": pl.Int64,
        "jaccard": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def count_table(heads: pl.DataFrame) -> pl.DataFrame:
    """Per cohort status, over all layers (``layer`` null) and per layer: the number of heads with
    it in each replicate (``counts``, in seed order) and their mean with a 95 % interval over
    replicates. Counts by layer compare across bases where head identities do not."""
    order = heads.select("replicate", "seed").unique().sort("seed")["replicate"].to_list()
    rows = []
    for status in STATUSES:
        for layer in [None, *sorted(heads["layer"].unique().to_list())]:
            part = heads.filter(pl.col("status") == status)
            if layer is not None:
                part = part.filter(pl.col("layer") == layer)
            counts = [part.filter(pl.col("replicate") == r).height for r in order]
            mean, low, high = mean_interval(counts)
            rows.append(
                {
                    "status": status,
                    "layer": layer,
                    "n_replicates": len(order),
                    "counts": counts,
                    "mean": mean,
                    "low": low,
                    "high": high,
                }
            )
    schema = {
        "status": pl.String,
        "layer": pl.Int64,
        "n_replicates": pl.Int64,
        "counts": pl.List(pl.Int64),
        "mean": pl.Float64,
        "low": pl.Float64,
        "high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def timing_table(heads: pl.DataFrame) -> pl.DataFrame:
    """Per replicate: its emergent heads' count and cohort steps (first, median, last), comparable
    across bases; null steps where nothing emerged."""
    rows = []
    for (replicate, seed), part in heads.group_by("replicate", "seed"):
        steps = part.filter(pl.col("emergent"))["cohort_step"]
        rows.append(
            {
                "replicate": replicate,
                "seed": seed,
                "n_emergent": len(steps),
                "first_cohort_step": steps.min(),
                "median_cohort_step": steps.median(),
                "last_cohort_step": steps.max(),
            }
        )
    schema = {
        "replicate": pl.String,
        "seed": pl.Int64,
        "n_emergent": pl.Int64,
        "first_cohort_step": pl.Int64,
        "median_cohort_step": pl.Float64,
        "last_cohort_step": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).sort("seed")


def _changes(table: pl.DataFrame) -> tuple[list[float], list[float]]:
    """First differences of emergent heads active and of reward between consecutive checkpoints
    that both have a reward: the fluctuations, with each series' trend over steps removed."""
    rewarded = table.filter(pl.col("reward").is_not_null()).sort("step")
    x, y = rewarded["emergent_active"].cast(pl.Float64).to_list(), rewarded["reward"].to_list()
    return [b - a for a, b in zip(x, x[1:])], [b - a for a, b in zip(y, y[1:])]


def block_bootstrap_r(series: list[tuple[list[float], list[float]]], resamples: int, seed: int, block: int = 2) -> tuple:
    """95 % percentile interval of the pooled Pearson r of ``series`` (one (x, y) per replicate):
    each resample rebuilds every replicate's series from blocks of ``block`` consecutive points
    (circular), keeping the dependence between neighbouring checkpoints that a point-wise
    resample would break. (None, None) when too few resamples have a spread."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        xs, ys = [], []
        for x, y in series:
            n = len(x)
            starts = rng.integers(0, n, -(-n // block))
            rows = [(s + i) % n for s in starts for i in range(block)][:n]
            xs += [x[r] for r in rows]
            ys += [y[r] for r in rows]
        r = pearson_with_interval(xs, ys)[0]
        if r is not None:
            values.append(r)
    if len(values) < resamples / 2:
        return None, None
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def reward_table(
    emergence: Mapping[str, pl.DataFrame], min_points: int = 5, resamples: int = 1000, seed: int = 0
) -> pl.DataFrame:
    """The study's "emergent heads track reward" as fluctuations, not trends: Pearson r of the
    checkpoint-to-checkpoint changes (first differences) of emergent heads active and of reward,
    pooled over every replicate's changes, with a block-bootstrap 95 % interval over checkpoints
    (block_bootstrap_r); each replicate's own r with their mean and t interval. Fewer than
    ``min_points`` changes in all, or no reward (SFT, distillation): no r (the claim is not testable)."""
    series = [_changes(table) for table in emergence.values()]
    xs = [v for x, _ in series for v in x]
    ys = [v for _, y in series for v in y]
    per_replicate = [pearson_with_interval(x, y)[0] for x, y in series]
    r = low = high = None
    if len(xs) >= min_points:
        r = pearson_with_interval(xs, ys)[0]
        if r is not None:
            low, high = block_bootstrap_r([s for s in series if s[0]], resamples, seed)
    mean, mean_low, mean_high = mean_interval(per_replicate)
    row = {
        "n_replicates": len(emergence),
        "n_points": len(xs),
        "pooled_r": r,
        "pooled_low": low,
        "pooled_high": high,
        "replicate_r": per_replicate,
        "mean_r": mean,
        "mean_r_low": mean_low,
        "mean_r_high": mean_high,
    }
    schema = {
        "n_replicates": pl.Int64,
        "n_points": pl.Int64,
        "pooled_r": pl.Float64,
        "pooled_low": pl.Float64,
        "pooled_high": pl.Float64,
        "replicate_r": pl.List(pl.Float64),
        "mean_r": pl.Float64,
        "mean_r_low": pl.Float64,
        "mean_r_high": pl.Float64,
    }
    return pl.DataFrame([row], schema=schema)


def accuracy_table(samples: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per checkpoint step and difficulty, from each replicate's eval samples: accuracy over
    replicates (mean, 95 % interval, min, max) and its change from each replicate's first
    checkpoint (the shared base), paired on problems, replicates and problems crossed
    (``sparks.aggregate.paired``); intervals clipped to the possible range."""
    by_step: dict[tuple[int, str], dict[str, pl.DataFrame]] = {}
    starts: dict[tuple[str, str], pl.DataFrame] = {}
    for name, table in samples.items():
        first = table["step"].min()
        for (step, difficulty), part in table.group_by("step", "difficulty"):
            values = by_step.setdefault((step, difficulty), {})[name] = per_problem(part)
            if step == first:
                starts[name, difficulty] = values
    rows = []
    for (step, difficulty), parts in by_step.items():
        level = crossed(list(parts.values()))
        change = crossed([difference(part, starts[name, difficulty]) for name, part in parts.items()])
        accuracies = [float(part["value"].mean()) for part in parts.values()]
        low, high = level.interval((0.0, 1.0))
        change_low, change_high = change.interval()
        rows.append(
            {
                "step": step,
                "difficulty": difficulty,
                "n_replicates": len(parts),
                "accuracy_mean": level.value,
                "accuracy_low": low,
                "accuracy_high": high,
                "accuracy_min": min(accuracies),
                "accuracy_max": max(accuracies),
                "change_mean": change.value,
                "change_low": change_low,
                "change_high": change_high,
            }
        )
    return pl.DataFrame(rows).sort("step", "difficulty")


INPUTS = ("cohorts", "frequency", "emergence", "eval")  # the tables read from each replicate
TABLES = REPLICATES  # the tables it writes


def by_replicate(paths: list, table: str, replicates: list[str]) -> dict[str, pl.DataFrame]:
    """Read ``table`` files of several replicates and split them by their provenance ``run``,
    checking that every replicate has rows."""
    from sparks.tables import read_table

    frame = read_table(list(paths), table)
    missing = [r for r in replicates if frame.filter(pl.col("run") == r).is_empty()]
    if missing:
        raise FileNotFoundError(f"no {table} table of replicate(s) {', '.join(missing)} among the {len(paths)} files given")
    return {r: frame.filter(pl.col("run") == r) for r in replicates}


def replicate_tables(config: dict, group: str, files: Mapping[str, list]) -> dict[str, pl.DataFrame]:
    """The replicates tables (TABLES, without provenance) of the replicated run ``group``, from its
    replicates' ``files[name]`` for each of INPUTS."""
    from sparks.aggregate import AggregateSettings

    if group not in config["claim_groups"]:
        raise KeyError(
            f"{group!r} is neither a run nor a replicated run of the config (runs: {', '.join(config['claim_groups'])})"
        )
    replicates = config["claim_groups"][group]
    tables = {name: by_replicate(files[name], name, replicates) for name in INPUTS}
    on_bases = config["runs"][replicates[0]]["base_seed"] is not None
    seeds = {r: config["runs"][r]["base_seed" if on_bases else "seed"] for r in replicates}
    settings = AggregateSettings.from_config(config)
    robust_share = settings.robust_share
    heads = head_table(tables["cohorts"], tables["frequency"], seeds, robust_share, same_base=not on_bases)
    return {
        "replicate_heads": heads,
        "replicate_jaccard": jaccard_table(heads),
        "replicate_counts": count_table(heads),
        "replicate_timing": timing_table(heads),
        "replicate_reward": reward_table(tables["emergence"], settings.min_reward_points, seed=config["seed"]),
        "replicate_accuracy": accuracy_table(tables["eval"]),
    }


def replicates_stage(config: dict, group: str, task: str, files: Mapping[str, list], out: Mapping[str, str]) -> None:
    """Write the replicates tables (``out[name]`` for each of TABLES) of the replicated run ``group``."""
    from sparks.config import run_provenance
    from sparks.tables import with_provenance, write_table

    tables = replicate_tables(config, group, files)
    provenance = run_provenance(config, group, task, "runs", "attribute", "aggregate", "evaluate")
    for name in TABLES:
        write_table(with_provenance(tables[name], **provenance), name, out[name])
