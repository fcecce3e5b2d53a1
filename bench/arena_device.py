"""Arena on this 64-bit host, edge-prune's 32-bit estimate, and a real 32-bit TFLM build.

The 32-bit build is the wasm32 TFLM benchmark that the ``mcufit`` package (0.5.2, PyPI) ships
(``mcufit/wasm/tflm.js``, run by ``mcufit/wasm/run_benchmark.mjs`` under node; it prints TFLM's
"[[ Table ]]: Arena" and "[[ Table ]]: Allocations" tables). mcufit is not a dependency of
edge-prune: install it into a separate virtualenv, once, and point this script at it:

    python3.11 -m venv /tmp/mcufit-venv && /tmp/mcufit-venv/bin/pip install mcufit==0.5.2
    PYTHONPATH=. .venv/bin/python bench/arena_device.py [--mcufit-venv /tmp/mcufit-venv] \\
        [MODEL.tflite ...]        # default: the runnable models in tests/data

Needs ``node`` on PATH. Prints, per model, one row per arena part (total, head, tail and each
allocation category) with the host figure, edge-prune's 32-bit estimate, the wasm32 figure,
and estimate minus wasm32.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge_prune.measurement import tflm
from edge_prune.tables import print_table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ("cnn_int8", "mlp_int8_lenet", "mlp_float")
# wasm benchmark category -> TFLM RecordingMicroAllocator category
CATEGORIES = {
    "Eval tensor data": "TfLiteEvalTensor data",
    "Persistent tensor data": "Persistent TfLiteTensor data",
    "Persistent quantization data": "Persistent TfLiteTensor quantization data",
    "Persistent buffer data": "Persistent buffer data",
    "Tensor variable buffer data": "TfLiteTensor variable buffer data",
    "Node and registration array": "NodeAndRegistration struct",
    "Operation data": "Operator runtime data",
}
_ARENA_ROW = re.compile(r"^\s*(Total|NonPersistent|Persistent)\s*\|\s*(\d+)", re.M)
_ALLOCATION_ROW = re.compile(
    r"^\s*([A-Za-z ]+?)\s*\|\s*\d+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)", re.M
)


def wasm_runner(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages/mcufit/wasm/run_benchmark.mjs"))
    if not found:
        sys.exit(f"{venv}: no mcufit/wasm/run_benchmark.mjs; install mcufit==0.5.2 there")
    return found[0]


def wasm32_arena(runner: Path, model: Path) -> dict:
    """{'total','head','tail': bytes, 'categories': {tflm name: (used, count)}} from wasm32."""
    out = subprocess.run(
        ["node", str(runner), str(model)], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    arena_text = out.split("[[ Table ]]: Arena", 1)[1].split("[[ Table ]]", 1)[0]
    arena = {name: int(n) for name, n in _ARENA_ROW.findall(arena_text)}
    allocations = out.split("[[ Table ]]: Allocations", 1)[1]
    categories = {
        CATEGORIES[name]: (int(used), int(count))
        for name, used, _, count in _ALLOCATION_ROW.findall(allocations)
        if name in CATEGORIES
    }
    return {
        "total": arena["Total"],
        "head": arena["NonPersistent"],
        "tail": arena["Persistent"],
        "categories": categories,
    }


def rows_for(model: Path, runner: Path) -> list[list[object]]:
    host = tflm.measure_arena(model)
    wasm = wasm32_arena(runner, model)
    # a firmware MicroInterpreter's head + tail on a 32-bit Cortex-M (edge_prune.measurement.tflm)
    recorded_device_total = host.recorded_head_bytes + host.device_tail_bytes
    rows = [
        ["one-run arena_bytes", host.arena_bytes, host.device_total_bytes, "", ""],
        _row("recorded total", host.recorded_total_bytes, recorded_device_total, wasm["total"]),
        _row("head", host.recorded_head_bytes, host.recorded_head_bytes, wasm["head"]),
        _row("tail", host.recorded_tail_bytes, host.device_tail_bytes, wasm["tail"]),
    ]
    for c in host.categories:
        used, count = wasm["categories"].get(c.name, (0, 0))
        estimate = c.used_bytes - c.device_saving_bytes()
        rows.append(_row(f"  {c.name} ({c.count} / {count})", c.used_bytes, estimate, used))
    return rows


def _row(what: str, host: int, estimate: int, wasm: int) -> list[object]:
    return [what, host, estimate, wasm, estimate - wasm]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--mcufit-venv", type=Path, default=Path("/tmp/mcufit-venv"))
    args = parser.parse_args(argv)
    if shutil.which("node") is None:
        sys.exit("node is not on PATH (the wasm32 TFLM build runs under node)")
    runner = wasm_runner(args.mcufit_venv)
    models = args.models or [REPO / "tests" / "data" / f"{m}.tflite" for m in DEFAULT_MODELS]
    header = [
        "bytes (category: host count / wasm32 count)",
        "host 64-bit",
        "32-bit estimate",
        "wasm32 TFLM",
        "estimate - wasm32",
    ]
    for model in models:
        print(f"\n{model.name}")
        print_table(header, rows_for(model, runner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
