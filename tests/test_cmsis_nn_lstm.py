"""The arena a CMSIS-NN LSTM needs beyond the reference kernels': its kernel sums."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_prune.measurement.cmsis_nn_lstm import kernel_sum_bytes
from edge_prune.measurement.tflite_file import ModelInfo, TensorInfo

LSTM_EXAMPLE = "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite"


def _state(index, dtype, units=24, variable=True):
    return TensorInfo(0, index, "", (1, units), dtype, 0, False, is_variable=variable)


def _model(*tensors, ops=("UNIDIRECTIONAL_SEQUENCE_LSTM",)):
    return ModelInfo("m", 0, 3, 1, ops, tensors)


def test_an_int8_lstm_needs_eight_int32_sums_per_unit():
    assert kernel_sum_bytes(_model(_state(0, "INT8"), _state(1, "INT16"))) == 8 * 24 * 4


def test_an_int16_lstm_needs_int64_sums_and_two_lstms_twice_as_many():
    assert kernel_sum_bytes(_model(_state(0, "INT16"), _state(1, "INT16"))) == 8 * 24 * 8
    two = _model(_state(0, "INT8"), _state(1, "INT16"), _state(2, "INT8"), _state(3, "INT16"))
    assert kernel_sum_bytes(two) == 2 * 8 * 24 * 4


def test_a_float_lstm_or_a_model_without_lstm_needs_none():
    assert kernel_sum_bytes(_model(_state(0, "FLOAT32"), _state(1, "FLOAT32"))) == 0
    assert kernel_sum_bytes(_model(_state(0, "INT8"), _state(1, "INT16"), ops=("ADD",))) == 0


def test_the_cmsis_nn_verdict_counts_the_lstm_sums_and_the_reference_one_does_not():
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.targets import load_target

    model = Path(os.environ.get("EDGE_PRUNE_TFLM") or "-") / LSTM_EXAMPLE
    if not model.is_file():
        pytest.skip("needs a TFLM tree (EDGE_PRUNE_TFLM) for its int8 LSTM example")
    footprint = measure(model)
    assert footprint.cmsis_nn_lstm_bytes == 8 * 20 * 4  # 20 units
    cmsis = verdict_for(footprint, load_target("cortex-m4"))
    reference = verdict_for(footprint, load_target("cortex-m7"))
    assert cmsis.lstm_kernel_sums_bytes == 640 and reference.lstm_kernel_sums_bytes == 0
    assert cmsis.arena_bytes >= footprint.arena_bytes + 640
    assert "CMSIS-NN LSTM kernel sums" in cmsis.to_dict()["ram"]["what"]


def test_a_compressed_lstm_does_not_run_with_cmsis_nn_kernels_and_never_fits(monkeypatch):
    """An LSTM whose gate weights are DECODE outputs (made without edge-prune's rule, by
    another tool) runs on the host's reference kernels; a CMSIS-NN build stops in SetUp at
    cmsis_nn/unidirectional_sequence_lstm.cc:355 (seen on QEMU)."""
    from edge_prune.measurement.codecs import compress_for_mcu, constant_inputs
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.report import Report
    from edge_prune.measurement.targets import load_target

    model = Path(os.environ.get("EDGE_PRUNE_TFLM") or "-") / LSTM_EXAMPLE
    if not model.is_file():
        pytest.skip("needs a TFLM tree (EDGE_PRUNE_TFLM) for its int8 LSTM example")
    table = {k: v for k, v in constant_inputs._READ_IN_PREPARE.items() if "lstm" not in v[1]}
    with monkeypatch.context() as m:
        m.setattr(constant_inputs, "_READ_IN_PREPARE", table)
        compressed = compress_for_mcu(_clustered_gates(model), min_tensor_bytes=0).tflite_bytes
    footprint = measure(compressed)
    assert footprint.runs_on_tflm and footprint.cmsis_nn_decoded_reads
    cmsis = verdict_for(footprint, load_target("cortex-m4"))
    assert not cmsis.runs_on_tflm and not cmsis.fits
    assert "cmsis-nn kernels" in cmsis.failure_reason
    assert "unidirectional_sequence_lstm.cc" in cmsis.failure_reason
    assert verdict_for(footprint, load_target("cortex-m7")).runs_on_tflm
    report = Report(footprint=footprint, verdicts=(cmsis,))
    assert not report.passes and "does not run with the kernels of cortex-m4" in report.to_text()


def _clustered_gates(path: Path) -> bytes:
    """The model with its LSTM gate weights cut to three values, so that a codec shrinks them."""
    import numpy as np
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    from edge_prune.measurement.codecs import _tflm

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    subgraph = model.subgraphs[0]
    lstm = next(op for op in subgraph.operators if len(op.inputs) == 24)
    for index in lstm.inputs[1:9]:
        if index >= 0:
            buffer = model.buffers[subgraph.tensors[index].buffer]
            values = np.asarray(buffer.data, dtype=np.uint8).view(np.int8)
            buffer.data = (np.sign(values) * 40).astype(np.int8).view(np.uint8)
    return _tflm.pack(model)
