"""Run every benchmark in turn and print its table: what ``make bench`` runs.

    PYTHONPATH=. .venv/bin/python bench/run_all.py [--quick] [--only compression,structured]
        [--mcufit-venv /tmp/mcufit-venv]

Scripts, in order (one line each on what they print in ``SCRIPTS`` below and in
bench/README.md). ``--quick`` passes each its quick setting (fewer epochs, runs or cases): for a
smoke test, not for the figures. A script whose requirements are missing (arena_device.py needs
mcufit in ``--mcufit-venv`` and ``node`` on PATH) is skipped with the reason printed. Each
script runs with this tree first on ``PYTHONPATH``. Prints the date, the machine and its load
first: timings are only comparable on a quiet machine. Exit status: 0 when every script that
ran succeeded, else 1 (the others still run).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass(frozen=True)
class Script:
    """One benchmark: its file, arguments (full run, --quick) and what it prints."""

    file: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    prints: str
    needs_mcufit: bool = False


SCRIPTS = (
    Script("compression.py", (), ("--quick",),
           "per model (CNN, LeNet-300-100) and build candidate: flatbuffer bytes, ratio to "
           "float32, runs on TFLM, TFLM accuracy, arena"),
    Script("structured.py", (), ("--quick",),
           "params, MACs, flash, arena, TFLM accuracy, latency estimate: dense, 50% of channels "
           "removed, unstructured only, both"),
    Script("codecs.py", (), ("--quick",),
           "per codec (LUT, pruning bitmask, Huffman, per-tensor choice, diet): flash, TFLM "
           "accuracy, arena on a CNN and an MLP"),
    Script("families.py", (), ("--epochs", "8"),
           "Conv1D, LSTM, BatchNorm DS-CNN, autoencoder through edge-prune model: exit, "
           "deployable, bytes, TFLM metric"),
    Script("int4.py", (), ("--models", "mlp"),
           "per model (CNN, LeNet-300-100-shaped MLP, DS-CNN): int8 vs int4 weights (post-training "
           "and QAT): flatbuffer, arena, TFLM accuracy, time figure; --device adds QEMU counts"),
    Script("search.py", ("targets", "--trials", "12", "--jobs", "1"),
           ("targets", "--trials", "4", "--jobs", "1", "--targets", "cortex-m4"),
           "edge-prune search per target: wall time, points, the chosen point"),
    Script("device_tables.py", ("--check",),
           ("--check", "--config", "cortex-m4+fp:cmsis-nn:default"),
           "TFLM runtime tables vs whole-firmware links of real models' op sets (needs --tflm)"),
    Script("arena_device.py", (), (),
           "arena per part: 64-bit host, edge-prune's 32-bit estimate, a real wasm32 TFLM build",
           needs_mcufit=True),
    Script("report_speed.py", ("--runs", "7"), ("--runs", "2"),
           "paired wall time of edge-prune report vs mcufit check per model, ratio of medians",
           needs_mcufit=True),
    Script("make_model.py", ("--runs", "3"), ("--quick",),
           "wall time of edge-prune model, TFLM children per run, accuracy, time per stage"),
    Script("prune_cost.py", ("--epochs", "6"), ("--quick",),
           "training time per epoch, plain Keras vs tfmot pruning wrappers, CNN and MLP"),
    Script("fuzz_report.py", ("--cases", "300"), ("--cases", "30"),
           "how mutated .tflite files end in edge-prune report: report, clean error, crash, hang"),
)  # fmt: skip


def mcufit_missing(venv: Path) -> str | None:
    """Why mcufit's wasm32 TFLM cannot run here, or None when it can."""
    if not (venv / "bin" / "mcufit").is_file():
        install = f"python3.11 -m venv {venv} && {venv}/bin/pip install mcufit==0.5.2"
        return f"no mcufit in {venv} ({install})"
    if shutil.which("node") is None:
        return "node not on PATH (apt-get install nodejs)"
    return None


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
    parser.add_argument("--mcufit-venv", type=Path, default=Path("/tmp/mcufit-venv"))
    args = parser.parse_args()
    names = {s.file.removesuffix(".py") for s in SCRIPTS}
    wanted = set(args.only.split(",")) if args.only else names
    if wanted - names:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(wanted - names))}")

    print(f"edge-prune benchmarks, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}; Python {platform.python_version()}")
    print(f"load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
          + ("; --quick: rough figures" if args.quick else ""))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
           os.environ.get("PYTHONPATH")]))}  # fmt: skip
    failed, skipped = [], []
    for script in SCRIPTS:
        if script.file.removesuffix(".py") not in wanted:
            continue
        arguments = list(script.quick if args.quick else script.full)
        print(f"\n## {' '.join([script.file, *arguments])}: {script.prints}\n", flush=True)
        if script.needs_mcufit:
            missing = mcufit_missing(args.mcufit_venv)
            if missing and script.file == "arena_device.py":
                print(f"SKIPPED: {missing}")
                skipped.append(script.file)
                continue
            arguments += ["--mcufit-venv", str(args.mcufit_venv)]
        start = time.perf_counter()
        command = [sys.executable, str(BENCH / script.file), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            failed.append(script.file)
            print(f"FAILED (exit {done.returncode}); last lines of its stderr:")
            print("\n".join(done.stderr.strip().splitlines()[-10:]))
        print(f"({script.file}: {time.perf_counter() - start:.0f} s)", flush=True)
    if skipped:
        print(f"\nskipped: {', '.join(skipped)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
