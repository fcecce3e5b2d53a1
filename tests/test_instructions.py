"""Instructions per inference: work per operator, calibrated costs, the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_prune.measurement import instructions
from edge_prune.measurement.codecs.per_tensor import compress_for_mcu
from edge_prune.measurement.targets import load_all_targets, load_target
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


def test_a_relative_fit_weighs_small_calls_as_much_as_a_large_one():
    """Small calls at 300 + 2.5 per unit, one call of 4 M units on another code path (2.0 per
    unit): in instructions the large call decides the fit, relatively each call counts."""
    samples = [("ADD:int8", w, 300 + 2.5 * w) for w in (10, 40, 160, 640)]
    samples.append(("ADD:int8", 4_000_000, 2.0 * 4_000_000))

    def worst(costs) -> float:
        per_call, per_unit, _ = costs["ADD:int8"]
        return max(abs((per_call + per_unit * w) / n - 1) for _, w, n in samples)

    assert worst(instructions.fit_costs(samples)) > 0.3  # 31% on the smallest call
    assert worst(instructions.fit_costs(samples, relative=True)) < 0.11


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


def _counted(target) -> bool:
    """QEMU counts instructions for the target's build: its core has a machine whose timer the
    device harness reads."""
    from edge_prune.measurement.device.config import DeviceConfig

    if target.tflm_arch is None:
        return False
    machine = DeviceConfig(target.tflm_arch, target.tflm_kernels, target.tflm_build_type).machine
    return machine is not None and machine.timer_base is not None


def test_every_shipped_target_that_qemu_counts_has_calibrated_costs():
    targets = load_all_targets()
    uncounted = {t.name for t in targets if not _counted(t)}
    # ESP32-S3: Xtensa, no toolchain or QEMU machine here. Calibrate a target's build
    # (bench/instruction_costs.py) before it joins the catalogue.
    assert uncounted == {"esp32-s3"}
    for target in targets:
        if _counted(target):
            assert instructions.cost_model(target) is not None, target.name


# The committed fixtures each calibration ran, and how far the estimate may be from the count.
FIXTURES = (
    "cnn_int8",
    "mlp_int8_lenet_trained",
    "codecs_cnn_per_tensor",
    "ds_cnn_int8",
    "resnet8_int8",
    "conv1d_int8",
    "gru_int8",
    "default_m4_int8",
    "default_m4_int4",
)


def _configs() -> dict:
    return json.loads(instructions.COSTS_PATH.read_text())["configs"]


@pytest.mark.parametrize("config", sorted(_configs()))
def test_every_calibrated_build_estimates_every_op_of_the_fixtures(config):
    costs = _configs()[config]["costs"]
    model = instructions.CostModel(config, {k: v[0] for k, v in costs.items()},
                                   {k: v[1] for k, v in costs.items()}, "test")  # fmt: skip
    for name in FIXTURES:
        calls = instructions.operator_work((DATA / f"{name}.tflite").read_bytes())
        assert model.estimate(calls).not_estimated == (), (config, name)


def _error_bound(config: str, measured: int) -> float:
    """|estimate - measured| / measured allowed, percent, from the spread of the calibration
    (bench/results/instruction-costs-2026-12-07.txt). Models of 100,000 instructions and more:
    within 15.7% on the reference builds, 30.7% on the CMSIS-NN build, whose kernels take other
    code paths by shape (1x1, 1xN, depthwise multiplier) that one cost per op key averages over.
    Smaller models: the per-inference overhead outside the operators (a median over the models)
    dominates; hello_world's 12,140 instructions on cortex-m0plus are estimated 230% high."""
    if measured < 100_000:
        return 250.0
    return 35.0 if "cmsis-nn" in config else 20.0


@pytest.mark.parametrize("config", sorted(_configs()))
def test_the_shipped_costs_reproduce_their_calibration_runs(config):
    """The estimate computed now (work per operator, the stored costs) of each committed
    fixture the calibration measured: as stored, and within the bound of the measured count."""
    from edge_prune.measurement.runtime_tables import config_key

    entry = _configs()[config]
    runs = {run["model"]: run for run in entry["models"]}
    fixtures = [name for name in FIXTURES if f"{name}.tflite" in runs]
    assert len(fixtures) >= len(FIXTURES) - 1, (config, sorted(runs))  # one may fail on QEMU
    target = next(t for t in load_all_targets() if t.tflm_arch and config_key(
        t.tflm_arch, t.tflm_kernels, t.tflm_build_type) == config)  # fmt: skip
    for name in fixtures:
        run = runs[f"{name}.tflite"]
        now = instructions.estimate((DATA / f"{name}.tflite").read_bytes(), target)
        assert now.total == pytest.approx(run["estimate"], rel=1e-3), (config, name)
        error = 100 * (now.total - run["measured"]) / run["measured"]
        assert abs(error) < _error_bound(config, run["measured"]), (config, name, error)
    for run in entry["models"]:
        assert run["measured"] > 0
        assert abs(run["error_percent"]) < _error_bound(config, run["measured"]), (config, run)


def test_the_cortex_m4_build_keeps_its_decoder_costs():
    config = _configs()["cortex-m4+fp_cmsis-nn_default"]
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
