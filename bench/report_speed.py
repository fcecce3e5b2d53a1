"""Wall time of ``edge-prune report`` on a ~1 MB model next to ``import tensorflow``.

    .venv/bin/python bench/report_speed.py [--runs 5]

The report path never imports TensorFlow; this shows what that buys. The ~1 MB float model
(Dense 784-320-10, seeded) is built once with TensorFlow in a child process, in a temporary
directory. Each figure is the median wall time of ``--runs`` fresh processes on this machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE_MODEL = """
import sys
from edge_prune._tf import keras, tf
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(320, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


def timings(command: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + sys of the process and its children) seconds of each run."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    edge_prune = str(Path(sys.executable).with_name("edge-prune"))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mlp_784_320_10.tflite"
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(model)], check=True,
                       capture_output=True)  # fmt: skip
        rows = [
            (
                f"edge-prune report ({model.stat().st_size:,} B model, --target cortex-m55)",
                timings([edge_prune, "report", str(model), "--target", "cortex-m55"], args.runs),
            ),
            (
                "python -c 'import tensorflow'",
                timings([sys.executable, "-c", "import tensorflow"], args.runs),
            ),
        ]
        check = subprocess.run(
            [sys.executable, "-c",
             "import sys; from edge_prune.cli import main; main(['report', sys.argv[1], "
             "'--target', 'cortex-m55', '--format', 'json']); "
             "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow',"
             " file=sys.stderr)", str(model)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"{'command':<{width}}  wall median s  min s  max s  CPU median s  runs")
    for name, (walls, cpus) in rows:
        print(
            f"{name:<{width}}  {statistics.median(walls):13.2f}  {min(walls):5.2f}  "
            f"{max(walls):5.2f}  {statistics.median(cpus):12.2f}  {len(walls)}"
        )
    print(f"report process: {check.stderr.strip().splitlines()[-1]}")
    print(f"load average while measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
          f" on {os.cpu_count()} CPUs (wall time grows with load; CPU time does not)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
