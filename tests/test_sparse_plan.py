"""The whole-model choice of sparse layers: kernel code is shared, so the plan with the least
flash (flatbuffer + runtime code) at no more instructions than all dense is taken."""

from __future__ import annotations

import math

import pytest
from conftest import DATA_DIR
from test_sparse_host import pruned_in_place

from edge_prune.measurement.sparse_plan import choose_plan, plan_dict
from edge_prune.measurement.targets import load_target

CORTEX_M4 = load_target("cortex-m4")


def _plan(name: str, sparsity: float, block: int):
    data = pruned_in_place((DATA_DIR / name).read_bytes(), sparsity, block)
    return data, choose_plan(data, CORTEX_M4)


def test_the_taken_plan_has_the_least_flash_among_those_no_slower_than_dense():
    _, plan = _plan("default_m4_int8.tflite", 0.5, 4)
    assert plan.chosen is not None and plan.chosen is not plan.dense
    no_slower = [c for c in plan.compared if c.instructions <= plan.dense.instructions]
    assert plan.chosen.flash_bytes == min(c.flash_bytes for c in no_slower)
    assert plan.chosen.flash_bytes < plan.dense.flash_bytes
    assert plan.chosen.instructions <= plan.dense.instructions


def test_one_dense_layer_keeps_its_kernel_code_in_flash():
    """Sparse FCs beside dense convolutions keep CMSIS-NN's CONV_2D code; all sparse drops it."""
    _, plan = _plan("default_m4_int8.tflite", 0.5, 4)
    by_modes = {c.modes: c for c in plan.compared}
    fc_only = by_modes[(("FULLY_CONNECTED", "all"), ("CONV_2D", "dense"))]
    every = by_modes[(("FULLY_CONNECTED", "all"), ("CONV_2D", "all"))]
    assert fc_only.runtime_code_bytes - every.runtime_code_bytes > 10_000
    assert every is plan.chosen


def test_no_plan_when_the_weights_have_no_zeros():
    data = (DATA_DIR / "default_m4_int8.tflite").read_bytes()
    assert choose_plan(data, CORTEX_M4).chosen is None


@pytest.mark.parametrize("name", ["mlp_int8_lenet.tflite", "ds_cnn_int8.tflite"])
def test_the_report_record_names_each_layer_encoding(name):
    data, plan = _plan(name, 0.9, 4)
    record = plan_dict(plan, data, CORTEX_M4)
    sparse = [r for r in record["layers"] if r["encoding"].startswith("sparse")]
    assert sparse, record["layers"]
    for row in sparse:
        assert row["stored_bytes"] < row["dense_bytes"] or row["zeros"] < 0.9
        assert row["instructions"] is not None and row["dense_instructions"] is not None
    assert sum(p["taken"] for p in record["plans"]) == 1
    assert sum(p["all_dense"] for p in record["plans"]) == 1


def test_decode_plans_are_compared_and_never_taken_they_only_add_instructions_and_arena():
    """Per op kind, the filters in TFLM's DECODE codecs: fewer flatbuffer bytes than dense,
    but DECODE's kernel code, a decoded copy in the arena and more instructions."""
    _, plan = _plan("mlp_int8_lenet.tflite", 0.9, 1)
    by_modes = {c.modes: c for c in plan.compared}
    decoded = by_modes[(("FULLY_CONNECTED", "decode"), ("CONV_2D", "dense"))]
    assert decoded.flatbuffer_bytes < plan.dense.flatbuffer_bytes
    assert decoded.runtime_code_bytes > plan.dense.runtime_code_bytes  # DECODE's kernel
    largest = max(math.prod(e.shape) for _, e in decoded.decoded)  # int8: 1 B per weight
    assert decoded.decoded_arena_bytes == largest > 0
    assert decoded.instructions > plan.dense.instructions
    assert [codec for _, e in decoded.decoded for codec in [e.codec]]  # a codec was taken
    assert plan.chosen is not None and not plan.chosen.decoded


def test_the_record_lists_each_plan_with_its_decoded_copy():
    data, plan = _plan("default_m4_int8.tflite", 0.5, 4)
    record = plan_dict(plan, data, CORTEX_M4)
    decoded = [p for p in record["plans"] if "decode" in p["modes"].values()]
    assert decoded and all(p["decoded_arena_bytes"] > 0 for p in decoded)
    assert all(p["decoded_arena_bytes"] == 0 for p in record["plans"] if p not in decoded)
    assert not any(p["taken"] for p in decoded)
    models = [c.model for c in plan.compared]
    assert len(models) == len(set(models))  # a plan that builds the same model is shown once


@pytest.mark.parametrize("target", ["cortex-m0plus", "nrf52810", "cortex-m33", "cortex-m7"])
@pytest.mark.parametrize(
    ("name", "block"), [("default_m4_int8.tflite", 4), ("mlp_int8_lenet.tflite", 1)]
)
def test_on_reference_builds_every_plan_is_estimated_and_none_slower_than_dense(
    name, block, target
):
    """Builds without CMSIS-NN: the sparse kernels' portable C (Cortex-M0+, no DSP) or SMLAD
    code against TFLM's reference kernels, each with the costs calibrated on that build."""
    data = pruned_in_place((DATA_DIR / name).read_bytes(), 0.5, block)
    plan = choose_plan(data, load_target(target))
    assert all(c.instructions is not None for c in plan.compared), target
    if plan.chosen is not None:
        assert plan.chosen.instructions <= plan.dense.instructions
        assert plan.chosen.flash_bytes < plan.dense.flash_bytes
