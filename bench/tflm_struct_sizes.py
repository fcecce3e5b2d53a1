"""Measure the sizes of TFLM's arena structures on the 64-bit host and on a 32-bit Cortex-M.

Compiles one small C++ file against a TFLM tree twice, with the host ``g++`` and with
``arm-none-eabi-g++ -mcpu=cortex-m4 -mthumb -mfloat-abi=hard``, and reads ``sizeof`` and
``alignof`` of each structure from the object's symbol sizes (``nm -S``: each probe is a
``const char`` array of exactly that many bytes). Writes ``edge_prune/data/tflm_struct_sizes.toml``,
which :mod:`edge_prune.measurement.tflm` uses to turn the host's recorded arena into the 32-bit
figure.

    python bench/tflm_struct_sizes.py TFLM_DIR [--commit C] [--check]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "edge_prune" / "data" / "tflm_struct_sizes.toml"
DEVICE_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
COMMON_FLAGS = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", "-c"]
# The host side is tflite_micro's Python runtime (PyPI), built with USE_TFLM_COMPRESSION (its
# _runtime.so holds "Persistent compression data"); TFLM's Makefile builds for Cortex-M
# (cortex_m_generic) do not define it.
COMPILERS = {
    "host": ["g++", "-DUSE_TFLM_COMPRESSION"],
    "device": ["arm-none-eabi-g++", *DEVICE_FLAGS],
}

# name -> (C++ type, where TFLM defines it). What lives in the arena tail: the allocator objects
# MicroAllocator::Create puts there (plain interpreter on the device, RecordingMicroAllocator in
# tflite_micro's Python interpreter), and the structures RecordingMicroAllocator counts.
TYPES = {
    "pointer": ("void*", "the C++ ABI (pointer arrays: the interpreter's input/output tensors)"),
    "TfLiteEvalTensor": ("TfLiteEvalTensor", "tensorflow/lite/c/common.h"),
    "TfLiteTensor": ("TfLiteTensor", "tensorflow/lite/c/common.h (TF_LITE_STATIC_MEMORY)"),
    "TfLiteAffineQuantization": ("TfLiteAffineQuantization", "tensorflow/lite/c/common.h"),
    "NodeAndRegistration": ("tflite::NodeAndRegistration", "micro_allocator.h"),
    "SubgraphAllocations": ("tflite::SubgraphAllocations", "micro_allocator.h"),
    "ScratchBufferHandle": ("tflite::ScratchBufferHandle", "micro_allocator.h"),
    "ScratchBufferRequest": ("tflite::internal::ScratchBufferRequest", "micro_allocator.h"),
    "AllocationInfo": ("tflite::AllocationInfo", "micro_allocation_info.h"),
    "MicroAllocator": ("tflite::MicroAllocator", "micro_allocator.h"),
    "RecordingMicroAllocator": ("tflite::RecordingMicroAllocator", "recording_micro_allocator.h"),
    "SingleArenaBufferAllocator": (
        "tflite::SingleArenaBufferAllocator",
        "arena_allocator/single_arena_buffer_allocator.h",
    ),
    "RecordingSingleArenaBufferAllocator": (
        "tflite::RecordingSingleArenaBufferAllocator",
        "arena_allocator/recording_single_arena_buffer_allocator.h",
    ),
    "GreedyMemoryPlanner": (
        "tflite::GreedyMemoryPlanner",
        "memory_planner/greedy_memory_planner.h",
    ),
    "MicroBuiltinDataAllocator": (
        "ProbeBuiltinDataAllocator",
        "micro_allocator.cc (class local to that file: same bases and members here)",
    ),
}
# op -> (the OpData a reference kernel allocates once per node with AllocatePersistentBuffer in
# its Init, header). Per-channel arrays (int32) are the same on both word sizes.
KERNEL_OP_DATA = {
    "CONV_2D": ("tflite::OpDataConv", "tensorflow/lite/micro/kernels/conv.h"),
    "DEPTHWISE_CONV_2D": ("tflite::OpDataConv", "tensorflow/lite/micro/kernels/conv.h"),
    "FULLY_CONNECTED": (
        "tflite::OpDataFullyConnected",
        "tensorflow/lite/micro/kernels/fully_connected.h",
    ),
    "AVERAGE_POOL_2D": ("tflite::OpDataPooling", "tensorflow/lite/micro/kernels/pooling.h"),
    "MAX_POOL_2D": ("tflite::OpDataPooling", "tensorflow/lite/micro/kernels/pooling.h"),
    "SOFTMAX": ("tflite::SoftmaxParams", "tensorflow/lite/kernels/internal/types.h"),
    "SVDF": ("tflite::OpDataSvdf", "tensorflow/lite/micro/kernels/svdf.h"),
    "ADD": ("tflite::OpDataAdd", "tensorflow/lite/micro/kernels/add.h"),
    "MUL": ("tflite::OpDataMul", "tensorflow/lite/micro/kernels/mul.h"),
    "SUB": ("tflite::OpDataSub", "tensorflow/lite/micro/kernels/sub.h"),
    "QUANTIZE": ("tflite::OpDataQuantizeReference", "tensorflow/lite/micro/kernels/quantize.h"),
    "DEQUANTIZE": ("tflite::DequantizeOpData", "tensorflow/lite/micro/kernels/dequantize.h"),
    "LOGISTIC": ("tflite::OpDataLogistic", "tensorflow/lite/micro/kernels/logistic.h"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (
        "tflite::OpDataLSTM",
        "tensorflow/lite/micro/kernels/lstm_shared.h",
    ),
    "STRIDED_SLICE": ("tflite::StridedSliceParams", "tensorflow/lite/kernels/internal/types.h"),
    "LEAKY_RELU": ("tflite::LeakyReluOpData", "tensorflow/lite/micro/kernels/leaky_relu.h"),
    "RELU": ("tflite::ReluOpData", "tensorflow/lite/micro/kernels/activations.h"),
    "RELU6": ("tflite::Relu6OpData", "tensorflow/lite/micro/kernels/activations.h"),
    "HARD_SWISH": ("tflite::HardSwishParams", "tensorflow/lite/kernels/internal/types.h"),
    "PRELU": ("tflite::PreluParams", "tensorflow/lite/kernels/internal/types.h"),
    "MEAN": ("tflite::OpDataReduce", "tensorflow/lite/micro/kernels/reduce.h"),
    "SUM": ("tflite::OpDataReduce", "tensorflow/lite/micro/kernels/reduce.h"),
    "REDUCE_MAX": ("tflite::OpDataReduce", "tensorflow/lite/micro/kernels/reduce.h"),
}
PROBE = """
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/core/api/flatbuffer_conversions.h"
#include "tensorflow/lite/micro/arena_allocator/ibuffer_allocator.h"
#include "tensorflow/lite/micro/arena_allocator/recording_single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocation_info.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"
#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/kernels/activations.h"
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/dequantize.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/leaky_relu.h"
#include "tensorflow/lite/micro/kernels/logistic.h"
#include "tensorflow/lite/micro/kernels/lstm_shared.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/pooling.h"
#include "tensorflow/lite/micro/kernels/quantize.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/kernels/sub.h"
#include "tensorflow/lite/micro/kernels/svdf.h"

// MicroBuiltinDataAllocator of micro_allocator.cc: a TfLiteBridgeBuiltinDataAllocator with one
// IPersistentBufferAllocator* member.
class ProbeBuiltinDataAllocator : public tflite::TfLiteBridgeBuiltinDataAllocator {
 public:
  void* Allocate(size_t, size_t) override { return nullptr; }
  void Deallocate(void*) override {}
  tflite::IPersistentBufferAllocator* persistent_allocator_;
};

#define PROBE(name, type)                                              \\
  extern "C" const char sizeof_##name[sizeof(type)] = {0};             \\
  extern "C" const char alignof_##name[alignof(type)] = {0};
"""


def _tool_version(command: str) -> str:
    out = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


def _include_flags(tree: Path) -> list[str]:
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    return [f"-I{tree}", f"-I{downloads / 'flatbuffers/include'}", f"-I{downloads / 'gemmlowp'}"]


def measure(tree: Path, which: str) -> dict[str, tuple[int, int]]:
    """``name -> (sizeof, alignof)`` with the ``which`` compiler."""
    compiler = COMPILERS[which]
    nm = "arm-none-eabi-nm" if which == "device" else "nm"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.cc"
        lines = [PROBE] + [f"PROBE({name}, {cxx})" for name, (cxx, _) in TYPES.items()]
        lines += [f"PROBE(op_{op}, {cxx})" for op, (cxx, _) in KERNEL_OP_DATA.items()]
        source.write_text("\n".join(lines) + "\n")
        obj = Path(tmp) / "probe.o"
        cmd = [*compiler, *COMMON_FLAGS, *_include_flags(tree), str(source), "-o", str(obj)]
        subprocess.run(cmd, check=True)
        symbols = subprocess.run([nm, "-S", str(obj)], capture_output=True, text=True, check=True)
    found = {m[2]: int(m[1], 16) for m in re.findall(r"(\S+) (\S+) [A-Za-z] (\S+)", symbols.stdout)}
    names = [*TYPES, *(f"op_{op}" for op in KERNEL_OP_DATA)]
    return {name: (found[f"sizeof_{name}"], found[f"alignof_{name}"]) for name in names}


def render(tree: Path, commit: str) -> str:
    host, device = measure(tree, "host"), measure(tree, "device")
    lines = [
        "# sizeof / alignof of TFLM's arena structures, measured: a probe compiled against the",
        "# TFLM tree with each compiler, sizes read from its symbols (nm -S).",
        "# Generated by bench/tflm_struct_sizes.py; do not edit, rerun it.",
        f'tflm_commit = "{commit}"',
        "",
        "[compilers.host]",
        f'command = "{" ".join(COMPILERS["host"] + COMMON_FLAGS[:-1])}"',
        f'version = "{_tool_version("g++")}"',
        "",
        "[compilers.device]",
        f'command = "{" ".join(COMPILERS["device"] + COMMON_FLAGS[:-1])}"',
        f'version = "{_tool_version("arm-none-eabi-g++")}"',
    ]
    for name, (cxx, where) in TYPES.items():
        lines += [
            "",
            f"[sizes.{name}]",
            f'type = "{cxx}"',
            f'defined_in = "{where}"',
            f"host = {host[name][0]}",
            f"host_align = {host[name][1]}",
            f"device = {device[name][0]}",
            f"device_align = {device[name][1]}",
        ]
    for op, (cxx, where) in KERNEL_OP_DATA.items():
        lines += [
            "",
            f"[kernel_op_data.{op}]",
            f'type = "{cxx}"',
            f'defined_in = "{where}"',
            f"host = {host['op_' + op][0]}",
            f"device = {device['op_' + op][0]}",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--commit", help="TFLM commit of the tree (default: its directory name)")
    parser.add_argument("--check", action="store_true", help="compare with the shipped table")
    args = parser.parse_args()
    text = render(args.tree, args.commit or args.tree.resolve().name)
    if args.check:
        same = OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
