"""Runtime code from measured Cortex-M build tables: union of linked sections per op set."""

from __future__ import annotations

import json

import pytest

from edge_prune.measurement import footprint, runtime_tables
from edge_prune.measurement.runtime_tables import (
    RuntimeTableError,
    table_from_json,
    table_from_links,
)
from edge_prune.measurement.targets import load_target

META = {
    "tflm_commit": "90b983c2b3f1480642e040bbd2ddb37b998f3424",
    "compiler": "arm-none-eabi-gcc 12.2",
    "flags": "-Os",
    "generated": "2026-12-04",
}


def _table():
    framework = [("micro_interpreter.o", ".text.a", 1000), ("libc.a(memcpy.o)", ".text", 100)]
    helper = ("kernel_util.o", ".text.h", 50)
    ops = {
        "CONV_2D": [*framework, ("conv.o", ".text.eval", 500), helper],
        "FULLY_CONNECTED": [*framework, ("fc.o", ".text.eval", 300), helper],
        "SOFTMAX": [*framework, ("softmax.o", ".text.eval", 200)],
    }
    return table_from_links(
        framework, ops, arch="cortex-m4+fp", kernels="reference", build_type="default", **META
    )


def test_shared_helpers_are_counted_once_in_an_op_set():
    table = _table()

    total, uncovered = table.runtime_bytes(["CONV_2D", "FULLY_CONNECTED"])

    assert uncovered == ()
    assert total == 1100 + 500 + 300 + 50
    assert table.op_bytes("CONV_2D") == 550
    assert table.framework_bytes == 1100


def test_an_op_the_table_lacks_is_counted_at_the_largest_single_op_cost():
    table = _table()

    total, uncovered = table.runtime_bytes(["SOFTMAX", "LSTM_MADE_UP"])

    assert uncovered == ("LSTM_MADE_UP",)
    assert total == 1100 + 200 + 550


def test_a_table_survives_its_json_round_trip():
    table = _table()

    again = table_from_json(json.loads(json.dumps(table.to_json())))

    assert again == table


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.update(schema=99), "schema"),
        (lambda d: d["framework"].append(999), "out of range"),
        (lambda d: d["sections"].__setitem__(0, [0, -5]), "negative"),
    ],
)
def test_a_damaged_table_is_refused(damage, message):
    data = _table().to_json()
    damage(data)
    with pytest.raises((ValueError, IndexError), match=message):
        table_from_json(data)


def test_merged_strings_keep_their_largest_size():
    framework = [("a.o", ".rodata.f.str1.1", 10)]
    table = table_from_links(
        framework,
        {"ADD": [("a.o", ".rodata.f.str1.1", 14)]},
        arch="cortex-m4",
        kernels="reference",
        build_type="default",
        **META,
    )
    assert table.runtime_bytes(["ADD"])[0] == 14


def test_sections_of_one_name_with_two_sizes_mean_two_builds_were_mixed():
    framework = [("a.o", ".text", 10)]
    with pytest.raises(RuntimeTableError, match="not of one build"):
        table_from_links(
            framework,
            {"ADD": [("a.o", ".text", 12)]},
            arch="cortex-m4",
            kernels="reference",
            build_type="default",
            **META,
        )


def test_shipped_tables_are_consistent():
    tables = runtime_tables.shipped_tables()
    assert tables, "edge_prune/data/tflm_runtime/ ships at least one measured build"
    for table in tables:
        assert table.tflm_commit and table.compiler.startswith("arm-none-eabi-gcc")
        assert table.framework_bytes > 5_000, table.key
        for op in table.ops:
            assert table.ops[op] >= table.framework
        assert "CUSTOM:TFLM_DECODE" in table.ops, f"{table.key} measures the DECODE kernel"
        assert runtime_tables.table_path(table.arch, table.kernels, table.build_type).is_file()


def test_the_cortex_m4_verdict_uses_the_measured_cmsis_nn_build():
    target = load_target("cortex-m4")
    ops = ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX")

    runtime = footprint.runtime_flash(ops, target)

    assert (target.tflm_arch, target.tflm_kernels) == ("cortex-m4+fp", "cmsis-nn")
    assert runtime.measured and runtime.from_table
    assert "cmsis-nn" in runtime.source and "90b983c2" in runtime.source
    assert 30_000 < runtime.total_bytes < 120_000


def test_a_core_no_build_covers_gets_a_labelled_bound():
    from edge_prune.measurement.targets import parse_target

    data = {
        "part": "imaginary part",
        "board": "imaginary board",
        "core": "Cortex-M85",
        "clock_hz": 100_000_000,
        "flash_bytes": 1 << 20,
        "ram_bytes": 1 << 18,
        "reserved_flash_bytes": 0,
        "reserved_ram_bytes": 0,
    }
    target = parse_target(data, "m85")
    ops = ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX")

    runtime = footprint.runtime_flash(ops, target)

    assert not runtime.measured
    assert "no build covers the core of m85 (Cortex-M85)" in runtime.bound_rule
    largest = max(t.runtime_bytes(ops)[0] for t in runtime_tables.shipped_tables())
    assert runtime.total_bytes == largest


SPARSE_FC = "CUSTOM:EDGE_PRUNE_SPARSE_FC"
SPARSE_CONV = "CUSTOM:EDGE_PRUNE_SPARSE_CONV"


def _table_with_sparse_ops():
    """FULLY_CONNECTED and the sparse FC share QuantizeMultiplier and a libgcc routine, as the
    linked firmwares do."""
    framework = [("micro_interpreter.o", ".text.a", 1000)]
    quantize = ("quantization_util.o", ".text._ZN6tflite18QuantizeMultiplierEdPlPi", 112)
    frexp = ("libm.a(lib_a-s_frexp.o)", ".text.frexp", 120)
    ops = {
        "FULLY_CONNECTED": [*framework, ("fc.o", ".text.eval", 3000), quantize, frexp],
        SPARSE_FC: [*framework, ("edge_prune_sparse_ops.o", ".text.fc", 4000), quantize, frexp],
        SPARSE_CONV: [*framework, ("edge_prune_sparse_ops.o", ".text.conv", 4500), quantize],
    }
    return table_from_links(
        framework, ops, arch="cortex-m4+fp", kernels="cmsis-nn", build_type="default", **META
    )


def test_sparse_ops_of_a_table_that_measures_them_are_counted_in_the_union():
    table = _table_with_sparse_ops()
    ops = ["FULLY_CONNECTED", SPARSE_FC, "FULLY_CONNECTED"]

    figure = footprint._table_runtime(table, ops)

    separately = table.runtime_bytes(["FULLY_CONNECTED"])[0] + table.op_bytes(SPARSE_FC)
    assert figure.total_bytes < separately  # QuantizeMultiplier and frexp once
    assert figure.total_bytes == separately - 112 - 120
    union = table.framework | table.ops["FULLY_CONNECTED"] | table.ops[SPARSE_FC]
    assert figure.total_bytes == sum(table.section_bytes[i] for i in union)
    assert figure.measured and figure.from_table and figure.bound_rule == ""
    assert figure.kernel_bytes[SPARSE_FC] == 4000 + 112 + 120
    assert figure.total_bytes != table.runtime_bytes(["FULLY_CONNECTED"])[0] + (
        footprint.SPARSE_KERNELS_BYTES
    )


def test_both_sparse_ops_share_their_helpers_with_each_other():
    table = _table_with_sparse_ops()

    figure = footprint._table_runtime(table, [SPARSE_FC, SPARSE_CONV])

    assert figure.total_bytes == 1000 + 4000 + 4500 + 112 + 120
    assert figure.defaulted_ops == ()


def test_a_table_without_the_sparse_ops_counts_them_at_the_labelled_constant():
    table = _table()  # CONV_2D, FULLY_CONNECTED, SOFTMAX: no sparse op measured

    figure = footprint._table_runtime(table, [SPARSE_FC, SPARSE_CONV, "SOFTMAX"])

    assert figure.total_bytes == table.runtime_bytes(["SOFTMAX"])[0] + (
        footprint.SPARSE_KERNELS_BYTES
    )
    assert not figure.measured and "sparse kernels" in figure.bound_rule
    assert f"not in the {table.key} table" in figure.bound_rule
    assert figure.kernel_bytes == {
        SPARSE_FC: footprint.SPARSE_KERNELS_BYTES,
        SPARSE_CONV: 0,
        "SOFTMAX": table.op_bytes("SOFTMAX"),
    }


def test_shipped_tables_measure_both_sparse_ops_or_neither():
    measured = set()
    for table in runtime_tables.shipped_tables():
        has = {SPARSE_FC, SPARSE_CONV} & set(table.ops)
        assert has in (set(), {SPARSE_FC, SPARSE_CONV}), table.key
        figure = footprint._table_runtime(table, [SPARSE_FC, "RESHAPE"])
        assert figure.measured == bool(has), table.key  # else the labelled constant
        if has:
            measured.add(table.key)
            sparse = table.runtime_bytes([SPARSE_FC, SPARSE_CONV])[0] - table.framework_bytes
            assert 4_000 < sparse < 20_000, (table.key, sparse)
    assert {"cortex-m4+fp_cmsis-nn_default", "cortex-m4+fp_reference_default"} <= measured


def test_the_cortex_m4_verdict_counts_the_sparse_fc_with_fully_connected_once():
    target = load_target("cortex-m4")
    table = runtime_tables.load_table(target.tflm_arch, target.tflm_kernels, "default")
    ops = ("FULLY_CONNECTED", SPARSE_FC, "RESHAPE", "SOFTMAX")

    runtime = footprint.runtime_flash(ops, target)

    dense = table.runtime_bytes(["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"])[0]
    shared = table.ops["FULLY_CONNECTED"] & table.ops[SPARSE_FC] - table.framework
    assert shared, "the sparse FC and CMSIS-NN's FULLY_CONNECTED share code"
    assert runtime.total_bytes < dense + table.op_bytes(SPARSE_FC)
    union = table.framework.union(*(table.ops[op] for op in ops))
    assert runtime.total_bytes == sum(table.section_bytes[i] for i in union)
    assert runtime.measured and runtime.from_table
