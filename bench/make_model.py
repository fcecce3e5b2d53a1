"""Wall time of ``edge-prune model --target cortex-m4``, with the accuracy it reports.

    .venv/bin/python bench/make_model.py [--runs 3] [--quick] [--target cortex-m4]

Runs what ``make model TARGET=cortex-m4`` runs once the virtualenv is installed (the
``edge-prune model`` command on the bundled example, default config), ``--runs`` times in fresh
processes, each into its own temporary directory. Prints the median, min and max wall time,
and from each run's ``report.json``: the dense Keras accuracy, the int8 accuracy on TFLM, the
deployable artifact with its TFLM accuracy and size, and the pipeline's time per stage
(medians). The virtualenv creation (``make`` on a fresh clone) is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_prune.tables import print_table


def one_run(edge_prune: str, target: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run(
            [edge_prune, "model", "--target", target, "--out", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        report_path = Path(tmp) / target / "report.json"
        # Exit 1 (does not fit) still writes the report; anything else is a failure.
        if done.returncode not in (0, 1) or not report_path.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise SystemExit(f"edge-prune model failed (exit {done.returncode}):\n{tail}")
        report = json.loads(report_path.read_text())
    return wall, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    edge_prune = str(Path(sys.executable).with_name("edge-prune"))

    walls, reports = [], []
    for _ in range(runs):
        wall, report = one_run(edge_prune, args.target)
        walls.append(wall)
        reports.append(report)

    last = reports[-1]
    accuracy = last["accuracy"]
    deployable = last["deployable"]["artifact"]
    size = next(a["flash_bytes"] for a in last["artifacts"] if a["name"] == deployable)
    print(f"edge-prune model --target {args.target} (what `make model TARGET={args.target}` "
          f"runs after install), {runs} run(s)")  # fmt: skip
    print_table(
        ["wall median s", "min s", "max s", "runs", "fits"],
        [[f"{statistics.median(walls):.1f}", f"{min(walls):.1f}", f"{max(walls):.1f}",
          str(runs), "yes" if last["fits"] else "no"]],
    )  # fmt: skip
    print()
    print_table(
        ["accuracy (held-out digits, top-1)", "value"],
        [
            ["dense model, Keras", f"{accuracy['dense_keras']:.2%}"],
            ["int8 (pruned, dense storage) on TFLM", f"{accuracy['int8_tflm']:.2%}"],
            [
                f"deployable ({deployable}, {size:,} B) on TFLM",
                f"{accuracy[f'{deployable}_tflm']:.2%}",
            ],
        ],
    )
    print()
    order = ["dense", "structured", "prune", "cluster", "convert_check", "footprint"]
    stages = [s for s in order if s in last["timings_s"]]
    stages += [s for s in last["timings_s"] if s not in order]  # report.json sorts its keys
    print_table(
        ["pipeline stage", "median s"],
        [[s, f"{statistics.median(r['timings_s'][s] for r in reports):.1f}"] for s in stages],
    )
    print(f"load average after measuring: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
