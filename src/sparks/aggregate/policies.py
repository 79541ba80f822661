"""A head-policy run against its plain run (``runs.<name>.heads`` with ``compare_to``): what
protecting (freezing, training only, anchoring) a head set did to accuracy and to the failure
anatomy, and which heads emerged on each side.

Each policy replicate pairs with the plain replicate of the same seed (``sft-s1`` for
``sftfreeze-s1``: :func:`sparks.config.paired_run`), and each pair is compared at each
side's final checkpoint (its eval samples, the largest step), problem by problem: the estimates
are paired on problems and crossed over replicates as every accuracy of the claims
(``sparks.aggregate.paired``). Rows of the ``policy_comparison`` table:

- ``accuracy``: per difficulty and over all of them, accuracy of the policy minus the plain run;
- ``calculation_error``, ``no_trace``: per difficulty, the share of all samples in that failure
  category (a problem's value: the share of its samples in it), policy minus plain;
- ``heads``: per side, the heads with cohort status emergent and in how many replicates
  (``detail``; ``value``: emergent heads per replicate, mean);
- ``hypothesis``: the issue's hypotheses, each stated so that a positive value supports it, with
  the claims' four verdicts (``sparks.aggregate.claims``: Holm over this group's H1-H3, one-sided
  at 2.5 % in each direction):

  - H1 "the policy lowers the calculation-error share on the hardest difficulty": plain minus
    policy share on the task's last (hardest) difficulty;
  - H2 "the policy does not lower accuracy on the middle difficulty": policy minus plain accuracy
    on ``difficulties[len // 2]`` (tasks with at least three difficulties; not testable here
    with fewer: there is no middle tier apart from the easiest and the hardest). "Does not
    lower" is a non-inferiority statement, which the four verdicts cannot grant: here
    ``contradicted`` means the policy significantly lowers it, ``reproduced`` that it
    significantly *raises* it, and ``inconclusive`` (an interval that holds 0) that the data
    cannot exclude a loss as large as the interval's lower end, which ``detail`` reports;
  - H3 "the policy raises hard accuracy": policy minus plain accuracy on the hardest difficulty;
  - combined, the issue's "protecting calculation heads lowers calculation errors on hard
    problems without losing the medium-tier gain", by a rule fixed here before any data:
    ``contradicted`` if H1 or H2 is contradicted; else ``not testable here`` if H1 or H2 is;
    else ``reproduced`` if H1 is reproduced (and H2, not contradicted); else ``inconclusive``.
    It has no p-value of its own (H3 is reported beside it, not part of it).

The change rows' ``p_value`` is two-sided (whether the policy changed it at all); the hypotheses'
is one-sided in their direction, as the claims'. Verdicts read the Holm-adjusted p, so a raw
interval may exclude 0 with the verdict still inconclusive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from sparks.aggregate.claims import CONTRADICTED, INCONCLUSIVE, REPRODUCED, UNTESTABLE, _estimated, _untestable, adjust
from sparks.aggregate.claims import SCHEMA as CLAIM_SCHEMA
from sparks.aggregate.paired import crossed, difference, per_problem

log = logging.getLogger(__name__)
SHARES = {"calculation_error": "calculation-error share", "no_trace": "no-trace share"}
OVERALL = "all"  # the accuracy row over every difficulty
SCHEMA = {  # the claims' columns (a claim is a row's name here), after the policy's own
    "policy": pl.String,
    "plain": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "difficulty": pl.String,
    **{column: dtype for column, dtype in CLAIM_SCHEMA.items() if column != "claim"},
}
PAIRED = "paired on problems, replicates paired by seed and crossed"


def _final(table: pl.DataFrame) -> pl.DataFrame:
    """A replicate's eval samples of its final checkpoint (the largest step)."""
    evals = table.filter(pl.col("origin") == "eval")
    if evals.is_empty():
        return evals
    return evals.filter(pl.col("step") == evals["step"].max())


def _runs(table: pl.DataFrame) -> list[str]:
    return table["run"].unique().sort().to_list() if "run" in table.columns else []


def _check(
    policy: Sequence[pl.DataFrame],
    plain: Sequence[pl.DataFrame],
    policy_cohorts: Sequence[pl.DataFrame],
    plain_cohorts: Sequence[pl.DataFrame],
) -> None:
    lengths = {"policy": len(policy), "plain": len(plain), "policy cohorts": len(policy_cohorts)}
    lengths["plain cohorts"] = len(plain_cohorts)
    if len(set(lengths.values())) != 1:
        raise ValueError(
            "the policy comparison pairs replicates by position: give as many tables of each kind, in the same "
            f"replicate order (got {', '.join(f'{n} {k}' for k, n in lengths.items())})"
        )
    if not policy:
        raise ValueError("the policy comparison needs at least one replicate pair")
    for i, (failures, cohorts, side) in enumerate(
        [(f, c, "policy") for f, c in zip(policy, policy_cohorts)] + [(f, c, "plain") for f, c in zip(plain, plain_cohorts)]
    ):
        a, b = _runs(failures), _runs(cohorts)
        if len(a) > 1 or len(b) > 1 or (a and b and a != b):
            raise ValueError(
                f"{side} replicate {i % len(policy) + 1}: its failures table is of run(s) {a} and its cohorts table of "
                f"{b}; pass one run's tables at each position"
            )
    for i, (p, q) in enumerate(zip(policy, plain)):
        if _runs(p) and _runs(p) == _runs(q):
            raise ValueError(f"replicate {i + 1}: the policy and the plain tables are both of run {_runs(p)[0]}")


def _indicator(table: pl.DataFrame, category: str) -> pl.DataFrame:
    return table.with_columns((pl.col("category") == category).alias("in_category"))


def _pairs(
    policy: Sequence[pl.DataFrame], plain: Sequence[pl.DataFrame], difficulty: str | None, column: str
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """Per replicate pair, the per-problem values (policy, plain) of ``column`` on ``difficulty``
    (None: every difficulty)."""
    out = []
    for a, b in zip(policy, plain):
        if difficulty is not None:
            a, b = (t.filter(pl.col("difficulty") == difficulty) for t in (a, b))
        out.append((per_problem(a, column), per_problem(b, column)))
    return out


def _means(values: list[pl.DataFrame]) -> str:
    means = [float(v["value"].mean()) for v in values if not v.is_empty()]
    if not means:
        return "none evaluated"
    text = f"{sum(means) / len(means):.3f}"
    return text + (f" (replicates {min(means):.3f}-{max(means):.3f})" if len(means) > 1 else "")


def _change(name: str, kind: str, difficulty: str, statement: str, statistic: str, pairs: list, detail: str = "") -> dict:
    """A change row, policy minus plain; its p two-sided."""
    estimate = crossed([difference(a, b) for a, b in pairs])
    row = _estimated(name, statement, statistic, estimate, "")
    p = row["p_value"]
    row["p_value"] = None if p is None else min(1.0, 2 * min(p, 1 - p))
    per = [difference(a, b)["value"].mean() for a, b in pairs]
    parts = [f"policy {_means([a for a, _ in pairs])}, plain {_means([b for _, b in pairs])}"]
    parts.append("per replicate " + ", ".join("-" if v is None else f"{v:+.3f}" for v in per))
    row["detail"] = "; ".join(parts + ([detail] if detail else []))
    return {**row, "kind": kind, "difficulty": difficulty}


def emergent_text(cohorts: Sequence[pl.DataFrame]) -> tuple[str, float]:
    """The heads emergent in each side's replicates: ``a1.h1 (2/3), a3.h6 (1/3)`` (layer, head
    order; ``none``), and the mean number of emergent heads per replicate."""
    counts: dict[tuple[int, int], int] = {}
    per_replicate = []
    for table in cohorts:
        heads = set(table.filter(pl.col("status") == "emergent").select("layer", "head").iter_rows())
        per_replicate.append(len(heads))
        for head in heads:
            counts[head] = counts.get(head, 0) + 1
    n = len(cohorts)
    text = ", ".join(f"a{layer}.h{head} ({k}/{n})" for (layer, head), k in sorted(counts.items())) or "none"
    return text, sum(per_replicate) / n


def _paired_claim(
    claim: str, statement: str, statistic: str, pairs: list, tier: str, sign: int = 1, loss_note: bool = False
) -> dict:
    """A hypothesis row from (policy, plain) per-problem tables paired by replicate: the policy
    minus the plain run (``sign`` -1: plain minus policy); with ``loss_note`` the detail says what
    loss the interval still allows (H2)."""
    estimate = crossed([difference(a, b) if sign > 0 else difference(b, a) for a, b in pairs])
    if estimate.value is None:
        return _untestable(claim, statement, statistic, f"no {tier} problems evaluated by both")
    detail = f"policy {_means([a for a, _ in pairs])}, plain {_means([b for _, b in pairs])}"
    if loss_note:
        low, high = estimate.interval()
        if low is None:
            detail += "; no interval: a loss is not excluded"
        elif high < 0:
            detail += f"; the interval lies below zero: a loss of {-high:.3f} to {-low:.3f}"
        elif low < 0:
            detail += f"; lower end of the interval {low:+.3f}: the data cannot exclude a loss down to it"
        else:
            detail += f"; lower end of the interval {low:+.3f}: no loss within the interval"
    return _estimated(claim, statement, statistic, estimate, detail)


def _hypotheses(policy: Sequence[pl.DataFrame], plain: Sequence[pl.DataFrame], difficulties: list[str]) -> list[dict]:
    hardest = difficulties[-1]
    middle = difficulties[len(difficulties) // 2] if len(difficulties) >= 3 else None
    h1 = f"the policy lowers the calculation-error share on the hardest difficulty ({hardest})"
    calc = [(_indicator(a, "calculation_error"), _indicator(b, "calculation_error")) for a, b in zip(policy, plain)]
    pairs = _pairs([a for a, _ in calc], [b for _, b in calc], hardest, "in_category")
    rows = [_paired_claim("H1", h1, f"calculation-error share, plain minus policy ({PAIRED})", pairs, hardest, sign=-1)]
    h2 = "the policy does not lower accuracy on the middle difficulty" + (f" ({middle})" if middle else "")
    statistic = f"accuracy, policy minus plain ({PAIRED}); reproduced: significantly raised, inconclusive: a loss not excluded"
    if middle is None:
        rows.append(
            _untestable("H2", h2, statistic, f"the task has {len(difficulties)} difficulties: no middle tier apart from the ends")
        )
    else:
        rows.append(_paired_claim("H2", h2, statistic, _pairs(policy, plain, middle, "correct"), middle, loss_note=True))
    h3 = f"the policy raises hard accuracy ({hardest})"
    pairs = _pairs(policy, plain, hardest, "correct")
    rows.append(_paired_claim("H3", h3, f"accuracy, policy minus plain ({PAIRED})", pairs, hardest))
    rows = adjust(rows)
    verdicts = {r["claim"]: r["verdict"] for r in rows}
    rows.append(combined(verdicts["H1"], verdicts["H2"]))
    for row in rows:
        row["kind"], row["difficulty"] = "hypothesis", {"H1": hardest, "H2": middle, "H3": hardest}.get(row["claim"])
    return rows


def combined(h1: str, h2: str) -> dict:
    """The issue's hypothesis from H1's and H2's verdicts (the module's docstring states the rule)."""
    if CONTRADICTED in (h1, h2):
        verdict = CONTRADICTED
    elif UNTESTABLE in (h1, h2):
        verdict = UNTESTABLE
    elif h1 == REPRODUCED:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return {
        "claim": "combined",
        "statement": "protecting the policy's heads (the issue: calculation heads) lowers calculation errors on hard "
        "problems without losing the medium-tier gain",
        "statistic": "H1 and H2: contradicted if either is; reproduced if H1 is and H2 is not contradicted",
        "n_replicates": None,
        "value": None,
        "low": None,
        "high": None,
        "p_value": None,
        "p_adjusted": None,
        "verdict": verdict,
        "detail": f"H1 {h1}, H2 {h2}",
    }


def policy_comparison_table(
    policy: list[pl.DataFrame],
    plain: list[pl.DataFrame],
    policy_cohorts: list[pl.DataFrame],
    plain_cohorts: list[pl.DataFrame],
    difficulties: list[str],
    *,
    policy_text: str | None = None,
    plain_run: str | None = None,
) -> pl.DataFrame:
    """The policy_comparison rows (without provenance) of one policy group: ``policy`` and
    ``plain`` are the replicates' failures tables (every sample), ``*_cohorts`` their cohorts
    tables, each list in replicate order, paired by position; ``difficulties`` the task's, easiest
    first; ``policy_text`` and ``plain_run`` fill the policy and plain columns."""
    _check(policy, plain, policy_cohorts, plain_cohorts)
    if not difficulties:
        raise ValueError("the policy comparison needs the task's difficulties")
    policy = [_final(t) for t in policy]
    plain = [_final(t) for t in plain]
    steps = [sorted({int(s) for t in side for s in t["step"].unique().to_list()}) for side in (policy, plain)]
    step_text = f"final checkpoints: policy step {'/'.join(map(str, steps[0]))}, plain {'/'.join(map(str, steps[1]))}"
    rows = []
    tiers = list(difficulties) + ([OVERALL] if OVERALL not in difficulties else [])
    for difficulty in tiers:
        pairs = _pairs(policy, plain, None if difficulty == OVERALL and OVERALL not in difficulties else difficulty, "correct")
        row = _change(
            f"accuracy_{difficulty}",
            "accuracy",
            difficulty,
            f"accuracy on {'every difficulty' if difficulty == OVERALL else difficulty + ' problems'}, policy against plain",
            f"accuracy, policy minus plain ({PAIRED}); p two-sided",
            pairs,
            step_text,
        )
        rows.append(row)
    for kind, label in SHARES.items():
        marked = [_indicator(t, kind) for t in policy], [_indicator(t, kind) for t in plain]
        for difficulty in difficulties:
            row = _change(
                f"{kind}_{difficulty}",
                kind,
                difficulty,
                f"{label} on {difficulty} problems (of all samples), policy against plain",
                f"{label}, policy minus plain ({PAIRED}); p two-sided",
                _pairs(*marked, difficulty, "in_category"),
            )
            rows.append(row)
    for side, cohorts in (("policy", policy_cohorts), ("plain", plain_cohorts)):
        text, mean = emergent_text(cohorts)
        rows.append(
            {
                "claim": f"heads_{side}",
                "kind": "heads",
                "difficulty": None,
                "statement": f"heads emergent in the {side} run's replicates (in how many of them)",
                "statistic": "emergent heads (cohort status emergent) per replicate, mean",
                "n_replicates": len(cohorts),
                "value": mean,
                "detail": text,
            }
        )
    rows += _hypotheses(policy, plain, list(difficulties))
    out = [{**{c: None for c in SCHEMA}, **{k: v for k, v in r.items() if k != "claim"}, "name": r["claim"]} for r in rows]
    for row in out:
        row["policy"], row["plain"] = policy_text, plain_run
    return pl.DataFrame(out, schema=SCHEMA)


def describe_policy(run: Mapping[str, Any]) -> str:
    """A run's head policy in words: ``freeze calculation_heads: 2``; an anchor with its weight."""
    from sparks.config import describe, head_sets

    heads = run.get("heads") or {}
    parts = []
    for policy, spec in head_sets(run).items():
        text = f"{policy} {describe(spec)}"
        if policy == "anchor" and heads["anchor"].get("weight") is not None:
            text += f" (weight {heads['anchor']['weight']})"
        parts.append(text)
    return "; ".join(parts) or "no head policy"


def _read(paths: Sequence[Path], table: str, expected: Sequence[str], task: str) -> list[pl.DataFrame]:
    """One table per replicate, each checked to be of the replicate the position names."""
    from sparks.tables import read_table

    out = []
    for path, run in zip(paths, expected):
        frame = read_table(path, table)
        runs, tasks = _runs(frame), frame["task"].drop_nulls().unique().to_list()
        if runs != [run]:
            raise ValueError(f"{path} is a {table} table of run(s) {runs}, not {run!r}: pass the replicates in seed order")
        if tasks != [task]:
            raise ValueError(f"{path} is a {table} table of task(s) {tasks}, not {task!r}")
        out.append(frame)
    return out


def policy_comparison_stage(config: dict, group: str, task: str, files: dict[str, list[Path]], out: Path) -> Path:
    """Write the policy_comparison table of policy group ``group`` (a run under runs with
    ``heads.compare_to``) on ``task``: ``files`` holds policy_failures, plain_failures,
    policy_cohorts and plain_cohorts, each a list in the group's replicate order."""
    from sparks.config import paired_run, run_provenance, task_difficulties
    from sparks.tables import with_provenance, write_table

    if group not in config["claim_groups"]:
        raise KeyError(f"{group!r} is not a run of the config (runs: {', '.join(config['claim_groups'])})")
    members = config["claim_groups"][group]
    heads = config["runs"][members[0]].get("heads") or {}
    if not heads.get("compare_to"):
        raise ValueError(f"run {group!r} has no heads.compare_to: there is no plain run to compare its policy with")
    plain_group = heads["compare_to"]
    plain_members = [paired_run(config, r, plain_group) for r in members]
    names = ("policy_failures", "plain_failures", "policy_cohorts", "plain_cohorts")
    lengths = {name: len(files[name]) for name in names}
    if set(lengths.values()) != {len(members)}:
        raise ValueError(
            f"run {group!r} has {len(members)} replicate(s) ({', '.join(members)}): give one file per replicate for each of "
            + ", ".join(f"--{n.replace('_', '-')} (got {k})" for n, k in lengths.items())
        )
    tables = {
        name: _read(files[name], name.split("_")[1], members if name.startswith("policy") else plain_members, task)
        for name in names
    }
    table = policy_comparison_table(
        tables["policy_failures"],
        tables["plain_failures"],
        tables["policy_cohorts"],
        tables["plain_cohorts"],
        task_difficulties(config["tasks"][task]),
        policy_text=describe_policy(config["runs"][members[0]]),
        plain_run=plain_group,
    )
    log.info("policy %s against %s:\n%s", group, plain_group, table.select("name", "value", "low", "high", "verdict"))
    provenance = run_provenance(config, group, task, "runs", "attribute", "aggregate", "evaluate", "failures")
    return write_table(with_provenance(table, **provenance), "policy_comparison", out)
