"""Wall time of ``edge-prune model --target cortex-m4``, with the accuracy it reports.

    .venv/bin/python bench/make_model.py [--runs 3] [--quick] [--target cortex-m4] \\
        [--checkout DIR [--checkout DIR2 ...]]

Runs what ``make model TARGET=cortex-m4`` runs once the virtualenv is installed (the
``edge-prune model`` command on the bundled example, default config), ``--runs`` times in fresh
processes, each into its own temporary directory. Prints the median, min and max wall time,
and from each run's ``report.json``: the dense Keras accuracy, the int8 accuracy on TFLM, the
deployable artifact with its TFLM accuracy and size, the pipeline's time per stage (medians),
and how many TFLM interpreter processes one run starts (counted from outside: a
``sitecustomize`` on the run's ``PYTHONPATH`` logs every process started with the TFLM child
module). ``--checkout DIR`` measures another checkout of edge-prune with this virtualenv; given
more than once (e.g. an older commit and this tree, for a before/after comparison) the
checkouts take turns run by run (A B A B ...), so that a change in the machine's load falls on
both, and each gets its own row. The virtualenv creation (``make`` on a fresh clone) is not
included.
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


def describe(checkout: Path) -> str:
    """The checkout's directory and commit (with '+' when it has uncommitted changes)."""
    git = ["git", "-C", str(checkout)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return f"{checkout} ({commit or 'no git'}{'+' if dirty else ''})"


def summary_row(label: str, walls: list[float], reports: list[dict], children: list[int]):
    last = reports[-1]
    accuracy = last["accuracy"]
    deployable = last["deployable"]["artifact"]
    size = next(a["flash_bytes"] for a in last["artifacts"] if a["name"] == deployable)
    return [
        label,
        f"{statistics.median(walls):.1f}",
        f"{min(walls):.1f}",
        f"{max(walls):.1f}",
        str(len(walls)),
        "/".join(map(str, sorted(set(children)))),
        str(len(last["artifacts"])),
        "yes" if last["fits"] else "no",
        f"{accuracy['dense_keras']:.2%}",
        f"{accuracy['int8_tflm']:.2%}",
        f"{deployable} {size:,} B {accuracy[f'{deployable}_tflm']:.2%}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per checkout")
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="edge-prune source tree to run (default: this one); repeat to compare, alternating",
    )
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    checkouts = [c.resolve() for c in args.checkout or [REPO]]

    measured = {c: ([], [], []) for c in checkouts}  # walls, reports, children
    loads = [os.getloadavg()]
    for _ in range(runs):
        for checkout in checkouts:
            wall, report, started = one_run(checkout, args.target)
            for values, value in zip(measured[checkout], (wall, report, started), strict=True):
                values.append(value)
            loads.append(os.getloadavg())

    order = " A B" * runs if len(checkouts) == 2 else ""
    print(f"edge-prune model --target {args.target} (what `make model TARGET={args.target}` "
          f"runs after install), {runs} run(s) per checkout"
          + (f", alternating{order}" if order else ""))  # fmt: skip
    print_table(
        ["checkout", "wall median s", "min s", "max s", "runs", "TFLM children per run",
         "artifacts", "fits", "dense Keras", "int8 on TFLM", "deployable, flash, TFLM top-1"],
        [summary_row(describe(c), *measured[c]) for c in checkouts],
    )  # fmt: skip
    print()
    stages = list(dict.fromkeys(s for c in checkouts for s in measured[c][1][-1]["timings_s"]))
    print_table(
        ["pipeline stage", *[f"median s, {describe(c).split(' (')[0]}" for c in checkouts]],
        [[s, *[_median_stage(measured[c][1], s) for c in checkouts]] for s in stages],
    )
    print("accuracy: top-1 on the held-out digits; TFLM children: processes started with the "
          "TFLM child module during one run (all runs' counts, when they differ)")  # fmt: skip
    print(f"load average (1 min) before and after each run: "
          f"{' '.join(f'{v[0]:.1f}' for v in loads)} on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


def _median_stage(reports: list[dict], stage: str) -> str:
    values = [r["timings_s"][stage] for r in reports if stage in r["timings_s"]]
    return f"{statistics.median(values):.1f}" if values else "-"


if __name__ == "__main__":
    sys.exit(main())
