"""Sparse kernels on more models and cores: dense int8 against the sparse rewrite, in QEMU.

    EDGE_PRUNE_TFLM=DIR PYTHONPATH=. .venv/bin/python bench/sparse_models.py [--samples 2]
        [--cnn-build DIR] [--cores cortex-m4,cortex-m7,cortex-m55,cortex-m3] [--out FILE]

Models:

- the default digits CNN as ``edge-prune model --target cortex-m4`` builds it (into
  ``--cnn-build DIR``, or a temporary directory; a DIR that already holds a cortex-m4 build is
  reused): ``model_int8.tflite`` as the dense model, ``model_pruned.tflite`` (the deployed
  ``int8-pruned``: the tool's own pruning, block choice and sparse plan) as the sparse one, its
  held-out digits as the samples;
- ``tests/data/ds_cnn_int8.tflite`` (DS-CNN: 4 CONV_2D, 1 FULLY_CONNECTED, 2 depthwise),
  ``tests/data/conv1d_int8.tflite`` (Conv1D sensor model: 2 CONV_2D, 2 FULLY_CONNECTED) and
  TFLM's micro_speech example (``micro_speech_quantized.tflite``: 1 FULLY_CONNECTED after a
  depthwise conv), each pruned in its int8 weights by magnitude (bench/sparse.py's
  ``prune_int8``) to sparsity 0.5, 0.75 and 0.9, unstructured (blocks of 1) or in blocks of 4
  input channels (blocks of 1 where a layer's input channels are not a multiple of 4), then
  rewritten with the sparse custom ops on every FULLY_CONNECTED / CONV_2D (``force``; depthwise
  convolutions stay TFLM's). Their samples: seeded random inputs.

Each model runs through ``edge-prune device`` (outputs compared byte for byte with the host TFLM
interpreter, instructions per inference counted by QEMU, the smallest arena that works on the
device, code per group from the link map) on: cortex-m4 (every model; dense baseline with
CMSIS-NN and with TFLM's reference kernels), cortex-m7 and cortex-m55 (CMSIS-NN; the default
CNN and sparsity 0.9 in blocks of 4), cortex-m3 (no DSP extension: the portable C path, with
CMSIS-NN's C path and with reference kernels as dense baselines; same models as M7/M55);
``--cores cortex-m33`` adds cortex-m33 (CMSIS-NN, same models; its TFLM build is not in the
default set). The sparse models run with the same kernel set for their dense operators.
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
sys.path.insert(0, str(REPO / "bench"))

from sparse import EDGE_PRUNE, M3_TARGET, device, prune_int8  # noqa: E402

from edge_prune.measurement.sparse import format as fmt  # noqa: E402
from edge_prune.measurement.sparse.rewrite import rewrite  # noqa: E402
from edge_prune.tables import table_lines  # noqa: E402

SPARSITIES = (0.5, 0.75, 0.9)
BLOCKS = (1, 4)
# (sparsity, block) run on every core; the others on cortex-m4 only.
EVERY_CORE = (0.9, 4)
DATA = REPO / "tests" / "data"
PRUNED_MODELS = {
    "DS-CNN": lambda tflm: DATA / "ds_cnn_int8.tflite",
    "Conv1D": lambda tflm: DATA / "conv1d_int8.tflite",
    "micro_speech": lambda tflm: (
        Path(tflm) / "tensorflow/lite/micro/examples/micro_speech/models"
        "/micro_speech_quantized.tflite"
    ),
}
CNN = "digits CNN"
# (core label, target, kernels, dense only)
M4 = [("cortex-m4", "cortex-m4", "cmsis-nn", False), ("cortex-m4", "cortex-m4", "reference", True)]
OTHER_CORES = [
    ("cortex-m7", "cortex-m7", "cmsis-nn", False),
    ("cortex-m55", "cortex-m55", "cmsis-nn", False),
    ("cortex-m3", "{m3_cmsis}", "cmsis-nn", False),
    ("cortex-m3", "{m3_reference}", "reference", True),
    ("cortex-m33", "cortex-m33", "cmsis-nn", False),
]
CORES = ("cortex-m4", "cortex-m7", "cortex-m55", "cortex-m3", "cortex-m33")
DEFAULT_CORES = CORES[:4]


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def layers(data: bytes) -> tuple[str, float]:
    """Each FULLY_CONNECTED / CONV_2D in order: ``d`` (dense) or ``b1`` / ``b4`` (sparse, its
    block); and the fraction of zeros over their weights."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    kinds = (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D)
    sparse = set(fmt.CUSTOM_OPS.values())
    out, zeros, total = [], 0, 0
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else None
            if custom in sparse:
                options = fmt.Options.unpack(bytes(np.asarray(op.customOptions, np.uint8)))
                out.append(f"b{options.block}")
                values = subgraph.tensors[op.inputs[1]]
                total += int(np.prod(options.filter_shape))
                stored = np.asarray(model.buffers[values.buffer].data, np.uint8)
                zeros += int(np.prod(options.filter_shape)) - int(np.count_nonzero(stored))
            elif max(code.builtinCode, code.deprecatedBuiltinCode) in kinds:
                out.append("d")
                raw = np.asarray(model.buffers[subgraph.tensors[op.inputs[1]].buffer].data)
                total += raw.size
                zeros += int(np.count_nonzero(raw == 0))
    return ",".join(out), zeros / max(total, 1)


def cnn_build(out: Path) -> Path:
    """``edge-prune model --target cortex-m4 --out DIR``'s cortex-m4 directory (built once)."""
    build = out / "cortex-m4"
    if not (build / "model_pruned.tflite").is_file():
        command = [*EDGE_PRUNE, "model", "--target", "cortex-m4", "--out", str(out)]
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return build


def models(workdir: Path, tflm: str, cnn: Path) -> list[dict]:
    """Every model variant: name, sparsity (0: dense), block (0: dense), path, samples."""
    build = cnn_build(cnn)
    heldout = build / "heldout.npz"
    out = [
        {"model": CNN, "sparsity": 0.0, "block": 0, "path": build / "model_int8.tflite",
         "data": heldout},
        {"model": CNN, "sparsity": -1.0, "block": -1, "path": build / "model_pruned.tflite",
         "data": heldout},
    ]  # fmt: skip
    for name, where in PRUNED_MODELS.items():
        dense = where(tflm)
        out.append({"model": name, "sparsity": 0.0, "block": 0, "path": dense, "data": None})
        for block in BLOCKS:
            for sparsity in SPARSITIES:
                pruned = prune_int8(dense.read_bytes(), sparsity, block)
                sparse = rewrite(pruned, blocks=tuple(sorted({1, block})), force=True)
                path = workdir / f"{name}_s{int(sparsity * 100)}_b{block}.tflite"
                path.write_bytes(sparse.model)
                out.append({"model": name, "sparsity": sparsity, "block": block, "path": path,
                            "data": None})  # fmt: skip
    for variant in out:
        variant["layers"], variant["zeros"] = layers(variant["path"].read_bytes())
        variant["flatbuffer_bytes"] = variant["path"].stat().st_size
    return out


def _configs(
    variant: dict, m3: dict[str, Path], cores: tuple[str, ...]
) -> list[tuple[str, str, str]]:
    dense = variant["block"] == 0
    every = variant["model"] == CNN or (variant["sparsity"], variant["block"]) == EVERY_CORE
    chosen = list(M4) + (list(OTHER_CORES) if dense or every else [])
    return [
        (core, target.format(m3_cmsis=m3["cmsis-nn"], m3_reference=m3["reference"]), kernels)
        for core, target, kernels, dense_only in chosen
        if (dense or not dense_only) and core in cores
    ]


def run(workdir: Path, tflm: str, cnn: Path, samples: int, cores: tuple[str, ...]) -> list[dict]:
    m3 = {}
    for kernels in ("reference", "cmsis-nn"):
        m3[kernels] = workdir / f"cortex-m3-{kernels}.toml"
        m3[kernels].write_text(M3_TARGET.format(kernels=kernels))
    rows = []
    variants = models(workdir, tflm, cnn)
    # Dense models first on each core, so a core's baselines are measured before its sparse runs.
    variants.sort(key=lambda v: v["block"] != 0)
    for variant in variants:
        for core, target, kernels in _configs(variant, m3, cores):
            result = device(variant["path"], target, kernels, samples, variant["data"])
            row = {k: v for k, v in variant.items() if k not in ("path", "data")}
            row.update(
                file=variant["path"].name, core=core, kernels=kernels, result=result,
                samples_from="held-out digits" if variant["data"] else "seeded random",
            )  # fmt: skip
            rows.append(row)
            count = result.get("instructions_per_inference", result.get("error"))
            print(f"  {variant['model']} s={variant['sparsity']} b={variant['block']} {core} "
                  f"{kernels}: {count} equal={result.get('outputs_equal_host')}",
                  file=sys.stderr, flush=True)  # fmt: skip
    order = {name: i for i, name in enumerate([CNN, *PRUNED_MODELS])}
    rank = {core: i for i, core in enumerate(CORES)}
    rows.sort(key=lambda r: (order[r["model"]], rank[r["core"]], r["block"] != 0,
                             r["block"], r["sparsity"], r["kernels"] != "cmsis-nn"))  # fmt: skip
    return rows


def _ratio(value: int | None, base: dict | None) -> str:
    dense = None if base is None else base["result"].get("instructions_per_inference")
    if value is None or not dense:
        return "-"
    return f"{value / dense:.3f}"


def _equal(res: dict) -> str:
    if res.get("outputs_equal_host"):
        return "yes"
    return "NO (" + (res.get("problem") or "outputs differ")[:60] + ")"


def table(rows: list[dict]) -> list[str]:
    base = {(r["model"], r["core"], r["kernels"]): r for r in rows if r["block"] == 0}
    int8 = {r["model"]: r for r in rows if r["block"] == 0}
    header = ["model", "sparsity", "block", "layers", "core", "kernels", "flatbuffer B",
              "x int8", "instructions", "x CMSIS-NN", "x reference", "arena min B",
              "runtime code B", "sparse code B", "equal host"]  # fmt: skip
    lines = []
    for r in rows:
        res = r["result"]
        if r["block"] < 0:  # the tool's own build
            sparsity, block = f"{r['zeros']:.2f} (build)", "build"
        elif r["block"] == 0:
            sparsity, block = f"{r['zeros']:.2f}" if r["zeros"] >= 0.005 else "0", "-"
        else:
            sparsity, block = f"{r['sparsity']:.2f}", str(r["block"])
        kernels = r["kernels"] + (" + sparse" if r["block"] else "")
        size = f"{r['flatbuffer_bytes'] / int8[r['model']]['flatbuffer_bytes']:.3f}"
        head = [r["model"], sparsity, block, r["layers"], r["core"], kernels,
                f"{r['flatbuffer_bytes']:,}", size]  # fmt: skip
        if "error" in res:
            lines.append([*head, "-", "-", "-", "-", "-", "-", f"NO ({res['error'][:60]})"])
            continue
        ins = res.get("instructions_per_inference")
        lines.append([
            *head, "-" if ins is None else f"{ins:,}",
            _ratio(ins, base.get((r["model"], r["core"], "cmsis-nn"))),
            _ratio(ins, base.get((r["model"], r["core"], "reference"))),
            f"{res['arena_min_bytes']:,}" if res.get("arena_min_bytes") else "-",
            f"{res['runtime_flash_bytes']:,}", f"{res.get('sparse_kernel_flash_bytes', 0):,}",
            _equal(res),
        ])  # fmt: skip
    return table_lines(header, lines, rule=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument(
        "--cnn-build",
        help="edge-prune model --out DIR for the default CNN (reused when it holds a cortex-m4 "
        "build; default: a temporary one)",
    )
    parser.add_argument(
        "--cores",
        default=",".join(DEFAULT_CORES),
        help=f"comma-separated, of {', '.join(CORES)} (default: all but cortex-m33)",
    )
    parser.add_argument("--out", help="also write the table to this file (and .json beside it)")
    args = parser.parse_args()
    cores = tuple(args.cores.split(","))
    if not set(cores) <= set(CORES):
        parser.error(f"--cores: one of {', '.join(CORES)}")
    tree = os.environ.get("EDGE_PRUNE_TFLM")
    if not tree:
        print("set EDGE_PRUNE_TFLM to a TFLM source tree (README 'On the device')")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cnn = Path(args.cnn_build) if args.cnn_build else Path(tmp) / "cnn"
        rows = run(Path(tmp), tree, cnn, args.samples, cores)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = render(rows, tree, " ".join(sys.argv[1:]), stamp)
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    return 0


def render(rows: list[dict], tree: str, command: str, stamp: str) -> str:
    """The table with its header: the command, what the columns count, and why a core's
    instructions are missing."""
    head = [
        f"# EDGE_PRUNE_TFLM={tree} PYTHONPATH=. .venv/bin/python bench/sparse_models.py " + command,
        f"# {stamp}; int8 models, dense against the sparse custom ops; BUILD_TYPE=default (-Os); "
        "instructions per inference are QEMU -icount counts, not cycles; arena: the smallest "
        "that works on the device; runtime code: TFLM objects, toolchain libraries and the "
        "sparse kernels from the link map; sparse code: the sparse kernels' part of it; "
        "x int8: against the dense int8 flatbuffer; x CMSIS-NN / x reference: against the "
        "dense int8 model on the same core with those kernels",
        "# layers: each FULLY_CONNECTED / CONV_2D in order, d = dense, b1 / b4 = sparse in "
        "blocks of 1 / 4 input channels; sparsity: the target of the magnitude pruning, or the "
        "zeros of the FC/CONV weights (dense rows, the build's own pruned model); samples: the "
        "CNN's held-out digits, seeded random inputs for the others; cortex-m3 runs "
        "on QEMU mps2-an385 (bench/sparse.py's target file)",
    ]
    missing = {}
    for r in rows:
        reason = r["result"].get("instructions_missing")
        if reason and r["result"].get("instructions_per_inference") is None:
            missing.setdefault(r["core"], reason)
    head += [f"# {core}: no instruction count: {why}" for core, why in missing.items()]
    return "\n".join([*head, *table(rows)]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
