"""The 32-bit arena figure against the smallest arena measured on a Cortex-M, and its size table.

Device minima (fixtures below) were measured on 2026-12-04 with tflite-micro 90b983c2, its
reference kernels and BUILD_TYPE=default for TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp
(Debian arm-none-eabi-gcc 12.2.1, -Os), run in QEMU 7.2 mps2-an386: a harness registered the
model's kernels with edge-prune's model_ops.h, ran it once with a RecordingMicroInterpreter
(reference output), then bisected the smallest ``arena_size`` with which a plain
``MicroInterpreter`` allocates, and checked that it runs with the same output there (and not
one byte below; keyword_scrambled_8bit, trained_lstm_int8 and mlp_int8_lenet_trained by one
firmware per size, as the bisection harness crashed or hung on them). ``used`` is
``arena_used_bytes()`` there. The models: edge-prune's test models (tests/data; ``cnn_lut`` is
test_firmware's LUT-compressed CNN, with DECODE operators) and TFLM's own examples (with a TFLM
tree in EDGE_PRUNE_TFLM).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from edge_prune.measurement import tflm

DATA = Path(__file__).resolve().parent / "data"
TREE_ENV = "EDGE_PRUNE_TFLM"

# model -> (smallest working arena on the Cortex-M4, arena_used_bytes() there)
DEVICE_MINIMA = {
    "cnn_int8": (1816, 1804),
    "mlp_float": (940, 764),
    "mlp_int8_lenet": (4360, 4316),
    "codecs_cnn_per_channel": (2088, 2012),
    "cnn_lut": (1968, 1924),
    # its first host candidate fails: the host's smallest size is bisected in child processes
    "mlp_int8_lenet_trained": (5756, 4464),
    # 2026-12-07 (`edge-prune device --kernels reference`, tests/data/cmsis_arena_device.json): an
    # unrolled GRU, 153 planned tensors; the memory planner's arrays set its arena (26,480 B
    # with 36 B per planned buffer instead of GreedyMemoryPlanner's 40: "Too many buffers")
    "gru_int8": (26508, 16964),
}
TFLM_MODELS = {  # path in the TFLM tree -> (smallest working arena, arena_used_bytes())
    "tensorflow/lite/micro/examples/hello_world/models/hello_world_int8.tflite": (1068, 672),
    "tensorflow/lite/micro/examples/hello_world/models/hello_world_float.tflite": (1068, 732),
    "tensorflow/lite/micro/examples/micro_speech/models/micro_speech_quantized.tflite": (
        6800,
        6788,
    ),
    "tensorflow/lite/micro/models/person_detect.tflite": (82296, 82284),
    # its first host candidate fails (planning needs more than the estimate): bisected path
    "tensorflow/lite/micro/models/keyword_scrambled_8bit.tflite": (10400, 8052),
    "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite": (3224, 3212),
}


def model_bytes(name: str) -> bytes:
    if name == "cnn_lut":
        from test_firmware import lut_compressed_cnn

        return lut_compressed_cnn()
    return (DATA / f"{name}.tflite").read_bytes()


def check_figure(data: bytes, device_min: int, used: int, label: str) -> None:
    arena = tflm.measure_arena(data, label=label)
    figure = arena.device_total_bytes
    assert figure >= device_min, f"{label}: {figure} B is below the device's {device_min} B"
    assert figure <= device_min * 1.05 + 64, f"{label}: {figure} B vs {device_min} B"
    assert figure < arena.arena_bytes  # the 64-bit host needs more
    assert arena.verdict_bytes == figure
    assert used < device_min  # arena_used_bytes() reads below the smallest working arena


@pytest.mark.parametrize("name", sorted(DEVICE_MINIMA))
def test_32_bit_figure_is_never_below_the_device_minimum_and_close_to_it(name):
    device_min, used = DEVICE_MINIMA[name]
    check_figure(model_bytes(name), device_min, used, name)


@pytest.mark.parametrize("relative", sorted(TFLM_MODELS))
def test_32_bit_figure_of_tflm_example_models(relative):
    tree = os.environ.get(TREE_ENV)
    if not tree:
        pytest.skip(f"needs a TFLM source tree for TFLM's example models: set {TREE_ENV}=DIR")
    path = Path(tree) / relative
    if not path.is_file():
        pytest.skip(f"{path} is not in this TFLM tree")
    device_min, used = TFLM_MODELS[relative]
    check_figure(path.read_bytes(), device_min, used, path.stem)


def test_struct_size_table_is_consistent():
    table = tomllib.loads(tflm.STRUCT_SIZES_PATH.read_text())
    sizes = tflm.struct_sizes()
    assert table["tflm_commit"] == sizes.tflm_commit == "90b983c2"
    assert "arm-none-eabi-g++" in table["compilers"]["device"]["command"]
    assert "12.2" in sizes.device_compiler
    assert (sizes.host["pointer"], sizes.device["pointer"]) == (8, 4)
    for name, entry in table["sizes"].items():
        assert 0 < entry["device"] <= entry["host"], name
        assert entry["device"] % entry["device_align"] == 0, name
        assert entry["device_align"] <= 8 and entry["host_align"] <= 16, name
    for op, entry in table["kernel_op_data"].items():
        assert 0 < entry["device"] <= entry["host"], op
        assert sizes.kernel_saving(op) >= 0
    # the recording allocator is larger than the firmware's plain one on both word sizes
    assert sizes.host["RecordingMicroAllocator"] > sizes.host["MicroAllocator"]
    assert sizes.device["RecordingMicroAllocator"] > sizes.device["MicroAllocator"]


def test_struct_sizes_regenerate_from_the_tree():
    import shutil
    import subprocess
    import sys

    tree = os.environ.get(TREE_ENV)
    if not tree:
        pytest.skip(f"needs a TFLM source tree: set {TREE_ENV}=DIR")
    if not shutil.which("arm-none-eabi-g++"):
        pytest.skip("needs arm-none-eabi-g++ (apt-get install gcc-arm-none-eabi)")
    script = Path(__file__).resolve().parent.parent / "bench" / "tflm_struct_sizes.py"
    done = subprocess.run(
        [sys.executable, str(script), tree, "--commit", "90b983c2", "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
