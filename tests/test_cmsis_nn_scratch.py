"""The arena of a CMSIS-NN firmware, derived per operator, against the device.

The size functions are checked on the pinned CMSIS-NN's formulas, the memory plan against the
head TFLM's own planner gives on the host, and the derived arena against the smallest working
arena ``edge-prune device`` measured in QEMU (recorded in data/cmsis_arena_device.json by
bench/cmsis_arena_device.py) on every model and core recorded there, and again in QEMU when the
toolchain and a TFLM tree are present.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DATA_DIR

from edge_prune.measurement import cmsis_nn_scratch as scratch
from edge_prune.measurement import footprint, tflm
from edge_prune.measurement.targets import load_target
from edge_prune.measurement.tflite_file import OperatorNode, TensorInfo, read_model

RECORDED = json.loads((DATA_DIR / "cmsis_arena_device.json").read_text())
TFLM_MODELS = {
    "hello_world_int8": "tensorflow/lite/micro/examples/hello_world/models/hello_world_int8.tflite",
    "micro_speech": (
        "tensorflow/lite/micro/examples/micro_speech/models/micro_speech_quantized.tflite"
    ),
    "person_detect": "tensorflow/lite/micro/models/person_detect.tflite",
    "trained_lstm_int8": "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite",
}
PLANNED_MODELS = ("cnn_int8", "mlp_int8_lenet", "resnet8_int8", "ds_cnn_int8", "conv1d_int8")


def _model_path(name: str) -> Path:
    sparse = re.fullmatch(r"(.+)_sparse(\d+)_block(\d+)", name)
    if sparse:  # a fixture pruned in place and rewritten with edge-prune's sparse ops
        return _sparse_model(sparse[1], int(sparse[2]) / 100, int(sparse[3]))
    if name in TFLM_MODELS:
        tree = os.environ.get("EDGE_PRUNE_TFLM")
        if not tree:
            pytest.skip("EDGE_PRUNE_TFLM does not name a TFLM tree (TFLM's example models)")
        return Path(tree) / TFLM_MODELS[name]
    return DATA_DIR / f"{name}.tflite"


def _sparse_model(fixture: str, zeros: float, block: int) -> Path:
    from test_sparse_host import pruned_in_place

    from edge_prune.measurement.sparse.rewrite import rewrite

    data = pruned_in_place((DATA_DIR / f"{fixture}.tflite").read_bytes(), zeros, block)
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(rewrite(data, fixture, blocks=(block,), force=True).model)
    return Path(f.name)


def _target(name: str, kernels: str):
    return replace(load_target(name), tflm_kernels=kernels)


# --------------------------------------------------------------------------- the size functions


def _tensor(index, shape, dtype="INT8", data=0, scale=(0.1,)):
    return TensorInfo(0, index, f"t{index}", shape, dtype, data, False, scale, (0,))


def _node(op, inputs, outputs, **options):
    return OperatorNode(0, 0, op, inputs, outputs, tuple(sorted(options.items())))


def _one_node_model(node, tensors):
    info = read_model(DATA_DIR / "cnn_int8.tflite")
    return replace(info, tensors=tuple(tensors), nodes=(node,), inputs=(0,), outputs=(3,))


def _requests(node, tensors, features):
    return scratch.kernel_arena(_one_node_model(node, tensors), features).scratch


CONV_3X3 = [
    _tensor(0, (1, 12, 12, 1)),
    _tensor(1, (4, 3, 3, 1), data=36),
    _tensor(2, (4,), "INT32", data=16),
    _tensor(3, (1, 10, 10, 4)),
]


def test_conv_buffer_follows_cmsis_nn_im2col_size_for_each_core():
    node = _node("CONV_2D", (0, 1, 2), (3,), padding="VALID", stride_w=1, stride_h=1,
                 dilation_w=1, dilation_h=1)  # fmt: skip
    # arm_convolve_s8_get_buffer_size: 2 x (9 columns rounded up to 4) x int16
    assert [r.bytes for r in _requests(node, CONV_3X3, "dsp")] == [48]
    assert [r.bytes for r in _requests(node, CONV_3X3, "none")] == [48]
    # arm_convolve_s8_get_buffer_size_mve: 4 x 16-byte lanes
    assert [r.bytes for r in _requests(node, CONV_3X3, "mve")] == [64]


def test_1x1_convolution_needs_no_buffer_with_gcc():
    tensors = [_tensor(0, (1, 8, 8, 16)), _tensor(1, (8, 1, 1, 16), data=128),
               _tensor(2, (8,), "INT32", data=32), _tensor(3, (1, 8, 8, 8))]  # fmt: skip
    node = _node("CONV_2D", (0, 1, 2), (3,), padding="VALID", stride_w=1, stride_h=1,
                 dilation_w=1, dilation_h=1)  # fmt: skip
    for features in scratch.FEATURES:
        assert _requests(node, tensors, features) == ()


def test_depthwise_3x3_uses_the_bufferless_kernel_except_on_mve():
    tensors = [_tensor(0, (1, 10, 10, 8)), _tensor(1, (1, 3, 3, 8), data=72),
               _tensor(2, (8,), "INT32", data=32), _tensor(3, (1, 10, 10, 8))]  # fmt: skip
    node = _node("DEPTHWISE_CONV_2D", (0, 1, 2), (3,), padding="SAME", stride_w=1, stride_h=1,
                 dilation_w=1, dilation_h=1, depth_multiplier=1)  # fmt: skip
    assert _requests(node, tensors, "dsp") == ()
    assert _requests(node, tensors, "none") == ()
    # arm_depthwise_conv_s8_opt_get_buffer_size_mve: 4 x CH_IN_BLOCK_MVE (124) x 3 x 3
    assert [r.bytes for r in _requests(node, tensors, "mve")] == [4 * 124 * 9]


def test_depthwise_5x5_on_dsp_buffers_channels_times_kernel_as_int16():
    tensors = [_tensor(0, (1, 10, 10, 8)), _tensor(1, (1, 5, 5, 8), data=200),
               _tensor(2, (8,), "INT32", data=32), _tensor(3, (1, 10, 10, 8))]  # fmt: skip
    node = _node("DEPTHWISE_CONV_2D", (0, 1, 2), (3,), padding="SAME", stride_w=1, stride_h=1,
                 dilation_w=1, dilation_h=1, depth_multiplier=1)  # fmt: skip
    assert [r.bytes for r in _requests(node, tensors, "dsp")] == [8 * 25 * 2]
    assert _requests(node, tensors, "none") == ()


def test_average_pool_buffers_one_int32_per_channel_on_dsp_only():
    tensors = [_tensor(0, (1, 8, 8, 64)), _tensor(1, (1,)), _tensor(2, (1,)),
               _tensor(3, (1, 1, 1, 64))]  # fmt: skip
    node = _node("AVERAGE_POOL_2D", (0,), (3,), padding="VALID", stride_w=8, stride_h=8,
                 filter_w=8, filter_h=8)  # fmt: skip
    assert [r.bytes for r in _requests(node, tensors, "dsp")] == [256]
    assert _requests(node, tensors, "mve") == ()


def test_fully_connected_keeps_kernel_sums_persistent_on_mve_only():
    tensors = [_tensor(0, (1, 64)), _tensor(1, (10, 64), data=640),
               _tensor(2, (10,), "INT32", data=40), _tensor(3, (1, 10))]  # fmt: skip
    node = _node("FULLY_CONNECTED", (0, 1, 2), (3,), keep_num_dims=0)
    model = _one_node_model(node, tensors)
    dsp, mve = scratch.kernel_arena(model, "dsp"), scratch.kernel_arena(model, "mve")
    assert dsp.scratch == mve.scratch == ()
    # OpData 72 B (aligned 80) instead of 48; MVE adds 10 int32 kernel sums (aligned 48)
    assert dsp.tail_extra_bytes == 32
    assert mve.tail_extra_bytes == 32 + 48


def _lstm_model(cell_dtype="INT16"):
    """One int8 LSTM node: input (1, 8, 8), 32 units, the cell state at input 19."""
    inputs = [-1] * 24
    inputs[0], inputs[19] = 0, 1
    tensors = [
        _tensor(0, (1, 8, 8)),
        TensorInfo(0, 1, "cell", (1, 32), cell_dtype, 0, False, (0.1,), (0,), True),
        _tensor(2, (1, 32)),
        _tensor(3, (1, 32)),
    ]
    node = _node("UNIDIRECTIONAL_SEQUENCE_LSTM", tuple(inputs), (3,))
    return _one_node_model(node, tensors)


def test_lstm_buffers_three_with_cmsis_nn_four_with_the_reference_kernel():
    kernel = scratch.kernel_arena(_lstm_model(), "dsp")
    # cmsis_nn/unidirectional_sequence_lstm.cc: 3 buffers for int8 activations and an int16
    # cell state; the reference kernel 4; each batch x units int16 cells
    assert [r.bytes for r in kernel.scratch] == [64] * 3
    assert [r.bytes for r in kernel.reference_scratch] == [64] * 4
    assert kernel.extra_requests == 0 and kernel.bound_ops == ()
    # OpData: OpDataLSTM (688 B) + cmsis_nn_lstm_params (220 B) = 912 B; one handle fewer
    # (3 x 4 B and 4 x 4 B both align to 16)
    assert kernel.tail_extra_bytes == 912 - 688
    # a float LSTM runs the reference code path: 4 buffers either way
    float_kernel = scratch.kernel_arena(_lstm_model("FLOAT32"), "dsp")
    assert len(float_kernel.scratch) == len(float_kernel.reference_scratch) == 4


# --------------------------------------------------------------------------- the memory plan


def test_a_scratch_buffer_that_fits_a_gap_of_the_plan_costs_nothing():
    # tensor a lives 0-1, b 1-2, c 2-3: a and c share offset 0, b sits above them
    tensors = [(64, 0, 1), (32, 1, 2), (64, 2, 3)]
    assert scratch.greedy_plan(tensors) == 96
    # a node-2 scratch finds no gap: b (1-2) and c (2-3) are alive at 2
    assert scratch.greedy_plan([*tensors, (32, 2, 2)]) == 128
    # a node-3 scratch fits where b was
    assert scratch.greedy_plan([*tensors, (32, 3, 3)]) == 96


@pytest.mark.parametrize("name", PLANNED_MODELS)
def test_planner_replay_gives_the_head_tflm_planned_on_the_host(name):
    info = read_model(DATA_DIR / f"{name}.tflite")
    kernel = scratch.kernel_arena(info, "dsp")
    arena = tflm.measure_arena(DATA_DIR / f"{name}.tflite")
    assert kernel.planned_reference_head_bytes == arena.recorded_head_bytes


def test_every_recorded_device_run_found_a_working_arena():
    assert RECORDED["runs"], "no device figures recorded"
    # (outputs are the device command's own check: conv1d_int8 on cortex-m55 differs from the
    # host by up to 2 output steps with CMSIS-NN's MVE kernels; its arena probe still found a
    # size that allocates and gives the outputs of a large arena)
    for run in RECORDED["runs"]:
        assert run["device_min_bytes"] and run["device_min_bytes"] > 0, run


# --------------------------------------------------------------------------- against the device


def _derived(name: str, target: str, kernels: str) -> int:
    measured = footprint.measure(_model_path(name))
    arena, _ = footprint.target_arena(measured, _target(target, kernels))
    return arena


@pytest.mark.parametrize(
    "run",
    RECORDED["runs"],
    ids=[f"{r['model']}-{r['target']}-{r['kernels']}" for r in RECORDED["runs"]],
)
def test_verdict_arena_is_never_below_the_device_minimum_and_within_5_percent_64_bytes(run):
    derived = _derived(run["model"], run["target"], run["kernels"])
    device_min = run["device_min_bytes"]
    where = f"{run['model']} on {run['target']} ({run['kernels']}): {derived} B vs {device_min} B"
    assert derived >= device_min, where
    assert derived <= device_min * 1.05 + 64, where
    assert derived == run["derived_bytes"], "the recorded derivation changed: rerun the bench"


def _device_reason() -> str | None:
    import shutil

    from edge_prune.errors import TflmTreeError
    from edge_prune.measurement.device.toolchain import TflmTree

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if not os.environ.get("EDGE_PRUNE_TFLM"):
        return "EDGE_PRUNE_TFLM does not name a TFLM source tree"
    try:
        TflmTree.from_path(os.environ["EDGE_PRUNE_TFLM"])
    except TflmTreeError as e:
        return str(e)
    return None


DEVICE_REASON = _device_reason()


@pytest.mark.device
@pytest.mark.skipif(DEVICE_REASON is not None, reason=f"device tests: {DEVICE_REASON}")
def test_report_emit_c_folder_starts_on_the_cmsis_nn_device_with_its_arena(tmp_path, capsys):
    """`report --emit-c DIR` then `device DIR` on cortex-m4 (CMSIS-NN kernels): the firmware
    built from those very files starts, and their arena is the verdict's, at or above the
    smallest that works and within 5% + 64 B of it."""
    from edge_prune.cli import main
    from edge_prune.measurement.device.measure import measure
    from edge_prune.measurement.device.toolchain import TflmTree

    emitted = tmp_path / "fw"
    code = main(["report", str(DATA_DIR / "cnn_int8.tflite"), "--target", "cortex-m4",
                 "--emit-c", str(emitted), "--format", "json"])  # fmt: skip
    verdict = json.loads(capsys.readouterr().out)["targets"][0]["ram"]["arena_bytes"]
    assert code == 0
    tree = TflmTree.from_path(os.environ["EDGE_PRUNE_TFLM"])
    result = measure(emitted, load_target("cortex-m4"), tree, samples=1)
    assert result.configured_arena_bytes == verdict  # model_data.h as emitted
    assert result.ran and result.outputs_equal_host
    assert verdict >= result.arena_min_bytes
    assert verdict <= result.arena_min_bytes * 1.05 + 64
