"""Circuits, cohorts and activation frequency from per-checkpoint edge tables (polars only).

A checkpoint's circuit is its top-N edges by |score|. A head is *active* when a circuit edge
touches it: an edge out of it or into its query. With grouped-query attention the key and value
inputs belong to the KV head and are read by every head of its group, so an edge into them cannot
be assigned to one head; by default it activates none (``kv_edges_activate_group=False``), else
it activates the whole group (then one k/v edge makes n_heads / n_kv_heads heads active).
Relative to the first checkpoint (the base model, step 0):
- emergent: not active in the base, called by the emergence test (sparks.aggregate.bootstrap) at
  some later step, and active in the final checkpoint; its cohort is the first called step;
- transient: called, but gone from the final checkpoint's circuit;
- maintained: active in the base and in the final checkpoint;  lost: active in the base only.
"""

from __future__ import annotations

import polars as pl

_HEAD = r"^a(\d+)\.h(\d+)$"
_KV = r"^a(\d+)\.kv(\d+)$"


def circuit_edges(edges: pl.LazyFrame, top_n: int | pl.DataFrame) -> pl.LazyFrame:
    """The circuit edges of every checkpoint: rank <= top_n (an int, or a frame of step, top_n)."""
    if isinstance(top_n, int):
        return edges.filter(pl.col("rank") <= top_n)
    return edges.join(top_n.lazy(), on="step").filter(pl.col("rank") <= pl.col("top_n")).drop("top_n")


def prune_isolated(edges: pl.DataFrame, heads: pl.DataFrame) -> pl.DataFrame:
    """Each checkpoint's circuit without its isolated nodes' edges, as the study prunes its top-N
    circuits: drop, until none is left to drop, every edge whose source (a head or MLP) receives no
    circuit edge, or whose reader's node sends none. The input and the logits need neither; a k or
    v reader belongs to every head of its KV group (it receives for each, and sends when one does).

    ``edges`` holds the circuit edges (step, src, dst, dst_input, ...); ``heads`` the model's heads
    (layer, head, kv_head)."""
    groups = kv_groups(heads)
    kept = [
        group[connected_edges(group.select("src", "dst", "dst_input").rows(), groups)]
        for _, group in edges.group_by("step", maintain_order=True)
    ]
    return pl.concat(kept) if kept else edges


def kv_groups(heads: pl.DataFrame) -> dict[str, list[str]]:
    """KV head (``a{l}.kv{g}``) -> the query heads of its group, from the model's heads (layer, head, kv_head)."""
    groups: dict[str, list[str]] = {}
    for layer, head, kv in heads.select("layer", "head", "kv_head").rows():
        groups.setdefault(f"a{layer}.kv{kv}", []).append(f"a{layer}.h{head}")
    return groups


def connected_edges(rows: list[tuple[str, str, str]], groups: dict[str, list[str]]) -> list[int]:
    """Indices of the (src, dst, dst_input) ``rows`` of one circuit that prune_isolated keeps."""
    alive = list(range(len(rows)))
    while True:
        sends = {rows[i][0] for i in alive}
        receives = {node for i in alive for node in groups.get(rows[i][1], [rows[i][1]])}

        def connected(src: str, dst: str, kind: str) -> bool:
            fed = src == "input" or src in receives
            return fed and (kind == "logits" or any(node in sends for node in groups.get(dst, [dst])))

        keep = [i for i in alive if connected(*rows[i])]
        if len(keep) == len(alive):
            return alive
        alive = keep


def touched_heads(edges: pl.LazyFrame | pl.DataFrame, heads: pl.DataFrame, kv_edges_activate_group: bool = False) -> pl.LazyFrame:
    """(step, layer, head) for every head each circuit edge touches, one row per (edge, head).

    ``heads`` lists the model's heads: layer, head, kv_head.
    """
    edges = edges.lazy()
    out = edges.select(
        "step",
        pl.col("src").str.extract(_HEAD, 1).cast(pl.Int64).alias("layer"),
        pl.col("src").str.extract(_HEAD, 2).cast(pl.Int64).alias("head"),
    )
    query = edges.filter(pl.col("dst_input") == "q").select(
        "step",
        pl.col("dst").str.extract(_HEAD, 1).cast(pl.Int64).alias("layer"),
        pl.col("dst").str.extract(_HEAD, 2).cast(pl.Int64).alias("head"),
    )
    key_value = (
        edges.filter(pl.col("dst_input").is_in(["k", "v"]))
        .select(
            "step",
            pl.col("dst").str.extract(_KV, 1).cast(pl.Int64).alias("layer"),
            pl.col("dst").str.extract(_KV, 2).cast(pl.Int64).alias("kv_head"),
        )
        .join(heads.lazy().select("layer", "head", "kv_head"), on=["layer", "kv_head"])
        .select("step", "layer", "head")
    )
    return pl.concat([out, query, key_value] if kv_edges_activate_group else [out, query]).drop_nulls()


def circuit_table(
    edges: pl.LazyFrame, heads: pl.DataFrame, steps: list[int], kv_edges_activate_group: bool = False
) -> pl.DataFrame:
    """One row per (step, head): in_circuit and n_edges (circuit edges touching the head)."""
    counts = (
        touched_heads(edges, heads, kv_edges_activate_group)
        .group_by("step", "layer", "head")
        .agg(pl.len().cast(pl.Int64).alias("n_edges"))
    )
    grid = pl.DataFrame({"step": steps}).join(heads.select("layer", "head").unique(), how="cross")
    return (
        grid.lazy()
        .join(counts, on=["step", "layer", "head"], how="left")
        .with_columns(
            pl.format("a{}.h{}", "layer", "head").alias("node"),
            pl.col("n_edges").fill_null(0),
        )
        .with_columns((pl.col("n_edges") > 0).alias("in_circuit"))
        .select("step", "node", "layer", "head", "in_circuit", "n_edges")
        .sort("step", "layer", "head")
        .collect()
    )


def cohort_table(circuit: pl.DataFrame, stable: pl.DataFrame | None = None) -> pl.DataFrame:
    """Cohorts of the heads that are ever active. ``stable`` (step, layer, head, stable) gates
    emergence: a head is called only at a step where it is active and stable (the test's call)."""
    steps = sorted(circuit["step"].unique().to_list())
    base, final = steps[0], steps[-1]
    df = circuit if stable is None else circuit.join(stable, on=["step", "layer", "head"], how="left")
    if "stable" not in df.columns:
        df = df.with_columns(pl.lit(True).alias("stable"))
    df = df.with_columns(pl.col("stable").fill_null(False))
    in_base = df.filter((pl.col("step") == base) & pl.col("in_circuit")).select("layer", "head").with_columns(base=pl.lit(True))
    df = df.join(in_base, on=["layer", "head"], how="left").with_columns(pl.col("base").fill_null(False))
    emerging = pl.col("in_circuit") & pl.col("stable") & ~pl.col("base") & (pl.col("step") > base)
    summary = df.group_by("layer", "head").agg(
        pl.col("step").filter(emerging).min().alias("cohort_step"),
        pl.col("step").filter(pl.col("in_circuit")).min().alias("first_step"),
        pl.col("step").filter(pl.col("in_circuit")).max().alias("last_step"),
        pl.col("in_circuit").sum().cast(pl.Int64).alias("active_steps"),
        pl.col("base").first(),
        (pl.col("in_circuit") & (pl.col("step") == final)).any().alias("in_final"),
    )
    status = (
        pl.when(pl.col("base") & pl.col("in_final"))
        .then(pl.lit("maintained"))
        .when(pl.col("base"))
        .then(pl.lit("lost"))
        .when(pl.col("cohort_step").is_not_null() & pl.col("in_final"))
        .then(pl.lit("emergent"))
        .when(pl.col("cohort_step").is_not_null())
        .then(pl.lit("transient"))
    )
    return (
        summary.with_columns(status.alias("status"))
        .filter(pl.col("status").is_not_null())
        .select("layer", "head", "cohort_step", "first_step", "last_step", "active_steps", "status")
        .sort("layer", "head")
    )


COHORT_STATUSES = ("emergent", "transient", "maintained", "lost")  # the cohorts table's status
CALLED = ("emergent", "transient")  # the statuses of heads the emergence test called
CHECKPOINT_STATUSES = ("maintained", "emergent", "transient", "new", "lost", "inactive")
"""A head's status at one checkpoint (the circuit table's ``status``); every head of the
checkpoint's circuit is exactly one of the first four."""


def with_checkpoint_status(circuit: pl.DataFrame, cohorts: pl.DataFrame) -> pl.DataFrame:
    """``circuit`` with each head's status at each checkpoint (CHECKPOINT_STATUSES):

    - ``maintained``: in the base circuit (the first checkpoint's) and active here;
    - ``emergent``: not in the base circuit, active here, at or after its cohort step (the first
      checkpoint at which the emergence test called it), and still active at the final checkpoint;
    - ``transient``: the same, for a head gone from the final checkpoint's circuit;
    - ``new``: not in the base circuit, active here, but not (yet) called: before its cohort step,
      or never called;
    - ``lost``: in the base circuit and not active here;
    - ``inactive``: neither in the base circuit nor active here.
    """
    base = circuit["step"].min()
    in_base = circuit.filter((pl.col("step") == base) & pl.col("in_circuit")).select("layer", "head", base=pl.lit(True))
    cohort = cohorts.filter(pl.col("status").is_in(CALLED)).select(
        "layer", "head", "cohort_step", pl.col("status").alias("called")
    )
    df = circuit.join(in_base, on=["layer", "head"], how="left").join(cohort, on=["layer", "head"], how="left")
    status = (
        pl.when(pl.col("base").fill_null(False))
        .then(pl.when(pl.col("in_circuit")).then(pl.lit("maintained")).otherwise(pl.lit("lost")))
        .when(~pl.col("in_circuit"))
        .then(pl.lit("inactive"))
        .when(pl.col("step") >= pl.col("cohort_step"))
        .then(pl.col("called"))
        .otherwise(pl.lit("new"))
    )
    return df.with_columns(status.alias("status")).select(*circuit.columns, "status")


def frequency_table(circuit: pl.DataFrame) -> pl.DataFrame:
    """Per head: the fraction of checkpoints in which it is active, and whether it is in the base / final circuit."""
    steps = sorted(circuit["step"].unique().to_list())
    return (
        circuit.group_by("layer", "head")
        .agg(
            pl.col("in_circuit").mean().alias("frequency"),
            pl.col("in_circuit").filter(pl.col("step") == steps[0]).any().alias("active_in_base"),
            pl.col("in_circuit").filter(pl.col("step") == steps[-1]).any().alias("active_in_final"),
        )
        .sort("layer", "head")
    )


def jaccard_table(circuit_edges: pl.DataFrame, circuit: pl.DataFrame) -> pl.DataFrame:
    """Jaccard similarity of each checkpoint's circuit with the previous one, by edges and by active heads."""
    steps = sorted(circuit["step"].unique().to_list())
    edge_sets = {s: set(g.select("src", "dst", "dst_input").rows()) for (s,), g in circuit_edges.group_by("step")}
    head_sets = {s: set(g.select("layer", "head").rows()) for (s,), g in circuit.filter(pl.col("in_circuit")).group_by("step")}

    def jaccard(a: set, b: set) -> float | None:
        return len(a & b) / len(a | b) if a | b else None

    rows = [
        {
            "step": cur,
            "previous_step": prev,
            "jaccard_edges": jaccard(edge_sets.get(cur, set()), edge_sets.get(prev, set())),
            "jaccard_heads": jaccard(head_sets.get(cur, set()), head_sets.get(prev, set())),
        }
        for prev, cur in zip(steps, steps[1:])
    ]
    return pl.DataFrame(
        rows, schema={"step": pl.Int64, "previous_step": pl.Int64, "jaccard_edges": pl.Float64, "jaccard_heads": pl.Float64}
    )
