"""Measure the TFLM runtime code tables shipped in edge_prune/data/tflm_runtime/ on real builds.

Per TFLM build configuration (Cortex-M core x kernel set x build type) it links, with
arm-none-eabi-gcc and ``--gc-sections``, one firmware that registers no op (the framework) and
one per op (that op alone), splits each GNU ld map into the runtime group (TFLM objects and the
toolchain objects linked only because of TFLM, see :mod:`edge_prune.measurement.device`), and
writes the sections each link keeps (:mod:`edge_prune.measurement.runtime_tables`). edge-prune's
own sparse ops (``CUSTOM:EDGE_PRUNE_SPARSE_FC``, ``CUSTOM:EDGE_PRUNE_SPARSE_CONV``) are linked the
same way, one firmware each: their kernel sources (edge_prune/measurement/sparse/kernels/)
compiled with the harness's flags, their sections counted with the runtime's, so that code they
share with TFLM's kernels (QuantizeMultiplier, libgcc's double routines) is counted once.

``--check`` links whole firmwares for op sets of real models (edge-prune's own builds and TFLM's
example models, and the int8 ones with every FULLY_CONNECTED/CONV_2D rewritten as edge-prune's
sparse ops) and compares the runtime code each link measures with the table's union of the
single-op links: the table is good when every op set is within 5%.

    python bench/device_tables.py --tflm DIR [--config cortex-m4+fp:cmsis-nn:default ...]
    python bench/device_tables.py --tflm DIR --check

Needs the toolchain (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi
libstdc++-arm-none-eabi-newlib) and a TFLM tree; the first build of a configuration compiles
the kernels it links (minutes on 2 cores), later runs reuse the objects.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.errors import EdgePruneError  # noqa: E402
from edge_prune.measurement import device, op_resolver, runtime_tables  # noqa: E402
from edge_prune.measurement.device import build  # noqa: E402
from edge_prune.measurement.firmware import SPARSE_OPS  # noqa: E402
from edge_prune.measurement.tflite_file import read_model  # noqa: E402

# The configurations the shipped targets use, then the others the device command supports.
DEFAULT_CONFIGS = (
    "cortex-m4+fp:cmsis-nn:default",
    "cortex-m4+fp:reference:default",
    "cortex-m4+fp:cmsis-nn:release",
    "cortex-m4+fp:reference:release",
    "cortex-m0plus:reference:default",
    "cortex-m4:reference:default",
    "cortex-m7+fp:reference:default",
    "cortex-m33:reference:default",
    "cortex-m55:reference:default",
)
# The ops measured by default: what the model families edge-prune is tested on convert to
# (CNNs, DS-CNNs, MobileNets, Conv1D, LSTM/GRU, autoencoders), TFLM's example models use, and
# DECODE. ``--ops all`` measures every op the resolver registers (two hours per build on 2
# cores). An op a table lacks is counted at the table's largest single-op cost, labelled.
COMMON_OPS = (
    "ADD", "ARG_MAX", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CONCATENATION", "CONV_2D",
    "CUSTOM:TFLM_DECODE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "EXPAND_DIMS",
    "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PADV2", "QUANTIZE", "REDUCE_MAX",
    "RELU", "RELU6", "RESHAPE", "RESIZE_NEAREST_NEIGHBOR", "SHAPE", "SOFTMAX", "SPLIT",
    "SPLIT_V", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK",
    # TFLM's Signal library (audio front ends such as TFLM's audio_preprocessor example)
    "CUSTOM:SignalDelay", "CUSTOM:SignalEnergy", "CUSTOM:SignalFftAutoScale",
    "CUSTOM:SignalFilterBank", "CUSTOM:SignalFilterBankLog", "CUSTOM:SignalFilterBankSquareRoot",
    "CUSTOM:SignalFilterBankSpectralSubtraction", "CUSTOM:SignalFramer", "CUSTOM:SignalIrfft",
    "CUSTOM:SignalOverlapAdd", "CUSTOM:SignalPCAN", "CUSTOM:SignalRfft", "CUSTOM:SignalStacker",
    "CUSTOM:SignalWindow",
    # edge-prune's sparse kernels (edge_prune.measurement.firmware.SPARSE_OPS)
    "CUSTOM:EDGE_PRUNE_SPARSE_CONV", "CUSTOM:EDGE_PRUNE_SPARSE_FC",
    "CUSTOM:EDGE_PRUNE_SPARSE_CONV_INT4", "CUSTOM:EDGE_PRUNE_SPARSE_FC_INT4",
)  # fmt: skip


def resolver_ops(tree) -> dict[str, str]:
    """Every op the tree's MicroMutableOpResolver registers that the device build links, named
    as ``read_model`` names it (``CONV_2D``, ``CUSTOM:<code>``; from
    :mod:`edge_prune.measurement.op_resolver`), and edge-prune's sparse ops
    -> the key the device build takes."""
    linked = build.resolver_methods(tree)
    ops = (m.op for m in op_resolver.generate(tree.path).methods if m.op)
    known = {op: build.op_key(op) for op in ops if build.op_key(op) in linked}
    return known | {op: build.op_key(op) for op in SPARSE_OPS}


def parse_config(text: str) -> device.DeviceConfig:
    arch, kernels, build_type = text.split(":")
    return device.DeviceConfig(arch, kernels, build_type)


def measure_table(tree, config, ops: dict[str, str], progress) -> runtime_tables.RuntimeTable:
    framework = device.runtime_flash_for_ops(tree, config, [])
    per_op = {}
    for i, (op, key) in enumerate(ops.items(), 1):
        try:
            link = device.runtime_flash_for_ops(tree, config, [key])
        except EdgePruneError as e:
            progress(f"  [{i}/{len(ops)}] {op}: not measured: {' '.join(str(e).split())[:200]}")
            continue
        added = link.runtime_flash_bytes - framework.runtime_flash_bytes
        progress(f"  [{i}/{len(ops)}] {op}: {added:+,} B")
        per_op[op] = [(s.object, s.name, s.size) for s in link.sections if s.flash_bytes]
    return runtime_tables.table_from_links(
        [(s.object, s.name, s.size) for s in framework.sections if s.flash_bytes],
        per_op,
        arch=config.core,
        kernels=config.kernels,
        build_type=config.build_type,
        tflm_commit=tree.commit or "unknown",
        compiler=framework.compiler_version,
        flags=" ".join(framework.flags),
        generated=datetime.date.today().isoformat(),
    )


def write_table(table: runtime_tables.RuntimeTable) -> Path:
    path = runtime_tables.table_path(table.arch, table.kernels, table.build_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table.to_json(), separators=(",", ":"), sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
    return path


def summary(table: runtime_tables.RuntimeTable) -> list[str]:
    """Framework, its toolchain share, the DECODE kernel per decoder, the largest kernels."""

    def by_object(sections) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for i in sections:
            obj = table.objects[table.section_object[i]]
            sizes[obj] = sizes.get(obj, 0) + table.section_bytes[i]
        return sizes

    framework = by_object(table.framework)
    toolchain = sum(
        n
        for obj, n in framework.items()
        if not obj.startswith(("libtflm", "core/", "kernels/", "/")) and ".a(" in obj
    )
    lines = [f"{table.key}: framework {table.framework_bytes:,} B (toolchain library code "
             f"{toolchain:,} B of it), {len(table.ops)} ops"]  # fmt: skip
    decode = table.ops.get("CUSTOM:TFLM_DECODE")
    if decode is not None:
        parts = by_object(decode - table.framework)
        decoders = {k: v for k, v in parts.items() if "decode_state_" in k}
        lines.append(
            f"  DECODE kernel {table.op_bytes('CUSTOM:TFLM_DECODE'):,} B, of which "
            + ", ".join(
                f"{k.rsplit('/', 1)[-1].rstrip(')')} {v:,} B" for k, v in sorted(decoders.items())
            )
        )
    sparse = [op for op in SPARSE_OPS if op in table.ops]
    if sparse:
        dense = [op for op in ("FULLY_CONNECTED", "CONV_2D") if op in table.ops]
        alone = table.runtime_bytes(sparse)[0] - table.framework_bytes
        with_dense = table.runtime_bytes(dense)[0]
        added = table.runtime_bytes([*dense, *sparse])[0] - with_dense
        lines.append(
            "  sparse kernels: "
            + ", ".join(f"{op.removeprefix('CUSTOM:')} {table.op_bytes(op):,} B" for op in sparse)
            + f"; both {alone:,} B over the framework, {added:,} B over it with "
            + " and ".join(dense)
        )
    largest = sorted(table.ops, key=table.op_bytes, reverse=True)[:8]
    lines.append(
        "  largest kernels: " + ", ".join(f"{op} {table.op_bytes(op):,} B" for op in largest)
    )
    return lines


def check_op_sets(tree, configs, models: list[Path], progress) -> list[dict]:
    """Whole-firmware links of each model's op set vs the table's union."""
    rows = []
    known = resolver_ops(tree)
    for config in configs:
        table = runtime_tables.load_table(config.core, config.kernels, config.build_type)
        if table is None:
            progress(f"{config}: no table, skipped")
            continue
        links: dict[tuple[str, ...], int] = {}  # one link per distinct op set
        for model in models:
            ops = [op for op in read_model(model).op_types if op in known]
            keys = tuple(sorted(known[op] for op in ops))
            if keys not in links:
                links[keys] = device.runtime_flash_for_ops(tree, config, keys).runtime_flash_bytes
            linked = links[keys]
            union, uncovered = table.runtime_bytes(ops)
            rows.append(
                {
                    "config": table.key,
                    "model": model.name,
                    "ops": len(ops),
                    "linked_bytes": linked,
                    "table_bytes": union,
                    "error_percent": round(100 * (union - linked) / linked, 2),
                    "uncovered": list(uncovered),
                }
            )
            progress(
                f"{table.key} {model.name}: linked {linked:,} B, table {union:,} B "
                f"({rows[-1]['error_percent']:+.2f}%)"
            )
    return rows


def check_report(rows: list[dict]) -> list[str]:
    """The check rows as a table, and per configuration the spread of (table - linked) /
    linked over the op sets the table covers."""
    lines = [
        f"{'config':<32} {'model':<48} {'ops':>3} {'linked B':>9} {'table B':>9} {'error':>8}"
        "  uncovered"
    ]
    for r in rows:
        lines.append(
            f"{r['config']:<32} {r['model']:<48} {r['ops']:>3} {r['linked_bytes']:>9,} "
            f"{r['table_bytes']:>9,} {r['error_percent']:>+7.2f}%  {', '.join(r['uncovered'])}"
        )
    for config in dict.fromkeys(r["config"] for r in rows):
        covered = [r for r in rows if r["config"] == config and not r["uncovered"]]
        if not covered:
            continue
        errors = [r["error_percent"] for r in covered]
        sets = {(r["linked_bytes"], r["table_bytes"]) for r in covered}
        sparse = [r["error_percent"] for r in covered if "_sparse_rewrite" in r["model"]]
        # runtime_tables.TableError's sign: (linked - table) / table
        above = [100 * (r["linked_bytes"] - r["table_bytes"]) / r["table_bytes"] for r in covered]
        lines.append(
            f"# {config}: {len(covered)} covered models, {len(sets)} distinct op sets, table vs "
            f"linked {min(errors):+.2f}% to {max(errors):+.2f}%"
            + (f" (with sparse ops {min(sparse):+.2f}% to {max(sparse):+.2f}%)" if sparse else "")
            + f"; (linked - table) / table {min(above):+.2f}% to {max(above):+.2f}%"
        )
    return lines


def example_models(tree) -> list[Path]:
    """TFLM's own example models in the tree, the test fixtures, and edge-prune's build of the
    default model."""
    root = Path(tree.path) / "tensorflow" / "lite" / "micro" / "examples"
    found = sorted(root.rglob("*.tflite"))
    found += sorted((REPO / "tests" / "data").glob("*.tflite"))
    build = REPO / "build" / "cortex-m4"
    found += sorted(build.glob("model_*.tflite")) if build.is_dir() else []
    return found


def sparse_variants(models: list[Path], directory: Path) -> list[Path]:
    """Each int8 model among ``models`` with every FULLY_CONNECTED/CONV_2D its filters allow
    rewritten as edge-prune's sparse ops (``rewrite(force=True)``), written to ``directory``."""
    from edge_prune.measurement.sparse.rewrite import rewrite

    out = []
    for model in models:
        data = model.read_bytes()
        rewritten = rewrite(data, model.name, force=True)
        if rewritten.model == data or not set(read_model(rewritten.model).op_types) & set(
            SPARSE_OPS
        ):
            continue
        path = directory / f"{model.stem}_sparse_rewrite.tflite"
        path.write_bytes(rewritten.model)
        out.append(path)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm", default=os.environ.get("EDGE_PRUNE_TFLM"), required=False)
    parser.add_argument("--config", action="append", help="ARCH:KERNELS:BUILD_TYPE")
    parser.add_argument("--ops", help="comma-separated ops, or 'all' (default: COMMON_OPS)")
    parser.add_argument("--check", action="store_true", help="compare with whole-firmware links")
    parser.add_argument("--out", type=Path, help="write the check rows as JSON here")
    parser.add_argument("--summary", action="store_true", help="print the shipped tables")
    args = parser.parse_args(argv)

    if args.summary:
        for table in runtime_tables.shipped_tables():
            print("\n".join(summary(table)))
        return 0
    tree = device.TflmTree.from_path(args.tflm)
    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]

    def progress(message: str) -> None:
        print(message, flush=True)

    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            models = example_models(tree)
            models += sparse_variants(models, Path(scratch))
            rows = check_op_sets(tree, configs, models, progress)
        progress("\n".join(check_report(rows)))
        worst = max((abs(r["error_percent"]) for r in rows), default=0.0)
        progress(f"{len(rows)} op sets, largest error {worst:.2f}%")
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
        return 0 if worst <= 5.0 else 1
    known = resolver_ops(tree)
    names = COMMON_OPS if not args.ops else known if args.ops == "all" else args.ops.split(",")
    ops = {op: known[op] for op in names}
    for config in configs:
        progress(f"{config}: framework + {len(ops)} ops")
        table = measure_table(tree, config, ops, progress)
        path = write_table(table)
        progress(
            f"{table.key}: framework {table.framework_bytes:,} B, {len(table.ops)} ops, "
            f"largest op {table.largest_op_bytes():,} B -> {path.relative_to(REPO)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
