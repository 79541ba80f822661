"""How the report reads in a browser: headless Chromium opens ``report.html`` (offline) at
1,280 px wide and prints the time from navigation to the load event, the page's height, its
size in bytes and the head explorer's share of it, and the load time over the 2 s target as a
ratio. Run it in the folder the workflow ran in:
    python benchmarks/report_load.py [--report results/embedded/report.html] [--repeat 5]
Needs Chromium (apt-get install chromium) and websocket-client (the dev extra).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chromium import find_chromium, open_page

TARGET_MS = 2000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, default=Path("results/embedded/report.html"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if find_chromium() is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set SPARKS_CHROMIUM)")
    times, height, errors = [], 0, []
    for _ in range(args.repeat):
        with open_page(args.report, width=1280) as page:
            times.append(page.load_ms())
            height, errors = page.height(), page.errors
    text = args.report.read_text()
    explorer = re.search(r'<div id="explorer">.*?</script><script>.*?</script>', text, re.DOTALL)
    size = len(text.encode())
    print(f"report: {args.report} ({size:,} bytes; head explorer {len(explorer[0].encode()) if explorer else 0:,} bytes)")
    print(f"height at 1,280 px: {height:,} px; console errors: {len(errors)}")
    print(f"load (navigation to load event) over {args.repeat} opens: median {statistics.median(times):.0f} ms, "
          f"min {min(times):.0f}, max {max(times):.0f}")  # fmt: skip
    print(f"load / {TARGET_MS:.0f} ms target: {statistics.median(times) / TARGET_MS:.3f}")


if __name__ == "__main__":
    main()
