"""evaluate.split_interventions: one intervene job per condition, merged into exactly the tables
the single job writes (checked on the checkpoints of conftest's full-size dag_run)."""

from __future__ import annotations

import polars as pl
import pytest
import yaml
from conftest import REPO

from sparks.config import check_config
from sparks.evaluate import Condition, EvaluateSettings, conditions, intervene_stage, merge_interventions
from sparks.tables import read_table, write_table
from sparks.types import HeadId


def test_conditions_follow_the_single_jobs_order():
    settings = EvaluateSettings.defaults(controls=["same_layer", "outside"], random_seeds=2, alphas=[1.3, 0.5])
    names = [c.name for c in conditions(settings)]
    assert names[:6] == [
        "ablate-none",
        "ablate-emergent",
        "ablate-same_layer-0",
        "ablate-same_layer-1",
        "ablate-outside-0",
        "ablate-outside-1",
    ]
    assert names[6:9] == ["scale-none", "scale-emergent-a1.3", "scale-same_layer-0-a1.3"]
    assert names[-1] == "scale-outside-1-a0.5" and names.count("scale-none") == 1
    assert len(names) == 6 + 1 + 2 * 5 and len(set(names)) == len(names)
    assert Condition("scale", "emergent", None, 2.0).name == "scale-emergent-a2"


@pytest.mark.slow
def test_split_interventions_merge_to_the_single_jobs_tables(dag_run, tmp_path):
    """On the full-size run's distill checkpoints and its second evaluation set (24 problems), with
    two draws per control and one alpha (the merge does not depend on how many conditions or
    problems there are; 8 draws on arith would cost 77 passes of 180 problems)."""
    config = check_config(yaml.safe_load((REPO / "workflow_config.yaml").read_text()))
    config["evaluate"].update(random_seeds=2, alphas=[2.0])
    run, task, evaluated = "distill", "arith", "arithlong"
    # Which heads this machine's training calls emergent varies (none, on some machines): the merge
    # is checked on two of the run's circuit heads labelled emergent in a copy of its cohorts table.
    cohorts = read_table(dag_run / "circuits" / run / task / "cohorts.parquet", "cohorts").sort("layer", "head")
    planted = pl.int_range(pl.len()) < 2
    cohorts = cohorts.with_columns(status=pl.when(planted).then(pl.lit("emergent")).otherwise(pl.col("status")))
    cohorts_path = write_table(cohorts, "cohorts", tmp_path / "cohorts.parquet")
    inputs = dict(
        manifest=dag_run / "runs" / run / "checkpoints.json",
        task=evaluated,
        problems_path=dag_run / "data" / f"{evaluated}_problems.parquet",
        cohorts_path=cohorts_path,
        frequency_path=dag_run / "circuits" / run / task / "frequency.parquet",
    )
    tables, samples = [], []
    for condition in conditions(EvaluateSettings.from_config(config)):
        tables.append(tmp_path / f"{condition.name}.parquet")
        samples.append(tmp_path / f"{condition.name}_samples.parquet")
        intervene_stage(config, **inputs, out=tables[-1], samples_out=samples[-1], condition=condition.name)
    merge_interventions(tables, samples, tmp_path / "merged.parquet", tmp_path / "merged_samples.parquet")
    intervene_stage(config, **inputs, out=tmp_path / "single.parquet", samples_out=tmp_path / "single_samples.parquet")
    drop = ("created_at",)
    merged = read_table(tmp_path / "merged.parquet", "interventions").drop(drop)
    single = read_table(tmp_path / "single.parquet", "interventions").drop(drop)
    assert set(merged["heads_from"]) > {"none", "emergent"} and merged.equals(single)
    emergent = {HeadId(*head).name for head in cohorts.filter(pl.col("status") == "emergent").select("layer", "head").rows()}
    assert {frozenset(h.split()) for h in merged.filter(pl.col("heads_from") == "emergent")["heads"]} == {frozenset(emergent)}
    merged_samples = read_table(tmp_path / "merged_samples.parquet", "intervention_samples").drop(drop)
    assert merged_samples.equals(read_table(tmp_path / "single_samples.parquet", "intervention_samples").drop(drop))
    assert pl.read_parquet(tables[0]).height > 0
