"""Paired wall time: ``edge-prune report MODEL --target cortex-m4`` vs ``mcufit check``.

    PYTHONPATH=. .venv/bin/python bench/report_speed.py [--runs 7] \\
        [--mcufit-venv /tmp/mcufit-venv] [--mcufit-board nano33ble]

Both tools answer the same question for the same file: does this model fit an nRF52840
(edge-prune's ``targets/cortex-m4.toml``, mcufit's ``nano33ble`` board, the Arduino Nano 33 BLE),
both with a real TFLM run for the arena: edge-prune with the ``tflite-micro`` interpreter in a
child process, mcufit 0.5.2 with its wasm32 TFLM build under node (its default ``check`` when
node is on PATH: "Method: tflm-wasm32-measurement").

mcufit is not a dependency of edge-prune. Install it into a separate virtualenv, once:

    python3.11 -m venv /tmp/mcufit-venv && /tmp/mcufit-venv/bin/pip install mcufit==0.5.2

and have ``node`` on PATH (Debian: ``apt-get install nodejs``). Without them only edge-prune is
timed and the script says why mcufit was not.

Models: the committed fixtures tests/data/cnn_int8.tflite, mlp_int8_lenet.tflite,
mlp_float.tflite, and a ~1 MB float MLP (Dense 784-320-10, seeded) built once with TensorFlow in
a child process before any timing. Per model: one untimed warm-up run of each tool (file cache),
then ``--runs`` runs of each, alternating A B A B ... (A = edge-prune), each a fresh process.
Prints median, min and max wall time per tool, the median CPU time (user + sys of the process
and its children), exit codes, the load average before and after each model, and the ratio of
the medians edge-prune / mcufit (the aim is at or below 0.5). Wall time grows with the load
on this machine; CPU time much less.

A second table gives the floor under each tool, timed the same way: a bare interpreter start,
and the imports each one pays before any work (``edge-prune report`` imports numpy and the
``tflite_micro`` package in its own process and again in the TFLM child; mcufit imports its CLI
stack, typer and rich, then starts node for the wasm32 run).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_prune.tables import print_table

REPO = Path(__file__).resolve().parent.parent
FIXTURES = ("cnn_int8.tflite", "mlp_int8_lenet.tflite", "mlp_float.tflite")
MAKE_MODEL = """
import sys
from edge_prune.training._tf import keras, tf
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(320, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


@dataclass
class Runs:
    """Wall and CPU seconds and exit codes of one tool's timed runs on one model."""

    walls_s: list[float] = field(default_factory=list)
    cpus_s: list[float] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)
    last_stderr: str = ""


def run_once(command: list[str], runs: Runs | None) -> None:
    """Run ``command`` once; record its wall time, CPU time and exit code in ``runs``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if runs is not None:
        runs.walls_s.append(wall)
        runs.cpus_s.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        runs.exit_codes.add(done.returncode)
        runs.last_stderr = done.stderr.strip()


def _env() -> dict[str, str]:
    """This tree's edge_prune first on the path, whatever is installed in the virtualenv."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def mcufit_command(venv: Path) -> tuple[list[str] | None, str]:
    """(the mcufit executable as a command, '') or (None, why it cannot run here)."""
    executable = venv / "bin" / "mcufit"
    if not executable.is_file():
        return None, f"{executable} not found: install mcufit==0.5.2 into {venv} (see --help)"
    if shutil.which("node") is None:
        return None, "node not on PATH: mcufit check would fall back to its static estimate"
    return [str(executable)], ""


def paired(commands: dict[str, list[str]], runs: int) -> dict[str, Runs]:
    """Warm up each command once, then ``runs`` timed runs of each, alternating A B A B ..."""
    for command in commands.values():
        run_once(command, None)
    results = {name: Runs() for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            run_once(command, results[name])
    return results


def floor_commands(mcufit: list[str] | None) -> dict[str, list[str]]:
    """Process starts and imports that bound each tool's wall time from below."""
    python = sys.executable
    commands = {
        "python -c pass (project venv)": [python, "-c", "pass"],
        "python -c 'import numpy'": [python, "-c", "import numpy"],
        "python -c 'import tflite_micro'": [python, "-c", "import tflite_micro"],
        "python -c 'import edge_prune.cli, edge_prune.measurement.footprint'": [
            python, "-c", "import edge_prune.cli, edge_prune.measurement.footprint"],
    }  # fmt: skip
    if mcufit:
        venv_python = str(Path(mcufit[0]).with_name("python"))
        commands["python -c 'import mcufit.cli' (mcufit venv)"] = [
            venv_python, "-c", "import mcufit.cli"]  # fmt: skip
        commands["node -e 0"] = ["node", "-e", "0"]
    return commands


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per tool and model")
    parser.add_argument("--mcufit-venv", type=Path, default=Path("/tmp/mcufit-venv"))
    parser.add_argument("--mcufit-board", default="nano33ble")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args(argv)
    mcufit, why_not = mcufit_command(args.mcufit_venv)

    with tempfile.TemporaryDirectory() as tmp:
        large = Path(tmp) / "mlp_784_320_10_float.tflite"
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(large)], check=True,
                       capture_output=True, env=_env())  # fmt: skip
        models = [REPO / "tests" / "data" / name for name in FIXTURES] + [large]
        rows, failures = [], []
        for model in models:
            commands = {
                "edge-prune": [
                    sys.executable,
                    "-m",
                    "edge_prune.cli",
                    "report",
                    str(model),
                    "--target",
                    args.target,
                ],  # fmt: skip
            }
            if mcufit:
                commands["mcufit"] = [*mcufit, "check", str(model), "--board", args.mcufit_board]
            load_before = load()
            results = paired(commands, args.runs)
            loads = f"{load_before} -> {load()}"
            medians = {name: statistics.median(r.walls_s) for name, r in results.items()}
            for name, r in results.items():
                ratio = "" if name != "edge-prune" or "mcufit" not in medians else (
                    f"{medians['edge-prune'] / medians['mcufit']:.2f}"
                )  # fmt: skip
                rows.append(
                    [
                        f"{model.name} ({model.stat().st_size:,} B)",
                        name,
                        f"{medians[name]:.2f}",
                        f"{min(r.walls_s):.2f}",
                        f"{max(r.walls_s):.2f}",
                        f"{statistics.median(r.cpus_s):.2f}",
                        ",".join(map(str, sorted(r.exit_codes))),
                        ratio,
                        loads,
                    ]
                )
                if r.exit_codes - {0, 1}:
                    failures.append(f"{name} on {model.name}: {r.last_stderr[-300:]}")

    print(f"Paired wall time, {args.runs} runs per tool and model (A B A B ..., one untimed "
          f"warm-up each), {os.cpu_count()} CPUs")  # fmt: skip
    print(f"edge-prune: python -m edge_prune.cli report MODEL --target {args.target}")
    if mcufit:
        print(f"mcufit:     {mcufit[0]} check MODEL --board {args.mcufit_board}")
    else:
        print(f"mcufit:     NOT RUN: {why_not}")
    print_table(
        ["model", "tool", "wall median s", "min s", "max s", "CPU median s", "exit",
         "edge-prune/mcufit", "load 1/5/15 min before -> after"],
        rows,
    )  # fmt: skip
    print(
        "exit: 0 fits, 1 does not fit (both tools); ratio: median wall time of edge-prune over "
        "that of mcufit on the same model (aim: <= 0.5)."
    )
    print()
    load_before = load()
    floors = paired(floor_commands(mcufit), args.runs)
    print(f"Floor: process start and imports, {args.runs} runs each, in turn "
          f"(load {load_before} -> {load()})")  # fmt: skip
    print_table(
        ["command", "wall median s", "min s", "max s", "CPU median s"],
        [[name, f"{statistics.median(r.walls_s):.2f}", f"{min(r.walls_s):.2f}",
          f"{max(r.walls_s):.2f}", f"{statistics.median(r.cpus_s):.2f}"]
         for name, r in floors.items()],
    )  # fmt: skip
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
