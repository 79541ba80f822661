"""The faithfulness curve's cost over the EAP-IG scores of the same checkpoint and pairs.

Loads one checkpoint of a finished run (the README's embedded default by default: run it first),
selects the pairs its attribute job scores and, with one thread, times in this run (median of
--repeats after a warm-up): EAP-IG edge and head scores (``eap_ig``, as the attribute job runs it)
and the faithfulness curve over the config's circuit sizes (``faithfulness_curve``). Prints both
times, their ratio and the curve's CPR. The curve's patched passes skip, per circuit, the nodes
that no kept edge from a changed node reaches; small circuits skip most of the model.
Run in the folder the workflow ran in: python benchmarks/faithfulness.py [--config workflow_config.yaml] [--run sft] [--step N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from sparks import layout
from sparks.attribute import AttributeSettings, select_pairs
from sparks.attribute.batches import pair_batches
from sparks.attribute.eap import eap_ig
from sparks.attribute.faithfulness import faithfulness_curve
from sparks.attribute.metrics import metric
from sparks.config import check_config
from sparks.manifest import read_manifest
from sparks.model.load import load_checkpoint
from sparks.tables import read_table


def timed(fn, repeats: int):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("workflow_config.yaml"))
    parser.add_argument("--run", default="sft")
    parser.add_argument("--step", type=int, default=None, help="default: the run's last checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the attribute job runs
    config = check_config(yaml.safe_load(args.config.read_text()), source=str(args.config))
    exp = config["experiment"]
    manifest = read_manifest(layout.manifest(args.run, exp))
    step = manifest.steps[-1] if args.step is None else args.step
    task = config["runs"][args.run]["task"]
    model, tokenizer = load_checkpoint(manifest.checkpoint(step), dtype=torch.float32)
    settings = AttributeSettings.from_config(config)
    pairs = select_pairs(read_table(layout.pairs(task, exp), "pairs"), settings)
    batches = pair_batches(pairs, tokenizer, settings.batch_size)
    fn = metric(settings.metric)

    eap_time, scores = timed(lambda: eap_ig(model, batches, fn, settings.ig_steps), args.repeats)
    curve_time, curve = timed(
        lambda: faithfulness_curve(model, batches, scores.edges, fn, settings.faithfulness_fractions), args.repeats
    )
    print(
        f"{args.run} step {step}: {len(pairs)} pairs in {len(batches)} batches, m = {settings.ig_steps}, "
        f"{curve.height} circuit sizes, 1 thread"
    )
    print(
        f"EAP-IG (edges and heads) {eap_time:.2f} s   faithfulness curve {curve_time:.2f} s   "
        f"ratio {curve_time / eap_time:.2f}   CPR {curve['cpr'][0]:.4f}"
    )


if __name__ == "__main__":
    main()
