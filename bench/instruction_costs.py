"""Calibrate the per-operator instruction costs in edge_prune/data/tflm_instructions.json.

Runs models on QEMU with ``edge-prune device`` (:func:`edge_prune.measurement.device.measure`,
default build type: TFLM's interpreter calls the profiler per operator), pairs each operator's
instructions with its work (:func:`edge_prune.measurement.instructions.operator_work`: MACs, or
elements), fits per op and input type (and per DECODE decoder) a cost per call and per unit of
work, and prints, per model, the measured instructions per inference against the fitted estimate.

Models: the committed test fixtures, TFLM's example models in the tree, and compressed
variants of the codec fixtures (one per decoder: LUT, Huffman, pruning bitmask).

    python bench/instruction_costs.py --tflm DIR [--target cortex-m4 ...] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.errors import EdgePruneError  # noqa: E402
from edge_prune.measurement import device, instructions  # noqa: E402
from edge_prune.measurement.device.measure import measure  # noqa: E402
from edge_prune.measurement.runtime_tables import config_key  # noqa: E402
from edge_prune.measurement.targets import load_target  # noqa: E402

FIXTURES = ("cnn_int8", "mlp_float", "mlp_int8_lenet_trained", "codecs_cnn_per_tensor")
EXAMPLES = (
    "hello_world/models/hello_world_int8.tflite",
    "hello_world/models/hello_world_float.tflite",
    "micro_speech/models/micro_speech_quantized.tflite",
    "mnist_lstm/trained_lstm_int8.tflite",
)


def decoders() -> dict[int, str]:
    """Decode type (DECODE metadata byte 0) -> codec name, for every registered codec."""
    from edge_prune.measurement.codecs.registry import CODECS

    return {codec.decode_type: name for name, codec in CODECS.items()}


def models(tree, workdir: Path, builds: list[Path]) -> list[Path]:
    found = [REPO / "tests" / "data" / f"{name}.tflite" for name in FIXTURES]
    for build in builds:  # edge-prune build directories: every candidate TFLM runs
        found += [p for p in sorted(build.glob("model_*.tflite")) if "densify" not in p.name]
    examples = Path(tree.path) / "tensorflow" / "lite" / "micro" / "examples"
    found += [examples / p for p in EXAMPLES if (examples / p).is_file()]
    return found + compressed_models(workdir)


def compressed_models(workdir: Path) -> list[Path]:
    """The per-tensor codec fixture compressed with each decoder alone (for LUT, its int8
    weights first put on 16 levels: the timing, not the accuracy, is calibrated)."""
    from edge_prune.measurement.codecs.per_tensor import compress_for_mcu

    source = (REPO / "tests" / "data" / "codecs_cnn_per_tensor.tflite").read_bytes()
    paths = []
    for codec in decoders().values():
        model = sixteen_levels(source) if codec == "lut" else source
        result = compress_for_mcu(model, codecs=(codec,), min_tensor_bytes=64)
        if not result.compressed:
            continue
        path = workdir / f"codecs_cnn_{codec}.tflite"
        path.write_bytes(result.tflite_bytes)
        paths.append(path)
    return paths


def sixteen_levels(model: bytes) -> bytes:
    import numpy as np
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    editable = model_editor.read(model)
    for subgraph in editable.subgraphs:
        for tensor in subgraph.tensors:
            data = tensor.buffer.data if tensor.buffer is not None else b""
            if len(data) >= 64 and tensor.dtype == 9:  # INT8 weights
                values = np.frombuffer(data, dtype=np.int8).astype(np.int16)
                levels = np.clip(np.round(values / 17) * 17, -128, 127).astype(np.int8)
                tensor.buffer.data = levels.tobytes()
    # model_editor.build() of the pinned wheel writes no file identifier: pack it again
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    from edge_prune.measurement.codecs import _tflm

    return _tflm.pack(schema.ModelT.InitFromPackedBuf(bytes(editable.build()), 0))


def samples_of(model: Path, result) -> list[tuple[str, int, float]]:
    """(cost key, work, instructions) per operator of one profiled inference."""
    calls = instructions.operator_work(model.read_bytes())
    profile = result.instructions_per_op
    if len(profile) != len(calls):
        return []  # control flow or a profile cut short: no pairing
    rows = []
    for (_, count), op_calls in zip(profile, calls, strict=True):
        keys = {c.key for c in op_calls}
        if len(keys) == 1:
            work = sum(c.work for c in op_calls)
            rows.append((op_calls[0].key, work, float(count), sum(c.outputs for c in op_calls)))
    return rows


def calibrate(tree, target_name: str, workdir: Path, builds, progress) -> tuple[str, dict, list]:
    target = load_target(target_name)
    samples, per_model = [], []
    for model in models(tree, workdir, builds):
        try:
            result = measure(model, target, tree, samples=2, build_type="default")
        except EdgePruneError as e:
            progress(f"  {model.name}: not measured: {' '.join(str(e).split())[:160]}")
            continue
        if result.problem or not result.instructions_per_inference:
            progress(f"  {model.name}: left out: {result.problem or 'no instruction count'}")
            continue
        rows = samples_of(model, result)
        if rows:
            # what Invoke() spends outside the operators (graph walk, temp resets)
            outside = result.instructions_per_inference - sum(
                n for _, n in result.instructions_per_op
            )
            rows.append((instructions.INVOKE, 1, float(max(outside, 0)), 0))
        progress(
            f"  {model.name}: {result.instructions_per_inference or 0:,} instructions, "
            f"{len(rows)} operators profiled, outputs equal host: {result.outputs_equal_host}"
        )
        samples += rows
        per_model.append((model, result))
    return refit(
        target, samples, [(m, r.instructions_per_inference) for m, r in per_model], progress
    )


def refit(target, samples: list, measured: list, progress) -> tuple[str, dict, list, list]:
    """Fit the costs on profiled samples and compare with each model's measured total."""
    costs = instructions.fit_costs(samples)
    outside = [c for k, _, c, *_ in samples if k == instructions.INVOKE]
    if outside:  # the median: a few runs have timer-granularity outliers
        costs[instructions.INVOKE] = (float(np.median(outside)), 0.0, 0.0)
    key = config_key(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    model_costs = instructions.CostModel(
        key,
        {k: v[0] for k, v in costs.items()},
        {k: v[1] for k, v in costs.items()},
        "calibration run",
        {k: v[2] for k, v in costs.items()},
    )
    table = []
    for model, count in measured:
        estimate = model_costs.estimate(instructions.operator_work(Path(model).read_bytes()))
        if count:
            error = 100 * (estimate.total - count) / count
            table.append((str(model), count, estimate.total, error))
            progress(f"  {Path(model).name}: measured {count:,}, estimate {estimate.total:,} "
                     f"({error:+.1f}%)")  # fmt: skip
    return key, costs, table, samples


def refit_stored(tree, name: str, workdir: Path, builds, existing: dict, progress):
    """:func:`refit` on the samples and measured totals the cost file already holds."""
    target = load_target(name)
    key = config_key(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    entry = existing["configs"][key]
    paths = {p.name: p for p in models(tree, workdir, builds)}
    measured = [(paths[m["model"]], m["measured"]) for m in entry["models"] if m["model"] in paths]
    samples = [tuple(row) for row in entry["samples"]]
    return refit(target, samples, measured, progress)


def write(data: dict) -> Path:
    path = instructions.COSTS_PATH
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as f:
        f.write(text)
    os.replace(f.name, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm", default=os.environ.get("EDGE_PRUNE_TFLM"))
    parser.add_argument("--target", action="append", help="targets to calibrate (cortex-m4)")
    parser.add_argument(
        "--build",
        action="append",
        type=Path,
        default=[],
        help="an edge-prune build directory whose candidates to run too",
    )
    parser.add_argument("--write", action="store_true", help="write the shipped cost file")
    parser.add_argument(
        "--refit", action="store_true", help="fit again on the samples the cost file keeps"
    )
    args = parser.parse_args(argv)
    tree = device.TflmTree.from_path(args.tflm)

    def progress(message: str) -> None:
        print(message, flush=True)

    existing = (
        json.loads(instructions.COSTS_PATH.read_text())
        if instructions.COSTS_PATH.is_file()
        else {"configs": {}}
    )
    with tempfile.TemporaryDirectory() as work:
        for name in args.target or ["cortex-m4"]:
            progress(f"{name}:")
            if args.refit:
                key, costs, table, samples = refit_stored(
                    tree, name, Path(work), args.build, existing, progress
                )
            else:
                key, costs, table, samples = calibrate(tree, name, Path(work), args.build, progress)
            sparse = instructions.sparse_costs(existing["configs"].get(key, {}))
            existing["configs"][key] = {
                "costs": {k: [round(v, 4) for v in c] for k, c in costs.items()} | sparse,
                "models": [
                    {
                        "model": Path(m).name,
                        "measured": n,
                        "estimate": e,
                        "error_percent": round(p, 1),
                    }
                    for m, n, e, p in table
                ],  # fmt: skip
                "samples": [[k, w, round(c), o] for k, w, c, o in samples],
            }
    existing["source"] = (
        f"bench/instruction_costs.py, TFLM {tree.commit or 'unknown'}, QEMU -icount, "
        f"{datetime.date.today().isoformat()}"
    )
    existing["decode_types"] = {str(t): name for t, name in sorted(decoders().items())}
    existing["what"] = (
        "per op and input type (and DECODE decoder): [instructions per call, per unit of work, "
        "per output element]"
    )
    if args.write:
        progress(f"wrote {write(existing).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
