"""Calibrate the per-operator instruction costs in edge_prune/data/tflm_instructions.json.

Runs models on QEMU with ``edge-prune device`` (:func:`edge_prune.measurement.device.measure`,
default build type: TFLM's interpreter calls the profiler per operator), pairs each operator's
instructions with its work (:func:`edge_prune.measurement.instructions.operator_work`: MACs, or
elements), fits per op and input type (and per DECODE decoder) a cost per call and per unit of
work, and prints, per model, the measured instructions per inference against the fitted estimate.

Models: the committed test fixtures, TFLM's example models in the tree, compressed variants of
the codec fixtures (one per decoder: LUT, Huffman, pruning bitmask), and pruned copies of three
fixtures (50% and 90% zeros, blocks of 1 and of 4 input channels) rewritten with edge-prune's
sparse kernels, so that their costs are fitted like every other op's.

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

FIXTURES = (
    "cnn_int8",
    "mlp_float",
    "mlp_int8_lenet_trained",
    "codecs_cnn_per_tensor",
    "ds_cnn_int8",
    "resnet8_int8",
    "conv1d_int8",
    "gru_int8",
    "default_m4_int8",
    "default_m4_int4",
)
# Pruned in place and rewritten with the sparse kernels: (fixture, zeros, block).
SPARSE_FIXTURES = ("mlp_int8_lenet", "default_m4_int8", "ds_cnn_int8")
SPARSE_ZEROS = (0.5, 0.9)
SPARSE_BLOCKS = (1, 4)
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
    return found + compressed_models(workdir) + sparse_models(workdir)


def sparse_models(workdir: Path) -> list[Path]:
    """Each of :data:`SPARSE_FIXTURES` with a fraction of its FULLY_CONNECTED / CONV_2D filter
    blocks zeroed, every such layer rewritten as a sparse custom op in that block size (a layer
    whose input channels the block does not divide stays dense)."""
    from edge_prune.measurement.sparse.filter_edit import zero_random_blocks
    from edge_prune.measurement.sparse.rewrite import rewrite

    paths = []
    for name in SPARSE_FIXTURES:
        source = (REPO / "tests" / "data" / f"{name}.tflite").read_bytes()
        for zeros in SPARSE_ZEROS:
            for block in SPARSE_BLOCKS:
                pruned = zero_random_blocks(source, zeros, block)
                result = rewrite(pruned, name, blocks=(block,), force=True)
                if not result.sparse_layers:
                    continue
                path = workdir / f"{name}_sparse{round(zeros * 100)}_block{block}.tflite"
                path.write_bytes(result.model)
                paths.append(path)
    return paths


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


def samples_of(model: Path, result) -> list[tuple]:
    """(cost key, work, instructions, outputs) per operator of one profiled inference. A sparse
    KxK convolution's call is two keys (the row loop and the patch copy): one row whose key
    joins both with ``|`` and whose work is the pair (:func:`split_patch` fits it)."""
    calls = instructions.operator_work(model.read_bytes())
    profile = result.instructions_per_op
    if len(profile) != len(calls):
        return []  # control flow or a profile cut short: no pairing
    return [
        (key, work, float(count), outputs)
        for (_, count), (key, work, outputs) in zip(profile, work_rows(calls), strict=True)
        if key is not None
    ]


def work_rows(calls: list) -> list[tuple]:
    """Per operator, (cost key, work, outputs) of its row, or (None, 0, 0) for an operator whose
    call has several keys that no row separates."""
    rows = []
    for op_calls in calls:
        keys = {c.key for c in op_calls}
        if len(keys) == 1:
            work = sum(c.work for c in op_calls)
            rows.append((op_calls[0].key, work, sum(c.outputs for c in op_calls)))
        elif len(op_calls) == 2 and op_calls[1].key == instructions.SPARSE_PATCH_KEY:
            conv, patch = op_calls
            rows.append((f"{conv.key}|{patch.key}", [conv.work, patch.work], conv.outputs))
        else:
            rows.append((None, 0, 0))
    return rows


def rekeyed(model: Path, rows: list) -> list:
    """A model's stored rows with the keys and work :func:`work_rows` gives now (the stored
    counts, in operator order), when the rows pair one to one with its operators."""
    fresh = [r for r in work_rows(instructions.operator_work(model.read_bytes())) if r[0]]
    if len(fresh) != len(rows) - 1 or rows[-1][0] != instructions.INVOKE:
        return rows
    ops = [
        (key, work, row[2], outputs)
        for (key, work, outputs), row in zip(fresh, rows[:-1], strict=True)
    ]
    return [*ops, rows[-1]]


def fit_sparse(rows: list) -> dict:
    """The sparse kernels' costs per stored weight x position and per output element, no cost
    per call: the calibration models run each layer shape at two sparsities only, which cannot
    tell a cost per call from one per output; the kernels loop over outputs, not calls
    (relative least squares, terms >= 0; per weight alone where the output term would be < 0)."""
    by_key: dict[str, list] = {}
    for key, work, count, outputs in rows:
        by_key.setdefault(key, []).append((work, outputs, count))
    fitted = {}
    for key, values in by_key.items():
        work, outputs, count = np.array(values, dtype=float).T
        weight = 1.0 / np.maximum(count, 1.0)
        design = np.stack((work, outputs), axis=1) * weight[:, None]
        if len(values) >= 2 and np.linalg.matrix_rank(design) == 2:
            per_unit, per_output = np.linalg.lstsq(design, count * weight, rcond=None)[0]
            if per_unit >= 0 and per_output >= 0:
                fitted[key] = (0.0, float(per_unit), float(per_output))
                continue
        fitted[key] = (0.0, float(np.median(count / np.maximum(work, 1.0))), 0.0)
    return fitted


def split_patch(samples: list) -> tuple[list, list]:
    """The samples of single-key calls, and the sparse KxK convolutions' joint rows."""
    single = [row for row in samples if "|" not in row[0]]
    return single, [row for row in samples if "|" in row[0]]


def fit_patch(costs: dict, joint: list) -> dict:
    """The patch copy's cost per tap and position: each KxK sparse convolution's count less
    what its row loop costs (fitted on the 1x1 sparse convolutions; where there were none, the
    sparse FULLY_CONNECTED of the same block size, which runs the same row loop)."""
    rows = []
    for key, (work, taps), count, outputs in joint:
        conv = key.split("|")[0]
        loop = costs.get(conv) or costs.get(conv.replace("_CONV:", "_FC:"))
        if loop is None:
            continue
        residual = count - (loop[0] + loop[1] * work + loop[2] * outputs)
        rows.append((instructions.SPARSE_PATCH_KEY, taps, max(residual, 0.0), 0))
    return instructions.fit_costs(rows, relative=True) if rows else {}


def calibrate(tree, target_name: str, workdir: Path, builds, progress) -> tuple[str, dict, list]:
    target = load_target(target_name)
    groups, per_model = [], []
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
        groups.append((model, rows))
        per_model.append((model, result))
    return refit(
        target, groups, [(m, r.instructions_per_inference) for m, r in per_model], progress
    )


def distinct(groups: list) -> list:
    """The profiled rows of the models whose work per operator no earlier model had: an edge-prune
    build's candidates repeat one model's shapes (int8, clustered, per-tensor), and a fit
    that counted each copy would be a fit to that model."""
    seen, rows = set(), []
    for model, group in groups:
        if model is None:
            rows += group
            continue
        work = instructions.operator_work(Path(model).read_bytes())
        signature = tuple((c.key, c.work, c.outputs) for op in work for c in op)
        if signature not in seen:
            seen.add(signature)
            rows += group
    return rows


def refit(target, groups: list, measured: list, progress) -> tuple[str, dict, list, list]:
    """Fit the costs on the profiled rows of each distinct model (``groups``: (model, rows)) and
    compare with each model's measured total."""
    samples = distinct(groups)
    single, joint = split_patch(samples)
    costs = instructions.fit_costs(single, relative=True)
    costs |= fit_sparse(
        [row for row in single if instructions.sparse_costs({"costs": {row[0]: 0}})]
    )
    for key, _, _, _ in joint:  # a block size seen on KxK sparse convolutions only
        conv = key.split("|")[0]
        fc = conv.replace("_CONV:", "_FC:")
        if conv not in costs and fc in costs:
            costs[conv] = costs[fc]
    costs |= fit_patch(costs, joint)
    outside = [c for k, _, c, *_ in samples if k == instructions.INVOKE]
    if outside:  # the median: a few runs have timer-granularity outliers
        costs[instructions.INVOKE] = (float(np.median(outside)), 0.0, 0.0)
    key = config_key(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    every = [row for _, group in groups for row in group]
    return key, costs, compare(key, costs, measured, progress), every


def compare(key: str, costs: dict, measured: list, progress=None) -> list:
    """(model, measured, estimate, error %) of each measured model under ``costs``."""
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
            if progress:
                progress(f"  {Path(model).name}: measured {count:,}, estimate {estimate.total:,} "
                         f"({error:+.1f}%)")  # fmt: skip
    return table


def sparse_choice(key: str, costs: dict, stored: dict, table: list, keep: bool, progress) -> dict:
    """The costs to write: the fitted ones, with the stored sparse kernels' costs where none was
    fitted (or, ``keep``, in place of the fitted ones). Prints both against the sparse models'
    measured counts."""
    chosen = costs | {k: v for k, v in stored.items() if keep or k not in costs}
    if not stored:
        return chosen
    for k in sorted(stored):
        fitted = ", ".join(f"{v:.4g}" for v in costs[k]) if k in costs else "not fitted"
        progress(f"  {k}: fitted [{fitted}], stored {stored[k]}")
    measured = [(m, n) for m, n, _, _ in table if "_sparse" in Path(m).name]
    for label, trial in (("fitted", costs | {k: v for k, v in stored.items() if k not in costs}),
                         ("stored", costs | stored)):  # fmt: skip
        errors = [e for *_, e in compare(key, trial, measured)]
        if errors:
            progress(f"  sparse models, {label} sparse costs: {min(errors):+.1f}% to "
                     f"{max(errors):+.1f}%, mean |error| "
                     f"{np.mean(np.abs(errors)):.1f}%")  # fmt: skip
    return chosen


def refit_stored(tree, name: str, workdir: Path, builds, existing: dict, progress):
    """:func:`refit` on the samples and measured totals the cost file already holds."""
    target = load_target(name)
    key = config_key(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    entry = existing["configs"][key]
    paths = {p.name: p for p in models(tree, workdir, builds)}
    measured = [(paths[m["model"]], m["measured"]) for m in entry["models"] if m["model"] in paths]
    groups, rows = [], []
    for row in entry["samples"]:  # each profiled model's rows end with its INVOKE row
        rows.append(tuple(row))
        if row[0] == instructions.INVOKE:
            groups.append(rows)
            rows = []
    named = [paths.get(m["model"]) for m in entry["models"]]
    if len(groups) != len(named) or None in named:  # cannot tell the models apart: all rows
        return refit(target, [(None, [r for g in groups for r in g] + rows)], measured, progress)
    groups = [rekeyed(model, rows) for model, rows in zip(named, groups, strict=True)]
    return refit(target, list(zip(named, groups, strict=True)), measured, progress)


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
    parser.add_argument(
        "--keep-sparse",
        action="append",
        default=[],
        metavar="TARGET",
        help="keep the stored sparse-kernel costs of this target's build instead of fitted ones",
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
    computed = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.target or ["cortex-m4"]:
            progress(f"{name}:")
            if args.refit:
                key, costs, table, samples = refit_stored(
                    tree, name, Path(work), args.build, existing, progress
                )
            else:
                key, costs, table, samples = calibrate(tree, name, Path(work), args.build, progress)
            stored = instructions.sparse_costs(existing["configs"].get(key, {}))
            keep = name in args.keep_sparse
            costs = sparse_choice(key, costs, stored, table, keep, progress)
            if keep:
                progress("  with the stored sparse costs:")
                table = compare(key, costs, [(m, n) for m, n, _, _ in table], progress)
            computed.append(key)
            existing["configs"][key] = {
                "costs": {k: [round(v, 4) for v in c] for k, c in costs.items()},
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
    if args.write:  # merged into the file as it is now: runs of other targets may have written
        latest = (
            json.loads(instructions.COSTS_PATH.read_text())
            if instructions.COSTS_PATH.is_file()
            else {"configs": {}}
        )
        latest["configs"].update({k: existing["configs"][k] for k in computed})
        for field in ("source", "decode_types", "what"):
            latest[field] = existing[field]
        progress(f"wrote {write(latest).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
