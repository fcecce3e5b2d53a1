"""Wall time of ``edge-prune model --target cortex-m4``, with the accuracy it reports.

    .venv/bin/python bench/make_model.py [--runs 3] [--quick] [--target cortex-m4]

Runs what ``make model TARGET=cortex-m4`` runs once the virtualenv is installed (the
``edge-prune model`` command on the bundled example, default config), ``--runs`` times in fresh
processes, each into its own temporary directory. Prints the median, min and max wall time,
and from each run's ``report.json``: the dense Keras accuracy, the int8 accuracy on TFLM, the
deployable artifact with its TFLM accuracy and size, the pipeline's time per stage (medians),
and how many TFLM interpreter processes one run starts (counted from outside: a
``sitecustomize`` on the run's ``PYTHONPATH`` logs every process started with the TFLM child
module). ``--checkout DIR`` measures another checkout of edge-prune (e.g. an older commit, for a
before/after comparison) with this virtualenv. The virtualenv creation (``make`` on a fresh
clone) is not included.
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

REPO = Path(__file__).resolve().parent.parent


CHILD_COUNTER = """\
import os, subprocess
_start = subprocess.Popen.__init__
def _counting_start(self, args, *rest, **kwargs):
    if any("_tflm_child" in str(a) for a in (args if isinstance(args, (list, tuple)) else [args])):
        with open(os.environ["EDGE_PRUNE_BENCH_CHILD_LOG"], "a") as log:
            log.write("child\\n")
    _start(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = _counting_start
"""


def one_run(checkout: Path, target: str) -> tuple[float, dict, int]:
    """Wall time, report.json and the number of TFLM child processes of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(CHILD_COUNTER)
        log = Path(tmp) / "children.log"
        env = dict(os.environ, EDGE_PRUNE_BENCH_CHILD_LOG=str(log))
        env["PYTHONPATH"] = os.pathsep.join([tmp, str(checkout)])
        command = [sys.executable, "-m", "edge_prune.cli", "model", "--target", target]
        start = time.perf_counter()
        done = subprocess.run(
            [*command, "--out", str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            check=False,
            cwd=checkout,
            env=env,
        )
        wall = time.perf_counter() - start
        children = len(log.read_text().splitlines()) if log.exists() else 0
        report_path = Path(tmp) / "out" / target / "report.json"
        # Exit 1 (does not fit) still writes the report; anything else is a failure.
        if done.returncode not in (0, 1) or not report_path.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise SystemExit(f"edge-prune model failed (exit {done.returncode}):\n{tail}")
        report = json.loads(report_path.read_text())
    return wall, report, children


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument(
        "--checkout", type=Path, default=REPO, help="edge-prune source tree to run (default: this)"
    )
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs

    walls, reports, children = [], [], []
    for _ in range(runs):
        wall, report, started = one_run(args.checkout.resolve(), args.target)
        walls.append(wall)
        reports.append(report)
        children.append(started)

    last = reports[-1]
    accuracy = last["accuracy"]
    deployable = last["deployable"]["artifact"]
    size = next(a["flash_bytes"] for a in last["artifacts"] if a["name"] == deployable)
    print(f"edge-prune model --target {args.target} (what `make model TARGET={args.target}` "
          f"runs after install), {runs} run(s)")  # fmt: skip
    print_table(
        ["wall median s", "min s", "max s", "runs", "TFLM child processes per run", "fits"],
        [[f"{statistics.median(walls):.1f}", f"{min(walls):.1f}", f"{max(walls):.1f}",
          str(runs), "/".join(map(str, sorted(set(children)))), "yes" if last["fits"] else "no"]],
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
    stages = list(last["timings_s"])
    print_table(
        ["pipeline stage", "median s"],
        [[s, f"{statistics.median(r['timings_s'][s] for r in reports):.1f}"] for s in stages],
    )
    print(f"load average after measuring: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
