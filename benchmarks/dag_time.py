"""Where a finished DAG run spent its time: per rule and along the critical path.

Reads the Snakemake log of the run (``.snakemake/log/``, newest first, or --log) for each job's
rule, wildcards, inputs, outputs, start and finish, and the jobs' benchmark files
(``results/{exp}/timings/...``) for their own wall time. Prints the run's wall time (first start
to last finish), job-seconds by rule (jobs, total, mean, share), and the critical path: the chain
of jobs, from the last one to finish back to the first, in which each job waited for the input
that arrived last. Run it in the folder the workflow ran in:
    python benchmarks/dag_time.py [--dir .] [--log .snakemake/log/<file>.snakemake.log]
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def parse_log(path: Path) -> dict[int, dict]:
    """jobid -> {rule, wildcards, input, output, benchmark, start, end} from a Snakemake log."""
    jobs: dict[int, dict] = {}
    now, current = None, None
    for line in path.read_text().splitlines():
        if m := STAMP.match(line):
            now, current = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y"), None
        elif m := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line):
            current = {"rule": m[1], "start": now, "input": [], "output": [], "wildcards": "", "benchmark": None}
        elif current is not None and (m := re.match(r"^    (input|output|wildcards|benchmark|jobid): (.*)$", line)):
            key, value = m[1], m[2]
            if key == "jobid":
                jobs[int(value)] = current
            elif key in ("input", "output"):
                current[key] = value.split(", ")
            else:
                current[key] = value
        elif (m := re.match(r"^Finished jobid: (\d+)", line)) and int(m[1]) in jobs:
            jobs[int(m[1])]["end"] = now
    return {j: job for j, job in jobs.items() if "end" in job and job["rule"] != "all"}


def seconds(workdir: Path, job: dict) -> float:
    """The job's own wall time from its benchmark file (else its logged start to finish)."""
    if job["benchmark"] and (workdir / job["benchmark"]).is_file():
        with open(workdir / job["benchmark"]) as handle:
            return float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    return (job["end"] - job["start"]).total_seconds()


def critical_path(jobs: dict[int, dict]) -> list[dict]:
    producer = {out: job for job in jobs.values() for out in job["output"]}
    path = [max(jobs.values(), key=lambda j: j["end"])]
    while True:
        upstream = [producer[i] for i in path[-1]["input"] if i in producer]
        if not upstream:
            return path[::-1]
        path.append(max(upstream, key=lambda j: j["end"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("."), help="the folder the workflow ran in")
    parser.add_argument("--log", type=Path, default=None, help="the run's Snakemake log (default: the newest)")
    args = parser.parse_args()
    log = args.log or max((args.dir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    jobs = parse_log(log)
    if not jobs:
        raise SystemExit(f"{log} records no finished job")
    for job in jobs.values():
        job["seconds"] = seconds(args.dir, job)
    wall = (max(j["end"] for j in jobs.values()) - min(j["start"] for j in jobs.values())).total_seconds()
    total = sum(j["seconds"] for j in jobs.values())
    print(f"{log.name}: {len(jobs)} jobs, wall {wall:.0f} s, {total:.0f} job-seconds (parallelism {total / wall:.2f})")
    print(f"{'rule':<16}{'jobs':>5}{'job-s':>9}{'mean s':>9}{'share':>8}")
    by_rule: dict[str, list[float]] = {}
    for job in jobs.values():
        by_rule.setdefault(job["rule"], []).append(job["seconds"])
    for rule, times in sorted(by_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:<16}{len(times):>5}{sum(times):>9.1f}{sum(times) / len(times):>9.1f}{sum(times) / total:>8.1%}")
    path = critical_path(jobs)
    on_path = sum(j["seconds"] for j in path)
    print(f"critical path: {len(path)} jobs, {on_path:.0f} s of work ({on_path / wall:.0%} of the wall time)")
    for job in path:
        print(f"  {job['rule']:<16}{job['seconds']:>8.1f} s  {job['wildcards']}")


if __name__ == "__main__":
    main()
