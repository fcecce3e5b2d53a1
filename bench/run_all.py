"""Run every benchmark in turn and print its table: what ``make bench`` runs.

    .venv/bin/python bench/run_all.py [--quick] [--only compression,structured]

Scripts, in order: compression.py, structured.py, prune_cost.py, make_model.py,
report_speed.py (see bench/README.md). ``--quick`` passes each its quick setting (fewer epochs
or repeats): for a smoke test, not for the figures. Prints the date, the machine and its load
first: timings are only comparable on a quiet machine. Exit status: 0 when every script
succeeded, else 1 (the others still run).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# (script, arguments for a full run, arguments for --quick)
SCRIPTS = (
    ("compression.py", [], ["--quick"]),
    ("structured.py", [], ["--quick"]),
    ("prune_cost.py", ["--epochs", "6"], ["--quick"]),
    ("make_model.py", ["--runs", "3"], ["--quick"]),
    ("report_speed.py", ["--runs", "5"], ["--runs", "2"]),
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs/repeats (smoke test)")
    parser.add_argument("--only", help="comma-separated script names without .py")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    unknown = (wanted or set()) - {s.removesuffix(".py") for s, _, _ in SCRIPTS}
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")

    print(f"edge-prune benchmarks, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}; Python {platform.python_version()}")
    print(f"load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
          + ("; --quick: rough figures" if args.quick else ""))  # fmt: skip
    failed = []
    for script, full, quick in SCRIPTS:
        if wanted and script.removesuffix(".py") not in wanted:
            continue
        command = [sys.executable, str(BENCH / script), *(quick if args.quick else full)]
        print(f"\n## {script} {' '.join(command[2:])}\n", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            failed.append(script)
            print(f"FAILED (exit {done.returncode}); last lines of its stderr:")
            print("\n".join(done.stderr.strip().splitlines()[-10:]))
        print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
