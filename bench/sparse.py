"""Sparse kernels against CMSIS-NN dense int8 and TFLM's reference kernels, in QEMU.

    EDGE_PRUNE_TFLM=DIR .venv/bin/python bench/sparse.py [--samples 2] [--int4] [--out FILE]

The LeNet-300-100-shaped MLP (784-300-100-10, ReLU; random weights, converted to int8 by
edge-prune's converter with random inputs over [0, 1]: instructions, flash and arena do not
depend on what the weights learned) is pruned in its int8 weights by magnitude, unstructured
(smallest |w| per layer) or in 1x4 blocks (smallest mean |w| over 4 consecutive input channels,
as tfmot's ``block_size=(1, 4)`` with AVG pooling), to sparsity 0.5, 0.75, 0.9 and 0.95, then
rewritten with the sparse custom ops (every layer, paying or not). Each model runs through
``edge-prune device``: a TFLM build for the core, outputs compared byte for byte with the host
TFLM interpreter, instructions per inference counted by QEMU (-icount, not cycles), the smallest
arena that works on the device, the code of each group from the link map.

With ``--int4`` the same on INT4 weights: every filter of the int8 model requantized per tensor
to 4 bits (TFLite's INT4 tensors, as the int4-weights candidate stores them), pruned the same
way; the dense baseline is CMSIS-NN's INT4 kernels (``arm_fully_connected_s4``), the sparse
models run ``EDGE_PRUNE_SPARSE_FC_INT4``.

Cores: cortex-m4 (the DSP path: SMLAD; the dense baseline with CMSIS-NN and with TFLM's
reference kernels) and cortex-m3 (no DSP extension: the portable C path, as on a Cortex-M0+,
which has no QEMU machine; dense baseline with TFLM's reference kernels and CMSIS-NN's C path).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.measurement.flatbuffer_pack import pack  # noqa: E402
from edge_prune.measurement.sparse.rewrite import rewrite  # noqa: E402
from edge_prune.tables import table_lines  # noqa: E402

EDGE_PRUNE = [sys.executable, "-m", "edge_prune.cli"]
SPARSITIES = (0.5, 0.75, 0.9, 0.95)
BLOCKS = (1, 4)
M3_TARGET = """\
# Cortex-M3 (bench/sparse.py): the portable C path of the sparse kernels; QEMU mps2-an385.
part = "Cortex-M3 (QEMU mps2-an385)"
board = "QEMU mps2-an385"
core = "Cortex-M3"
clock_hz = 25_000_000
flash_bytes = 4_194_304
ram_bytes = 4_194_304
reserved_flash_bytes = 0
reserved_ram_bytes = 0
source = "bench/sparse.py: the QEMU machine's memory, no board"
tflm_kernels = "{kernels}"
tflm_build_type = "default"
"""


def lenet_int8(path: Path) -> Path:
    from edge_prune.training._tf import keras
    from edge_prune.training.convert import convert

    keras.utils.set_random_seed(0)
    x_in = keras.Input((784,))
    h = keras.layers.Dense(300, activation="relu")(x_in)
    h = keras.layers.Dense(100, activation="relu")(h)
    out = keras.layers.Dense(10)(h)
    model = keras.Model(x_in, out, name="lenet_300_100")
    x = np.random.default_rng(0).random((200, 784), dtype=np.float32)
    convert(model, quantization="int8", representative_data=x).save(path)
    return path


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def prune_int8(data: bytes, sparsity: float, block: int) -> bytes:
    """Zero the smallest-magnitude fraction ``sparsity`` of each FC/CONV filter's blocks (of
    ``block`` consecutive input channels; of 1 where the input channels do not divide)."""
    from edge_prune.measurement.sparse.filter_edit import edit_filter_blocks

    def edit(blocks: np.ndarray) -> None:
        score = np.abs(blocks.astype(np.int32)).mean(axis=2).reshape(-1)
        drop = np.argsort(score, kind="stable")[: round(sparsity * score.size)]
        blocks.reshape(-1, blocks.shape[2])[drop] = 0

    return edit_filter_blocks(data, block, edit)


def to_int4(data: bytes) -> bytes:
    """Every FULLY_CONNECTED / CONV_2D filter requantized per tensor to 4 bits and stored as a
    packed INT4 tensor (zeros stay zeros)."""
    from edge_prune.measurement.int4 import pack as pack_int4

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    kinds = (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in kinds:
                continue
            tensor = subgraph.tensors[op.inputs[1]]
            raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).view(np.int8)
            scales = np.asarray(tensor.quantization.scale, np.float64)
            w = raw.reshape(tensor.shape[0], -1) * scales.reshape(-1, 1)
            scale = float(np.abs(w).max() / 7) or 1.0
            w4 = np.clip(np.round(w / scale), -8, 7).astype(np.int8)
            model.buffers[tensor.buffer].data = np.frombuffer(pack_int4(w4), np.uint8)
            tensor.type = 17  # INT4
            tensor.quantization.scale = [scale]
            tensor.quantization.zeroPoint = [0]
            tensor.quantization.quantizedDimension = 0
    return pack(model)


def device(path: Path, target: str, kernels: str, samples: int, data: Path | None = None) -> dict:
    command = [*EDGE_PRUNE, "device", str(path), "--target", target, "--kernels", kernels,
               "--samples", str(samples), "--format", "json"]  # fmt: skip
    if data is not None:
        command += ["--data", str(data)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:160]}


def models(workdir: Path, int4: bool = False) -> list[tuple[str, float, int, Path]]:
    dense = lenet_int8(workdir / "lenet_int8.tflite")
    out = [("dense int8", 0.0, 0, dense)]
    if int4:
        out = [("dense int4", 0.0, 0, workdir / "lenet_int4.tflite")]
        out[0][3].write_bytes(to_int4(dense.read_bytes()))
    for block in BLOCKS:
        for sparsity in SPARSITIES:
            pruned = prune_int8(dense.read_bytes(), sparsity, block)
            if int4:
                pruned = to_int4(pruned)
            sparse = rewrite(pruned, blocks=(block,), force=True)
            assert len(sparse.sparse_layers) == 3, sparse.layers
            path = workdir / f"lenet_s{int(sparsity * 100)}_b{block}.tflite"
            path.write_bytes(sparse.model)
            out.append(("sparse", sparsity, block, path))
    return out


def run(workdir: Path, samples: int, int4: bool = False) -> list[dict]:
    m3 = {}
    for kernels in ("reference", "cmsis-nn"):
        m3[kernels] = workdir / f"cortex-m3-{kernels}.toml"
        m3[kernels].write_text(M3_TARGET.format(kernels=kernels))
    rows = []
    for label, sparsity, block, path in models(workdir, int4):
        configs = [("cortex-m4", "cortex-m4", "cmsis-nn"), ("cortex-m3", str(m3["cmsis-nn"]),
                   "cmsis-nn")]  # fmt: skip
        if label.startswith("dense"):
            configs += [("cortex-m4", "cortex-m4", "reference"),
                        ("cortex-m3", str(m3["reference"]), "reference")]  # fmt: skip
        for core, target, kernels in configs:
            result = device(path, target, kernels, samples)
            rows.append({"model": label, "sparsity": sparsity, "block": block, "core": core,
                         "kernels": kernels, "flatbuffer_bytes": path.stat().st_size,
                         "result": result})  # fmt: skip
            print(f"  {label} s={sparsity} b={block} {core} {kernels}: "
                  f"{result.get('instructions_per_inference', result.get('error'))}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


def _per_op(result: dict) -> str:
    return " / ".join(f"{n:,}" for _, n in result.get("instructions_per_op", []))


def table(rows: list[dict]) -> list[str]:
    base = {(r["core"], r["kernels"]): r for r in rows if r["model"].startswith("dense")}
    header = ["model", "sparsity", "block", "core", "kernels", "flatbuffer B", "x int8",
              "instructions", "x CMSIS-NN", "x reference", "per layer", "arena min B",
              "sparse code B", "equal host"]  # fmt: skip
    lines = []
    for r in rows:
        res = r["result"]
        if "error" in res:
            lines.append([r["model"], str(r["sparsity"]), str(r["block"]), r["core"],
                          r["kernels"], "-", "-", "-", "-", "-", "-", "-", "-",
                          res["error"]])  # fmt: skip
            continue
        dense = base[(r["core"], "cmsis-nn")]
        ref = base[(r["core"], "reference")]
        ins = res["instructions_per_inference"]
        size = r["flatbuffer_bytes"] / dense["flatbuffer_bytes"]
        lines.append([
            r["model"], f"{r['sparsity']:.2f}", str(r["block"] or "-"), r["core"],
            r["kernels"] + (" + sparse" if r["block"] else ""),
            f"{r['flatbuffer_bytes']:,}", f"{size:.3f}",
            f"{ins:,}", f"{ins / dense['result']['instructions_per_inference']:.3f}",
            f"{ins / ref['result']['instructions_per_inference']:.3f}", _per_op(res),
            f"{res['arena_min_bytes']:,}", f"{res.get('sparse_kernel_flash_bytes', 0):,}",
            "yes" if res["outputs_equal_host"] else "NO",
        ])  # fmt: skip
    return table_lines(header, lines, rule=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument(
        "--int4", action="store_true", help="INT4 weights (dense baseline: CMSIS-NN's s4 kernels)"
    )
    parser.add_argument("--out", help="also write the table to this file (and .json beside it)")
    args = parser.parse_args()
    tree = os.environ.get("EDGE_PRUNE_TFLM")
    if not tree:
        print("set EDGE_PRUNE_TFLM to a TFLM source tree (README 'On the device')")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp), args.samples, args.int4)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"# EDGE_PRUNE_TFLM={tree} .venv/bin/python bench/sparse.py --samples {args.samples}"
        + (" --int4" if args.int4 else ""),
        f"# {stamp}; LeNet-300-100 MLP (784-300-100-10) "
        + ("int8 activations, INT4 weights (per tensor)" if args.int4 else "int8")
        + ", pruned in its weights; "
        "BUILD_TYPE=default (-Os); instructions per inference are QEMU -icount counts, not "
        "cycles; arena: the smallest that works on the device; sparse code: the sparse kernels' "
        "flash from the link map; x CMSIS-NN / x reference (and x int8, flatbuffer): against "
        "the dense model on the same core (int4 with --int4)",
    ]
    text = "\n".join([*head, *table(rows)]) + "\n"
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
