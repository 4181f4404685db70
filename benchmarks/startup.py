"""How long ``goa --help`` takes, wall clock (target <= 0.5 s).

Runs the installed console script in a fresh process several times and reports
the median. Usage: ``.venv/bin/python -m benchmarks.startup [--runs N]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_file import write_result

TARGET_S = 0.5


def time_command(argv: list[str], runs: int) -> list[float]:
    """Wall time of each of ``runs`` fresh runs of ``argv`` (one warm-up run first)."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    goa = shutil.which("goa", path=str(Path(sys.executable).parent)) or "goa"
    times = time_command([goa, "--help"], args.runs)
    median = statistics.median(times)
    path = write_result(
        "startup",
        metrics={
            "goa_help_s": round(median, 4),
            "goa_help_min_s": round(min(times), 4),
            "goa_help_max_s": round(max(times), 4),
            "runs": args.runs,
        },
        goals={"goa_help_s": {"target": f"<= {TARGET_S} s", "met": median <= TARGET_S}},
        simulated=False,
    )
    print(f"goa --help: median {median:.3f} s over {args.runs} runs -> {path}")


if __name__ == "__main__":
    main()
