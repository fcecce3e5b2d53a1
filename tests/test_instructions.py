"""Instructions per inference: work per operator, calibrated costs, the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_prune.measurement import instructions
from edge_prune.measurement.codecs.per_tensor import compress_for_mcu
from edge_prune.measurement.targets import load_target
from edge_prune.measurement.tflite_file import builtin_operator_name

DATA = Path(__file__).parent / "data"


def test_work_is_the_macs_of_convolutions_and_dense_layers():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    model = (DATA / "cnn_int8.tflite").read_bytes()
    ops = model_editor.read(model).subgraphs[0].operators
    calls = instructions.operator_work(model)

    assert len(calls) == len(ops)
    for op, (call,) in zip(ops, calls, strict=True):
        assert call.key.startswith(builtin_operator_name(op.opcode) + ":")
        if builtin_operator_name(op.opcode) == "CONV_2D":
            out = int(np.prod(op.outputs[0].shape))
            assert call.work == out * int(np.prod(op.inputs[1].shape[1:]))
            assert call.key == "CONV_2D:int8"


def test_each_decoded_tensor_is_work_for_its_own_decoder():
    model = compress_for_mcu(DATA / "codecs_cnn_per_tensor.tflite", codecs=("pruning",))

    calls = [c for op in instructions.operator_work(model.tflite_bytes) for c in op]

    decoded = [c for c in calls if c.key.startswith("DECODE")]
    assert {c.key for c in decoded} == {"DECODE:pruning"}
    assert sum(c.work for c in decoded) == model.decoded_elements["pruning"]


def test_fit_recovers_a_cost_per_call_and_per_unit():
    samples = [("ADD:int8", w, 300 + 2.5 * w) for w in (100, 400, 1600)]

    costs = instructions.fit_costs(samples)

    per_call, per_unit, per_output = costs["ADD:int8"]
    assert per_call == pytest.approx(300, abs=1e-6) and per_unit == pytest.approx(2.5)
    assert per_output == 0


def test_fit_separates_the_cost_per_mac_from_the_cost_per_output():
    shapes = [(100, 10), (400, 10), (400, 40), (1600, 100)]
    samples = [("CONV_2D:int8", w, 50 + 2 * w + 30 * o, o) for w, o in shapes]

    per_call, per_unit, per_output = instructions.fit_costs(samples)["CONV_2D:int8"]

    assert (per_call, per_unit, per_output) == pytest.approx((50, 2, 30))


def test_an_op_without_calibration_is_listed_not_guessed():
    costs = instructions.CostModel("x", {"ADD:int8": 0.0}, {"ADD:int8": 2.0}, "test")
    calls = [[instructions.OpWork("ADD:int8", 10)], [instructions.OpWork("SVDF:int8", 10)]]

    estimate = costs.estimate(calls)

    assert estimate.total == 20 and estimate.not_estimated == ("SVDF:int8",)
    assert estimate.kind == "estimate"


def test_the_shipped_costs_reproduce_their_calibration_runs():
    data = json.loads(instructions.COSTS_PATH.read_text())
    target = load_target("cortex-m4")
    config = data["configs"]["cortex-m4+fp_cmsis-nn_default"]
    assert instructions.cost_model(target) is not None
    for run in config["models"]:
        assert run["measured"] > 0
        # per-call overheads dominate models of a few thousand instructions
        assert abs(run["error_percent"]) < (25 if run["measured"] > 100_000 else 60), run
    decoders = {k for k in config["costs"] if k.startswith("DECODE:")}
    assert decoders >= {"DECODE:huffman", "DECODE:pruning"}
    # decoding a weight costs tens of instructions, not the handful a loop count suggests
    assert config["costs"]["DECODE:huffman"][1] > 20


def test_decoding_costs_time_on_every_inference():
    target = load_target("cortex-m4")
    source = (DATA / "codecs_cnn_per_tensor.tflite").read_bytes()
    compressed = compress_for_mcu(source, codecs=("huffman",)).tflite_bytes

    plain = instructions.estimate(source, target)
    decoded = instructions.estimate(compressed, target)

    assert decoded.total > plain.total
    assert decoded.per_key["DECODE:huffman"] > 0


def test_a_model_of_schema_3_is_keyed_by_its_deprecated_builtin_code():
    """Old converters write the op only in ``deprecated_builtin_code`` (``builtin_code`` 0 is ADD),
    as TFLM's example micro_speech model does: its ops keep their own keys."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    from edge_prune.measurement.codecs._tflm import pack

    data = (DATA / "cnn_int8.tflite").read_bytes()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for code in model.operatorCodes:
        code.deprecatedBuiltinCode, code.builtinCode = max(code.builtinCode, 0), 0
    old = pack(model)

    assert instructions.operator_work(old) == instructions.operator_work(data)
