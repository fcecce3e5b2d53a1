"""The verdict's arena against the smallest arena that works on the device, per model and core.

For each model x target x kernel set, runs ``edge-prune device`` (TFLM built for the target's
core, QEMU bisects the smallest arena with which a MicroInterpreter allocates and gives the
host's outputs) and records it beside the arena edge-prune's verdict uses for that core and
kernel set (:func:`edge_prune.measurement.footprint.target_arena`) and the figure before it was
derived (the reference-kernel 32-bit figure plus a flat 372 B for CMSIS-NN). Writes
``tests/data/cmsis_arena_device.json``, which ``tests/test_cmsis_nn_scratch.py`` holds the
derivation against.

    EDGE_PRUNE_TFLM=/path/to/tflite-micro PYTHONPATH=. .venv/bin/python \\
        bench/cmsis_arena_device.py [--only NAME ...] [--out FILE]

Models: tests/data (names without .tflite; ``default_m4_int8`` / ``default_m4_decode`` are
``model.tflite`` and ``model_compressed_per_tensor.tflite`` of ``make model TARGET=cortex-m4``,
2026-12-07) and TFLM's example models (TFLM_MODELS, paths in the tree).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "cmsis_arena_device.json"
FLAT_MARGIN_BEFORE = {"reference": 0, "cmsis-nn": 372}  # what the verdict added before
TFLM_MODELS = {
    "hello_world_int8": "tensorflow/lite/micro/examples/hello_world/models/hello_world_int8.tflite",
    "micro_speech": (
        "tensorflow/lite/micro/examples/micro_speech/models/micro_speech_quantized.tflite"
    ),
    "person_detect": "tensorflow/lite/micro/models/person_detect.tflite",
    "trained_lstm_int8": "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite",
}
LOCAL_MODELS = (
    "cnn_int8",
    "codecs_cnn_per_channel",
    "mlp_int8_lenet",
    "mlp_float",
    "resnet8_int8",
    "ds_cnn_int8",
    "conv1d_int8",
    "default_m4_int8",
    "default_m4_decode",
    "gru_int8",
)
# (target, kernels) -> models
RUNS = {
    ("cortex-m4", "cmsis-nn"): (*LOCAL_MODELS, *TFLM_MODELS),
    ("cortex-m55", "cmsis-nn"): (
        "cnn_int8",
        "mlp_int8_lenet",
        "resnet8_int8",
        "ds_cnn_int8",
        "conv1d_int8",
        "hello_world_int8",
        "micro_speech",
    ),
    ("cortex-m7", "cmsis-nn"): ("cnn_int8", "ds_cnn_int8", "resnet8_int8"),
    ("cortex-m7", "reference"): ("cnn_int8", "resnet8_int8", "ds_cnn_int8", "hello_world_int8"),
    ("cortex-m4", "reference"): ("cnn_int8", "resnet8_int8", "gru_int8"),
}


def model_path(name: str, tree: Path) -> Path:
    if name in TFLM_MODELS:
        return tree / TFLM_MODELS[name]
    return ROOT / "tests" / "data" / f"{name}.tflite"


def figures(path: Path, target) -> dict:
    from edge_prune.measurement import footprint

    fp = footprint.measure(path)
    arena, _ = footprint.target_arena(fp, target)
    return {
        "derived_bytes": arena,
        "reference_32bit_bytes": fp.arena_bytes,
        "before_bytes": fp.arena_bytes + FLAT_MARGIN_BEFORE[target.tflm_kernels],
    }


def measure_one(name: str, target_name: str, kernels: str, tree) -> dict:
    from edge_prune.measurement.device.measure import measure
    from edge_prune.measurement.targets import load_target

    target = replace(load_target(target_name), tflm_kernels=kernels)
    path = model_path(name, tree.path)
    start = time.monotonic()
    result = measure(path, target, tree, kernels=kernels, samples=1)
    return {
        "model": name,
        "target": target_name,
        "arch": result.config.core,
        "kernels": kernels,
        "device_min_bytes": result.arena_min_bytes,
        "arena_used_bytes": result.arena_used_bytes,
        "outputs_equal_host": result.outputs_equal_host,
        "outputs_within_tolerance": result.outputs_within_tolerance,
        **figures(path, target),
        "seconds": round(time.monotonic() - start),
    }


def main() -> int:
    from edge_prune.measurement.device.toolchain import TflmTree

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names to (re)measure")
    parser.add_argument("--config", nargs="*", help="TARGET:KERNELS pairs to run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print the recorded figures")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())["runs"]))
        return 0
    tree = TflmTree.from_path(os.environ.get("EDGE_PRUNE_TFLM"))
    rows = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    for (target, kernels), models in RUNS.items():
        if args.config and f"{target}:{kernels}" not in args.config:
            continue
        for name in models:
            if args.only and name not in args.only:
                continue
            row = measure_one(name, target, kernels, tree)
            print(json.dumps(row), flush=True)
            key = (name, target, kernels)
            rows = [r for r in rows if (r["model"], r["target"], r["kernels"]) != key] + [row]
            write(args.out, rows, tree.commit)
    return 0


def table(rows: list[dict]) -> str:
    """Markdown: device minimum vs the figure before (verdict, and --emit-c's model_data.h,
    which took the reference figure) and after (one figure: verdict = model_data.h)."""
    lines = [
        "| model | target (core) | kernels | device min B | before: verdict / --emit-c B "
        "| after: verdict = --emit-c B | after - min |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["kernels"], r["target"], r["model"])):
        low, high = r["device_min_bytes"], r["derived_bytes"]
        before = r["before_bytes"]
        lines.append(
            f"| {r['model']} | {r['target']} ({r['arch']}) | {r['kernels']} | {low:,} | "
            f"{_flag(before, low)} / {_flag(r['reference_32bit_bytes'], low)} | {high:,} | "
            f"+{high - low} ({100 * (high - low) / low:.1f}%) |"
        )
    return "\n".join(lines)


def _flag(figure: int, device_min: int) -> str:
    return f"{figure:,}" + (" (too small)" if figure < device_min else "")


def write(path: Path, rows: list[dict], commit: str) -> None:
    rows = sorted(rows, key=lambda r: (r["target"], r["kernels"], r["model"]))
    doc = {
        "what": "smallest working arena in QEMU (edge-prune device, 1 sample) vs the verdict's "
        "arena for that core and kernel set; written by bench/cmsis_arena_device.py",
        "tflm_commit": commit,
        "runs": rows,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
