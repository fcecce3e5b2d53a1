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
