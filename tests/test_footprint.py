"""Footprint measured with the TFLM interpreter, the runtime estimate and the budget verdict."""

from __future__ import annotations

import dataclasses
import math
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime

from edge_prune.errors import DataError, EdgePruneError, ModelFileError, TFLMError
from edge_prune.measurement import footprint, tflm
from edge_prune.measurement.targets import load_target

REPO = Path(__file__).resolve().parent.parent
GOOD_MODELS = ("mlp_float_path", "cnn_int8_path")


def _tflm_in_process(model: bytes, arena_size: int):
    """Allocate and run one inference on zeros in this process (only for known-good models)."""
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
    return interpreter


@pytest.fixture(scope="module")
def measured(mlp_float_path, cnn_int8_path):
    return {p.stem: footprint.measure(p) for p in (mlp_float_path, cnn_int8_path)}


@pytest.mark.parametrize("model_fixture", GOOD_MODELS)
def test_arena_equals_what_tflm_recording_allocator_prints(model_fixture, request, capfd, measured):
    path = request.getfixturevalue(model_fixture)
    interpreter = _tflm_in_process(path.read_bytes(), arena_size=1 << 20)
    capfd.readouterr()
    interpreter.print_allocations()
    printed = capfd.readouterr()
    text = printed.out + printed.err
    total = int(re.search(r"Arena allocation total (\d+) bytes", text).group(1))
    head = int(re.search(r"Arena allocation head (\d+) bytes", text).group(1))
    arena = measured[path.stem].arena
    assert arena.recorded_total_bytes == total
    assert arena.recorded_head_bytes == head
    assert arena.recorded_head_bytes + arena.recorded_tail_bytes == total


def test_two_models_have_different_arenas(measured):
    assert measured["mlp_float"].arena.recorded_total_bytes != (
        measured["cnn_int8"].arena.recorded_total_bytes
    )


@pytest.mark.parametrize("model_fixture", GOOD_MODELS)
def test_reported_arena_runs_and_covers_what_tflm_recorded(model_fixture, request, measured, capfd):
    # The figure is an upper bound of the smallest working size (tests/test_tflm.py holds it
    # against a bisection); the model must run with it, and it cannot be below TFLM's record.
    path = request.getfixturevalue(model_fixture)
    arena = measured[path.stem].arena
    _tflm_in_process(path.read_bytes(), arena_size=arena.arena_bytes)
    assert arena.arena_bytes >= arena.recorded_total_bytes
    assert measured[path.stem].arena_bytes == arena.device_total_bytes  # the 32-bit figure


def test_footprint_lists_flatbuffer_size_and_ops(measured, cnn_int8_path):
    cnn = measured["cnn_int8"]
    assert cnn.flatbuffer_bytes == cnn_int8_path.stat().st_size
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(cnn.ops)
    assert cnn.runs_on_tflm and cnn.missing_op is None


def test_sparse_encoded_model_does_not_run_on_tflm_and_never_fits(sparse_float_path):
    sparse = footprint.measure(sparse_float_path)
    assert not sparse.runs_on_tflm
    assert sparse.missing_op == "DENSIFY"
    assert sparse.arena is None
    verdict = footprint.verdict_for(sparse, load_target("cortex-m55"))
    assert not verdict.fits
    assert verdict.status == "does not run on TFLM: DENSIFY"


@pytest.mark.parametrize("name", ["cortex-m7", "cortex-m0plus", "nrf52810", "cortex-m55"])
def test_without_a_target_figure_the_verdict_uses_the_build_of_its_core(measured, name):
    from edge_prune.measurement import runtime_tables

    target = load_target(name)
    verdict = footprint.verdict_for(measured["cnn_int8"], target)
    runtime = verdict.runtime_flash
    table = runtime_tables.load_table(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    if table is not None:  # a build of this core was measured: the figure is its own
        assert runtime.measured and runtime.from_table and runtime.kind.startswith("measured")
        assert f"built for {target.tflm_arch}, {target.tflm_kernels} kernels" in runtime.source
    else:  # labelled bound from the builds that were measured
        assert not runtime.measured and "no build covers" in runtime.bound_rule
    assert verdict.flash_needed_bytes == (
        measured["cnn_int8"].flatbuffer_bytes + runtime.total_bytes + target.reserved_flash_bytes
    )


def test_a_target_giving_framework_and_every_kernel_counts_as_measured(target_file, measured):
    ops = measured["mlp_float"].ops
    path = target_file("lab")
    kernels = "".join(f"{op} = 2000\n" for op in ops)
    path.write_text(
        path.read_text() + f"[runtime]\nframework_flash_bytes = 30000\n"
        f'source = "linker map"\n[runtime.kernel_flash_bytes]\n{kernels}'
    )
    runtime = footprint.runtime_flash(ops, load_target(str(path)))
    assert runtime.measured and runtime.total_bytes == 30_000 + 2_000 * len(ops)


def test_a_whole_runtime_figure_is_not_reported_as_the_framework(target_file, measured):
    ops = measured["mlp_float"].ops
    path = target_file("whole")
    path.write_text(path.read_text() + "[runtime]\nruntime_flash_bytes = 84528\n")
    whole = footprint.runtime_flash(ops, load_target(str(path))).to_dict()
    assert whole["total_bytes"] == 84_528 and whole["framework_bytes"] is None
    assert whole["framework_what"].startswith("not known separately")
    assert whole["total_what"] == "the figure the verdict uses: measured (target file)"
    table = footprint.runtime_flash(ops, load_target("cortex-m4")).to_dict()
    assert 0 < table["framework_bytes"] < table["total_bytes"]
    assert table["framework_what"] == "TFLM framework code alone, without kernels"
    assert table["total_what"] == "the figure the verdict uses: measured on a Cortex-M build"


def test_the_ram_text_says_what_the_arena_figure_holds(measured, sparse_float_path):
    cnn = measured["cnn_int8"]
    m4 = footprint.verdict_for(cnn, load_target("cortex-m4")).to_dict()["ram"]  # CMSIS-NN build
    m7 = footprint.verdict_for(cnn, load_target("cortex-m7")).to_dict()["ram"]  # reference kernels
    cmsis = m4["arena_inputs"]["cmsis_nn"]
    # the reference figure + the two extras, or (cnn_int8 on cortex-m4: its 3 convolutions'
    # scratch requests) the larger peak while TFLM plans the arena, said as such
    assert m4["arena_bytes"] >= (
        m4["arena_inputs"]["reference_32bit_bytes"] + cmsis["head_extra_bytes"]
        + cmsis["tail_extra_bytes"]
    )  # fmt: skip
    assert m4["arena_bytes"] == cmsis["planning_peak_bytes"]
    assert f"{m4['arena_bytes']:,} B held while TFLM plans the arena" in m4["what"]
    assert "CMSIS-NN kernels (DSP code path of cortex-m4+fp)" in m4["what"]
    assert "derived per operator" in m4["what"] and "margin" not in m4["what"]
    assert m7["arena_bytes"] == m7["arena_inputs"]["reference_32bit_bytes"]
    assert "reference kernels" in m7["what"] and "cmsis_nn" not in m7["arena_inputs"]
    cannot_run = footprint.verdict_for(
        footprint.measure(sparse_float_path), load_target("cortex-m7")
    )
    ram = cannot_run.to_dict()["ram"]
    assert ram["arena_bytes"] is None and ram["what"].startswith("tensor arena: unknown")


def test_ram_needed_uses_the_32_bit_arena_not_the_host_one(measured, target_file):
    cnn = measured["cnn_int8"]
    host = cnn.arena.arena_bytes
    assert cnn.arena.device_total_bytes < host  # 64-bit tail on the host
    # Stands in for a measurement with a given 32-bit figure (device_total_bytes).
    fields = {f.name: getattr(cnn.arena, f.name) for f in dataclasses.fields(cnn.arena)}
    with_device = SimpleNamespace(**fields)
    with_device.device_total_bytes = host + 500
    with_device.verdict_bytes = host + 500
    verdict = footprint.verdict_for(
        dataclasses.replace(cnn, arena=with_device), load_target(str(target_file()))
    )
    assert verdict.arena_host_bytes == host
    assert verdict.arena_device_bytes == host + 500
    assert verdict.ram_needed_bytes == host + 500 + 32_768


def test_a_tflm_abort_on_a_valid_model_is_reported_not_raised(cnn_int8_path, tmp_path):
    data = bytearray(cnn_int8_path.read_bytes())
    scale = struct.pack("<f", np.float32(0.0016191084869205952))  # softmax input scale
    at = data.find(scale)
    data[at : at + 4] = struct.pack("<f", 1e-8)
    result = footprint.measure(bytes(data))
    assert not result.runs_on_tflm and result.arena is None
    assert result.tflm_failure_kind == "interpreter killed by SIGABRT"
    assert result.tflm_failure.startswith("TFLM interpreter was killed by SIGABRT")
    verdict = footprint.verdict_for(result, load_target("cortex-m55"))
    assert not verdict.fits
    assert verdict.status == "does not run on TFLM: interpreter killed by SIGABRT"


def test_a_timeout_is_reported_as_does_not_run(cnn_int8_path):
    result = footprint.measure(cnn_int8_path, timeout_s=0.001)
    assert not result.runs_on_tflm and result.tflm_failure_kind == "timed out"
    assert "did not finish within 0.001 s" in result.tflm_failure


def test_an_op_no_build_measured_is_counted_at_the_largest_op_and_labelled():
    runtime = footprint.runtime_flash(("FULLY_CONNECTED", "CUSTOM:my_op"), load_target("cortex-m4"))
    assert runtime.defaulted_ops == ("CUSTOM:my_op",)
    assert not runtime.measured
    assert "CUSTOM:my_op not in the table" in runtime.bound_rule
    assert runtime.kernel_bytes["CUSTOM:my_op"] == max(runtime.kernel_bytes.values())


def test_target_can_override_single_kernels(target_file, measured):
    path = target_file("custom")
    path.write_text(path.read_text() + "[runtime.kernel_flash_bytes]\nSOFTMAX = 100\n")
    runtime_flash = footprint.runtime_flash(measured["mlp_float"].ops, load_target(str(path)))
    assert runtime_flash.kernel_bytes["SOFTMAX"] == 100
    assert "[runtime]" in runtime_flash.source and "over TFLM" in runtime_flash.source


def test_verdict_adds_model_runtime_and_reserved_against_the_part(measured, target_file):
    cnn = measured["cnn_int8"]
    target = load_target(str(target_file()))
    verdict = footprint.verdict_for(cnn, target)
    runtime = footprint.runtime_flash(cnn.ops, target)  # the cortex-m4+fp reference table
    assert runtime.measured and runtime.from_table and "reference" in runtime.source
    flash = cnn.flatbuffer_bytes + runtime.total_bytes + 65_536
    assert verdict.runtime_flash == runtime
    assert verdict.flash_needed_bytes == flash
    assert verdict.flash_headroom_bytes == 1_048_576 - flash
    assert verdict.ram_needed_bytes == cnn.arena_bytes + 32_768
    assert verdict.ram_headroom_percent == pytest.approx(
        100 * (262_144 - cnn.arena_bytes - 32_768) / 262_144
    )
    assert verdict.fits


def test_model_over_a_tiny_target_does_not_fit_with_negative_headroom(measured, target_file):
    cnn = measured["cnn_int8"]
    tiny = target_file("tiny", flash_bytes=16_384, ram_bytes=1_024, reserved_flash_bytes=0,
                       reserved_ram_bytes=0)  # fmt: skip
    verdict = footprint.verdict_for(cnn, load_target(str(tiny)))
    assert not verdict.fits and not verdict.fits_flash and not verdict.fits_ram
    assert verdict.flash_headroom_bytes < 0
    assert verdict.status == "does not fit (flash and RAM)"


def test_tflm_run_matches_the_interpreter_in_process(mlp_float_path, capfd):
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    outputs = tflm.run(mlp_float_path, x)
    interpreter = _tflm_in_process(mlp_float_path.read_bytes(), arena_size=1 << 20)
    interpreter.set_input(x[2:3], 0)
    interpreter.invoke()
    assert outputs.shape == (5, 1, 4)
    np.testing.assert_array_equal(outputs[2], interpreter.get_output(0))


def test_tflm_run_rejects_input_of_the_wrong_dtype(cnn_int8_path):
    with pytest.raises(DataError, match="input dtype is float32, the model expects int8"):
        tflm.run(cnn_int8_path, np.zeros((1, 12, 12, 1), np.float32))


def test_tflm_run_names_the_missing_op(sparse_float_path):
    with pytest.raises(tflm.MissingOpError, match="DENSIFY") as e:
        tflm.run(sparse_float_path, np.zeros((1, 64), np.float32))
    assert e.value.op == "DENSIFY"


def _fake_child(tmp_path, monkeypatch, body: str) -> None:
    """Point edge_prune.measurement.tflm at a stand-in child process module (crash or hang on
    purpose)."""
    (tmp_path / "fake_tflm_child.py").write_text(textwrap.dedent(body))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(tflm, "_CHILD_MODULE", "fake_tflm_child")


def test_a_segfault_in_the_interpreter_becomes_a_tflm_error(tmp_path, monkeypatch, mlp_float_path):
    _fake_child(tmp_path, monkeypatch, """
        import os, signal, sys
        from pathlib import Path
        with open(Path(sys.argv[1]) / "log.txt", "w") as log:
            log.write("@@edge-prune-stage allocate arena_size=1048576\\n")
        os.kill(os.getpid(), signal.SIGSEGV)
    """)  # fmt: skip
    with pytest.raises(TFLMError, match=r"killed by SIGSEGV \(during allocate arena_size=1048576"):
        tflm.measure_arena(mlp_float_path)


def test_a_hanging_interpreter_is_killed_after_the_timeout(tmp_path, monkeypatch, mlp_float_path):
    _fake_child(tmp_path, monkeypatch, "import time\ntime.sleep(60)\n")
    with pytest.raises(TFLMError, match="did not finish within 1 s"):
        tflm.measure_arena(mlp_float_path, timeout_s=1)


def test_randomly_corrupted_models_never_take_the_caller_down(cnn_int8_path):
    original = cnn_int8_path.read_bytes()
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(12):
        data = bytearray(original)
        for position in rng.integers(8, len(data), size=20):
            data[position] = int(rng.integers(256))
        try:
            footprint.measure(bytes(data))
            outcomes.add("measured")
        except (ModelFileError, TFLMError) as e:
            outcomes.add(type(e).__name__)
        except EdgePruneError as e:  # pragma: no cover - would be a wrong error class
            pytest.fail(f"unexpected {type(e).__name__}: {e}")
    assert outcomes & {"ModelFileError", "TFLMError"}


def test_report_path_never_imports_tensorflow(cnn_int8_path):
    code = (
        "import sys\n"
        "from edge_prune.cli import main\n"
        f"main(['report', {str(cnn_int8_path)!r}, '--all-targets', '--format', 'json'])\n"
        "main(['targets'])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('no tensorflow')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no tensorflow")


def test_arena_search_goes_on_when_a_too_small_arena_crashes_tflm():
    # An untrained 64-300-100-10 int8 MLP (random weights, 80% zeroed, converted once and
    # committed) on which TFLM segfaults instead of failing cleanly at some arena sizes below
    # the working one (5,232 B with the pinned tflite-micro). The search must treat such a
    # crash as "too small" and go on.
    from edge_prune.measurement import tflm

    path = Path(__file__).parent / "data" / "mlp_int8_lenet.tflite"
    arena = tflm.measure_arena(path)
    assert arena.recorded_total_bytes <= arena.arena_bytes
    x = np.zeros((1, 64), dtype=np.int8)
    assert tflm.run(path, x, arena_bytes=arena.arena_bytes).shape[0] == 1


def test_a_cmsis_nn_target_counts_the_larger_arena_those_kernels_need(measured):
    cnn = measured["cnn_int8"]
    cortex_m4, cortex_m7 = load_target("cortex-m4"), load_target("cortex-m7")
    assert (cortex_m4.tflm_kernels, cortex_m7.tflm_kernels) == ("cmsis-nn", "reference")

    m4, m7 = footprint.verdict_for(cnn, cortex_m4), footprint.verdict_for(cnn, cortex_m7)

    assert m7.arena_bytes == cnn.arena_bytes
    # its conv asks for a 48 B im2col buffer (it fits the plan), its OpData are larger
    assert [r.bytes for r in m4.kernel_arena.scratch] == [48]
    assert m4.arena_bytes == cnn.arena.device_total_with(
        tail_extra=m4.kernel_arena.tail_extra_bytes,
        head_extra=m4.kernel_arena.head_extra_bytes,
        scratch_requests=1,
    )
    assert m4.arena_bytes > m7.arena_bytes
    assert m4.ram_needed_bytes == m4.arena_bytes + cortex_m4.reserved_ram_bytes


def test_headroom_inside_the_runtime_figures_error_is_said_and_points_to_device(
    mlp_float_path, target_file
):
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.targets import load_target

    footprint = measure(mlp_float_path)
    wide = verdict_for(footprint, load_target("cortex-m4"))  # CMSIS-NN table, checked
    error = wide.runtime_flash.error
    assert error.checked and error.high_percent > 0
    assert wide.runtime_flash.error_bytes == math.ceil(
        wide.runtime_flash.total_bytes * error.high_percent / 100
    )
    assert not [w for w in wide.warnings if "headroom" in w]
    reserved = wide.target.reserved_flash_bytes
    tight = target_file("tight", tflm_kernels="cmsis-nn", reserved_flash_bytes=reserved,
                        flash_bytes=wide.flash_needed_bytes + 100)  # fmt: skip
    verdict = verdict_for(footprint, load_target(str(tight)))
    assert verdict.fits and verdict.flash_headroom_bytes == 100
    (warning,) = [w for w in verdict.warnings if "headroom" in w]
    assert "flash headroom 100 B is inside" in warning and "edge-prune device" in warning
    assert verdict.to_dict()["warnings"] == [warning]


def test_a_build_never_checked_carries_a_labelled_bound():
    from edge_prune.measurement.runtime_tables import table_error

    bound = table_error("cortex-m33_cmsis-nn_default")  # no table: no check
    assert not bound.checked and "BOUND" in bound.describe() and "not checked" in bound.how
    assert bound.high_percent >= table_error("cortex-m4+fp_cmsis-nn_default").high_percent
