"""What the fork server saves a job: one stage command timed as a new process and through
``sparks.forkserver``, in one run, on the same inputs.

The command is ``sparks prepare-data`` for the embedded default's task (a few tenths of a second of
work: most of a new process's time is importing torch, transformers and the rest). Prints each
way's median wall time over ``--repeats`` runs and their ratio; the difference is the start-up cost
every local job no longer pays.
Run: python benchmarks/job_start.py [--config workflow_config.yaml] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    from sparks import forkserver
    from sparks.config import load_config
    from sparks.model.tokenizer import build_char_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="workflow_config.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = Path(args.config).resolve()
    task = next(iter(load_config(config)["tasks"]))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        build_char_tokenizer().save_pretrained(work / "tokenizer")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as Snakemake runs a one-thread job
        server = forkserver.start(work / "server.log", "sparks.cli:main", env=env)
        if server is None:
            raise SystemExit("no fork server on this system (it needs Linux); nothing to compare")
        try:
            server.wait()
            command = (
                f"sparks prepare-data --config {config} --task {task} --tokenizer {work / 'tokenizer'} "
                f"--problems {work / 'problems.parquet'} --pairs {work / 'pairs.parquet'}"
            )
            times: dict[str, list[float]] = {"new process": [], "fork server": []}
            for _ in range(args.repeats):
                for way, value in (("new process", "off"), ("fork server", server.path)):
                    start = time.perf_counter()
                    subprocess.run(command, shell=True, check=True, env={**env, forkserver.ENV: value}, capture_output=True)
                    times[way].append(time.perf_counter() - start)
        finally:
            server.stop()
    plain, served = (statistics.median(times[way]) for way in ("new process", "fork server"))
    print(f"sparks prepare-data ({task}), median of {args.repeats}:")
    print(f"  new process  {plain:6.2f} s")
    print(f"  fork server  {served:6.2f} s")
    print(f"ratio fork server / new process: {served / plain:.2f} (start-up saved: {plain - served:.2f} s a job)")


if __name__ == "__main__":
    main()
