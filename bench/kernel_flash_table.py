"""Regenerate ``edge_prune/data/tflm_kernel_flash.toml``: an ESTIMATE of TFLM kernel code per op.

    .venv/bin/python bench/kernel_flash_table.py [--check]

Nobody publishes per-op kernel sizes of TFLM for Cortex-M, so this derives them from the one
TFLM binary we have: ``tflite_micro/python/tflite_micro/_runtime.so`` (x86-64, not stripped).

1. ``nm -C -S`` lists every function (symbol types t/T/W) with its size.
2. Each function is given to the operator(s) whose name it carries, by CamelCase words of its
   base name: ``FullyConnectedEval`` and ``reference_integer_ops::FullyConnected<...>`` go to
   FULLY_CONNECTED, ``ParseConv2D`` to CONV_2D. The longest matching word sequence wins
   (``DepthwiseConvPrepare`` is DEPTHWISE_CONV_2D, not CONV_2D); a tie (``PoolingPrepare``,
   shared by both pools) counts for each op. ``lstm_internal::`` functions go to
   UNIDIRECTIONAL_SEQUENCE_LSTM. Class methods (framework) are skipped.
3. File-local functions with no op in their name (``(anonymous namespace)::Eval``) go to the
   op whose ``Register_<OP>`` symbol is nearest in the binary: the linker keeps a file's
   functions together.
4. Each op's x86-64 byte count is scaled by 9,732 / 20,411, the ratio of the TFLM framework's
   code size on a Cortex-M3 (bluepill) to its size on x86-64, both from the TFLM README
   ``tensorflow/lite/micro/examples/memory_footprint/README.md`` ("Sample code size of the
   TFLM Framework").

Limits, stated in the data file too: reference kernels (not CMSIS-NN or esp-nn, which are
larger and faster), shared helpers in unnamed functions (``tensor_utils``, quantization
helpers) are not counted for any op, inlining differs between x86-64 -O2 and Thumb-2 -Os, and
the framework ratio need not hold for kernel code. Use it as an order of magnitude; targets
can override per op with measured figures.

5. The upper bound (``[upper_bound]``): the estimate came out several times below the one
   runtime measured on a Cortex-M board (``MEASURED_CORTEX_M``). For every calibration op set
   (the committed test models and the default model) the ratio measured / estimate is
   computed; ``ratio`` is the largest, ``floor_bytes`` the measured figure. A report's upper
   bound is ``max(estimate x ratio, floor_bytes)``: it covers the measurement for every op set
   checked, grows with the op set beyond it, and is never below a runtime seen on a device.
   ``bench/runtime_estimate.py`` prints every ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "edge_prune" / "data" / "tflm_kernel_flash.toml"
FRAMEWORK_CORTEX_M3_BYTES = 9_732
FRAMEWORK_X86_64_BYTES = 20_411
SCALE = FRAMEWORK_CORTEX_M3_BYTES / FRAMEWORK_X86_64_BYTES

# Word sequences an op's functions use besides its own name.
ALIASES = {
    "MAX_POOL_2D": [["Max", "Pooling"], ["Pooling"], ["Pool"]],
    "AVERAGE_POOL_2D": [["Average", "Pooling"], ["Pooling"], ["Pool"]],
    "L2_POOL_2D": [["L", "2", "Pool"]],
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [["Lstm"]],
    "MEAN": [["Mean", "Or", "Sum"]],
    "SUM": [["Mean", "Or", "Sum"]],
    "CONCATENATION": [["Concatenation"]],
    "RESIZE_NEAREST_NEIGHBOR": [["Resize", "Nearest"]],
    "BATCH_MATMUL": [["Batch", "Mat", "Mul"]],
    "REDUCE_MAX": [["Min", "Max", "Helper"], ["Max", "Helper"]],
    "REDUCE_MIN": [["Min", "Max", "Helper"], ["Min", "Helper"]],
    "LOGICAL_AND": [["Logical", "Impl"]],
    "LOGICAL_OR": [["Logical", "Impl"]],
}
NAMESPACE_OPS = {"lstm_internal": "UNIDIRECTIONAL_SEQUENCE_LSTM"}
# TFLM runtime + kernels measured on a board, excluding core/OS: mcufit 0.5.2 (PyPI),
# boards/data/measured.yaml, measured 2026-08-16 with TFLM's per-operator profiler build.
MEASURED_CORTEX_M = ("Arduino Nano 33 BLE (nRF52840, Cortex-M4F, CMSIS-NN kernels)", 84_528)
MEASURED_OTHER = (("Arduino Nano ESP32 (ESP32-S3, Xtensa LX7, esp-nn kernels)", 114_579),)
MEASURED_SOURCE = "mcufit 0.5.2 boards/data/measured.yaml, measured 2026-08-16"
# Op sets the bound is calibrated on: the committed test models, and the default model
# (edge_prune.pipeline.default_model converted to int8; the deployable one adds the DECODE op
# of TFLM's LUT compression).
CALIBRATION_MODELS = ("mlp_float", "cnn_int8", "sparse_float", "mlp_int8_lenet")
DEFAULT_MODEL_OPS = {
    "default model, int8": ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"),
    "default model, deployable (LUT)": ("CONV_2D", "CUSTOM:TFLM_DECODE", "FULLY_CONNECTED",
                                        "MAX_POOL_2D", "RESHAPE", "SOFTMAX"),
}  # fmt: skip
_WORD = re.compile(r"[A-Z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|[0-9]+")
_SYMBOL = re.compile(r"^([0-9a-f]+) ([0-9a-f]+) ([tTW]) (.+)$")
_REGISTER = re.compile(r"Register_([A-Z0-9_]+)\(\)")


def runtime_library() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("tflite_micro")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("tflite_micro is not installed in this Python")
    return Path(spec.submodule_search_locations[0]) / "python" / "tflite_micro" / "_runtime.so"


def words(name: str) -> list[str]:
    return _WORD.findall(name)


def op_word_sequences(op: str) -> list[list[str]]:
    parts = [p for p in op.split("_") if p not in ("2D", "3D")]
    own = words("".join(p.capitalize() for p in parts))
    return [own, *ALIASES.get(op, [])]


def split_symbol(demangled: str) -> tuple[list[str], str]:
    """Return (qualifiers, base name) of a demangled C++ function name."""
    text = demangled.replace("(anonymous namespace)", "anonymous")
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"<[^<>]*>", "", text)
    text = text.split("(")[0].split(" ")[-1]
    parts = text.split("::")
    return parts[:-1], parts[-1]


def contains(sequence: list[str], part: list[str]) -> bool:
    n = len(part)
    return any(sequence[i : i + n] == part for i in range(len(sequence) - n + 1))


def owners(qualifiers: list[str], base: str, ops: dict[str, list[list[str]]]) -> list[str]:
    for namespace, op in NAMESPACE_OPS.items():
        if namespace in qualifiers:
            return [op]
    if qualifiers and qualifiers[-1][:1].isupper():
        return []  # a class method: interpreter framework, not a kernel
    base_words = words(base)
    best, chosen = 0, []
    for op, sequences in ops.items():
        length = max((len(s) for s in sequences if contains(base_words, s)), default=0)
        if length > best:
            best, chosen = length, [op]
        elif length == best and length > 0:
            chosen.append(op)
    return chosen


def read_symbols(library: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run(
        ["nm", "-C", "-S", "-n", str(library)], capture_output=True, text=True, check=True
    ).stdout
    symbols = []
    for line in out.splitlines():
        match = _SYMBOL.match(line)
        if match:
            symbols.append((int(match.group(1), 16), int(match.group(2), 16), match.group(4)))
    return symbols


def kernel_bytes_x86(symbols: list[tuple[int, int, str]]) -> dict[str, int]:
    anchors = {}
    for address, _, name in symbols:
        match = _REGISTER.search(name)
        if match:
            anchors[match.group(1)] = address
    ops = {op: op_word_sequences(op) for op in anchors}
    totals: dict[str, int] = defaultdict(int)
    for address, size, name in symbols:
        qualifiers, base = split_symbol(name)
        match = _REGISTER.search(name)
        chosen = [match.group(1)] if match else owners(qualifiers, base, ops)
        if not chosen and "anonymous" in qualifiers:
            chosen = [min(anchors, key=lambda op: abs(anchors[op] - address))]
        for op in chosen:
            totals[op] += size
    return dict(sorted(totals.items()))


def calibration_op_sets() -> dict[str, tuple[str, ...]]:
    """Name -> op types of each model the upper bound is calibrated on."""
    sys.path.insert(0, str(REPO))
    from edge_prune.tflite_file import read_model

    data = REPO / "tests" / "data"
    sets = {name: read_model(data / f"{name}.tflite").op_types for name in CALIBRATION_MODELS}
    return sets | DEFAULT_MODEL_OPS


def estimate_bytes(ops, scaled: dict[str, int], default: int) -> int:
    """The per-op estimate of a model: framework + one kernel per op type."""
    return FRAMEWORK_CORTEX_M3_BYTES + sum(scaled.get(op, default) for op in set(ops))


def upper_bound(scaled: dict[str, int], default: int) -> tuple[float, str]:
    """The largest ratio measured / estimate over the calibration op sets, and its op set."""
    measured = MEASURED_CORTEX_M[1]
    ratios = {
        name: measured / estimate_bytes(ops, scaled, default)
        for name, ops in calibration_op_sets().items()
    }
    worst = max(ratios, key=ratios.get)
    return ratios[worst], worst


def render(totals: dict[str, int]) -> str:
    scaled = {op: round(n * SCALE) for op, n in totals.items()}
    default = round(statistics.median(scaled.values()))
    ratio, worst = upper_bound(scaled, default)
    version = _tflite_micro_version()
    lines = [
        "# TFLM kernel code size per operator: an ESTIMATE, not a measurement on a device.",
        "# Generated by bench/kernel_flash_table.py; do not edit by hand, rerun it.",
        "#",
        f"# Source: symbol sizes (nm -C -S) of tflite_micro {version} _runtime.so (x86-64,",
        "# reference kernels), functions attributed to ops by name (see the script),",
        f"# scaled by {FRAMEWORK_CORTEX_M3_BYTES} / {FRAMEWORK_X86_64_BYTES}: TFLM framework code",
        "# on Cortex-M3 vs x86-64, TFLM tensorflow/lite/micro/examples/memory_footprint/README.md.",
        "# Not counted: helpers shared by several kernels, CMSIS-NN / esp-nn optimized kernels",
        "# (larger). Targets may override per op with measured figures.",
        "",
        "# Framework: the interpreter without kernels, Cortex-M3 (bluepill), TFLM README above.",
        f"framework_bytes = {FRAMEWORK_CORTEX_M3_BYTES}",
        "# Ops not in the table below: the median of the table.",
        f"default_kernel_bytes = {default}",
        "",
        "[source]",
        'what = "TFLM kernel code per operator, estimate for a 32-bit Cortex-M"',
        f'tflite_micro_version = "{version}"',
        f"framework_cortex_m3_bytes = {FRAMEWORK_CORTEX_M3_BYTES}",
        f"framework_x86_64_bytes = {FRAMEWORK_X86_64_BYTES}",
        f"scale = {SCALE:.6f}",
        "",
        "# Upper bound of the runtime code where a target has no device measurement:",
        "# max(estimate x ratio, floor_bytes). ratio = the largest measured / estimate over the",
        "# calibration op sets (bench/kernel_flash_table.py, bench/runtime_estimate.py).",
        "[upper_bound]",
        f"ratio = {ratio:.4f}",
        f"floor_bytes = {MEASURED_CORTEX_M[1]}",
        f'measured_on = "{MEASURED_CORTEX_M[0]}"',
        f'measured_source = "{MEASURED_SOURCE}"',
        f'largest_ratio_op_set = "{worst}"',
        "",
        "[kernel_bytes]",
        *(f"{op} = {n}" for op, n in scaled.items()),
        "",
        "[kernel_x86_64_bytes]",
        *(f"{op} = {n}" for op, n in totals.items()),
        "",
    ]
    return "\n".join(lines)


def _tflite_micro_version() -> str:
    from importlib.metadata import version

    return version("tflite-micro")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    library = runtime_library()
    text = render(kernel_bytes_x86(read_symbols(library)))
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        print("up to date" if current == text else f"{OUTPUT} is stale: rerun without --check")
        return 0 if current == text else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUTPUT.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, OUTPUT)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    for line in text.split("[kernel_bytes]")[1].split("[kernel_x86_64_bytes]")[0].splitlines():
        if line:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
