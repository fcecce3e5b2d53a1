"""``edge-prune report`` and ``edge-prune targets``: output formats and exit codes 0/1/2."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.cli import main
from edge_prune.measurement.targets import load_target

EDGE_PRUNE = str(Path(sys.executable).with_name("edge-prune"))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_model_that_fits_exits_0_with_a_text_report(capsys, cnn_int8_path):
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7")
    assert code == 0
    assert "Result: fits every target asked (cortex-m7)" in out
    assert "estimate" in out and "measured" in out


def test_model_over_a_tiny_targets_budget_exits_1(capsys, cnn_int8_path, target_file):
    tiny = target_file("tiny", flash_bytes=20_000, reserved_flash_bytes=0)
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                           "--target", tiny)  # fmt: skip
    assert code == 1
    assert "tiny (TEST-PART, Cortex-M4F): DOES NOT FIT (flash)" in out
    assert "does not fit tiny; fits cortex-m7" in out


def test_model_tflm_cannot_run_exits_1_and_says_which_op(capsys, sparse_float_path):
    code, out, _ = run_cli(capsys, "report", sparse_float_path, "--target", "cortex-m55")
    assert code == 1
    assert "does not run on TFLM: DENSIFY" in out
    assert f"flash at rest: {sparse_float_path.stat().st_size:,} B" in out


def test_json_report_says_what_each_figure_counts(capsys, mlp_float_path):
    code, out, _ = run_cli(capsys, "report", mlp_float_path, "--all-targets", "--format", "json")
    report = json.loads(out)
    assert len(report["targets"]) >= 8
    for t in report["targets"]:
        flash, ram = t["flash"], t["ram"]
        assert flash["needed_bytes"] == (
            flash["flatbuffer_bytes"] + flash["runtime_bytes"] + flash["reserved_bytes"]
        )
        assert t["fits"] == (flash["fits"] and ram["fits"])
    assert code == (0 if report["fits_all_targets"] else 1)
    arena = report["footprint"]["arena"]
    assert (
        arena["recorded_head_bytes"] + arena["recorded_tail_bytes"]
        == (arena["recorded_total_bytes"])
    )
    assert "64-bit host" in arena["what"]
    # one runtime figure per target: the target-free bound is not shown beside it
    assert "runtime_flash" not in report["footprint"]
    cortex_m4 = next(t for t in report["targets"] if t["target"] == "cortex-m4")
    assert cortex_m4["flash"]["runtime_kind"] == "measured on a Cortex-M build"


def test_markdown_report_is_appended_to_github_step_summary(
    capsys, monkeypatch, tmp_path, mlp_float_path
):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run_cli(capsys, "report", mlp_float_path, "--target", "cortex-m4",
                           "--format", "markdown")  # fmt: skip
    assert code == 0
    assert out.startswith("### edge-prune footprint")
    written = summary.read_text()
    assert written.startswith("earlier step\n### edge-prune footprint")
    assert "cortex-m4 (nRF52840, Cortex-M4F): FITS" in written
    from edge_prune.measurement.footprint import runtime_flash
    from edge_prune.measurement.tflite_file import read_model

    runtime = runtime_flash(read_model(mlp_float_path).op_types, load_target("cortex-m4"))
    assert f"| cortex-m4 | 4,012 | {runtime.total_bytes:,} (measured) |" in written


def test_missing_model_file_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", tmp_path / "nope.tflite", "--target", "cortex-m4")
    assert code == 2
    assert "nope.tflite: no such file" in err


def test_file_that_is_not_tflite_exits_2(capsys, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_text("this is not a flatbuffer")
    code, _, err = run_cli(capsys, "report", path, "--target", "cortex-m4")
    assert code == 2
    assert "model.tflite: not a TFLite flatbuffer" in err


def test_truncated_flatbuffer_exits_2(capsys, tmp_path, cnn_int8_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(cnn_int8_path.read_bytes()[:2000])
    code, _, err = run_cli(capsys, "report", path, "--target", "cortex-m4")
    assert code == 2
    assert "truncated.tflite: truncated or corrupted TFLite flatbuffer" in err


def test_flatbuffer_that_segfaults_tflm_exits_1_with_a_report_saying_so(
    capsys, tmp_path, cnn_int8_path
):
    # Four random bytes (seed 148) that the flatbuffer reader accepts but that make the TFLM
    # interpreter (pinned tflite-micro) segfault while allocating.
    data = bytearray(cnn_int8_path.read_bytes())
    rng = np.random.default_rng(148)
    for position in rng.integers(8, len(data), size=4):
        data[position] = int(rng.integers(256))
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "report", path, "--target", "cortex-m4", "--format", "json")
    assert code == 1 and err == ""
    report = json.loads(out)
    assert report["footprint"]["tflm_failure_kind"] == "interpreter killed by SIGSEGV"
    assert "killed by SIGSEGV (during allocate" in report["footprint"]["tflm_failure"]
    assert report["targets"][0]["status"] == "does not run on TFLM: interpreter killed by SIGSEGV"


def test_unknown_target_exits_2_with_suggestions(capsys, mlp_float_path):
    code, _, err = run_cli(capsys, "report", mlp_float_path, "--target", "cortex-m3")
    assert code == 2
    assert "unknown target 'cortex-m3': did you mean" in err
    assert "available targets: cortex-m0plus, cortex-m33" in err


@pytest.mark.parametrize(
    ("drop", "changes", "message"),
    [
        (("flash_bytes",), {}, "missing key 'flash_bytes'"),
        ((), {"sram_bytes": 1}, "unknown key 'sram_bytes'"),
        ((), {"reserved_ram_bytes": -4096}, "key 'reserved_ram_bytes' must be non-negative"),
        ((), {"flash_bytes": 1.5e6}, "key 'flash_bytes' must be a non-negative integer"),
    ],
)
def test_bad_target_file_exits_2_naming_file_and_key(
    capsys, target_file, mlp_float_path, drop, changes, message
):
    path = target_file("board", drop=drop, **changes)
    code, _, err = run_cli(capsys, "report", mlp_float_path, "--target", path)
    assert code == 2
    assert f"edge-prune: error: {path}: {message}" in err


def test_report_without_a_target_exits_2(capsys, mlp_float_path):
    code, _, err = run_cli(capsys, "report", mlp_float_path)
    assert code == 2
    assert "--all-targets" in err


def test_targets_lists_the_catalogue(capsys):
    code, out, _ = run_cli(capsys, "targets")
    assert code == 0
    assert out.splitlines()[0].split()[:6] == ["name", "part", "core", "clock", "flash", "RAM"]
    assert "cortex-m4      nRF52840" in out
    assert "240 MHz" in out


def test_targets_dir_option_reads_another_catalogue(capsys, target_file, mlp_float_path):
    path = target_file("lab-board")
    code, out, _ = run_cli(capsys, "targets", "--targets-dir", path.parent, "--format", "json")
    assert code == 0
    assert [t["name"] for t in json.loads(out)] == ["lab-board"]
    code, out, _ = run_cli(capsys, "report", mlp_float_path, "--all-targets",
                           "--targets-dir", path.parent)  # fmt: skip
    assert code == 0 and "lab-board" in out


def test_installed_entry_point_exits_1_when_the_model_does_not_fit(sparse_float_path):
    done = subprocess.run(
        [EDGE_PRUNE, "report", str(sparse_float_path), "--target", "cortex-m4"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "does not run on TFLM: DENSIFY" in done.stdout


# --- One exit contract: 1 with the full report when TFLM cannot run a readable model ---------

SOFTMAX_INPUT_SCALE = 0.0016191084869205952  # of cnn_int8.tflite's dense output (float32)


@pytest.fixture(scope="module")
def aborting_model(tmp_path_factory, cnn_int8_path) -> Path:
    """cnn_int8.tflite with the softmax input scale set to 1e-8: a valid flatbuffer with
    degenerate quantization on which TFLM aborts (SIGABRT) while allocating."""
    data = bytearray(cnn_int8_path.read_bytes())
    scale = struct.pack("<f", np.float32(SOFTMAX_INPUT_SCALE))
    assert data.count(scale) == 1
    at = data.find(scale)
    data[at : at + 4] = struct.pack("<f", 1e-8)
    path = tmp_path_factory.mktemp("abort") / "degenerate_scale.tflite"
    path.write_bytes(bytes(data))
    return path


CANNOT_RUN = {
    "missing op": ((), "DENSIFY", "no kernel for op DENSIFY"),
    "custom op": ((), "CUSTOM:ethos-u", "no kernel for custom op 'ethos-u' (CUSTOM:ethos-u)"),
    "abort": ((), "interpreter killed by SIGABRT", "killed by SIGABRT"),
    "timeout": (("--timeout", "0.001"), "timed out", "did not finish within 0.001 s"),
}


def _cannot_run_model(case, request):
    if case == "missing op":
        return request.getfixturevalue("sparse_float_path")
    if case == "custom op":
        return request.getfixturevalue("ethos_u_path")
    if case == "abort":
        return request.getfixturevalue("aborting_model")
    return request.getfixturevalue("cnn_int8_path")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
@pytest.mark.parametrize("case", list(CANNOT_RUN))
def test_model_tflm_cannot_run_exits_1_with_the_full_report(capsys, request, case, fmt):
    options, reason, detail = CANNOT_RUN[case]
    model = _cannot_run_model(case, request)
    code, out, err = run_cli(capsys, "report", model, "--target", "cortex-m4", "--target",
                             "cortex-m7", "--format", fmt, *options)  # fmt: skip
    assert code == 1 and err == ""
    size = f"{model.stat().st_size:,} B flatbuffer"
    if fmt == "json":
        report = json.loads(out)
        assert not report["fits_all_targets"] and not report["footprint"]["runs_on_tflm"]
        assert detail in report["footprint"]["tflm_failure"]
        statuses = [t["status"] for t in report["targets"]]
        assert statuses == [f"does not run on TFLM: {reason}"] * 2
        assert report["targets"][0]["flash"]["needed_bytes"] > model.stat().st_size
        return
    assert f"does not run on TFLM: {reason} (flash at rest: {size}); fits no target" in " ".join(
        out.split()
    )
    assert f"cortex-m7 (STM32F746NG, Cortex-M7): DOES NOT RUN ON TFLM ({reason})" in out
    assert detail in " ".join(out.split())


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "soon"])
def test_bad_timeout_exits_2_with_one_line(capsys, cnn_int8_path, value):
    code, out, err = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                             f"--timeout={value}")  # fmt: skip
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"edge-prune: error: --timeout {value}: expected a finite number")


# --- Readable: verdict and bars first, at most 100 columns --------------------------------------


@pytest.fixture(scope="module")
def fixture_reports(mlp_float_path, cnn_int8_path, sparse_float_path, aborting_model):
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.report import Report
    from edge_prune.measurement.targets import load_all_targets

    lenet = mlp_float_path.parent / "mlp_int8_lenet.tflite"
    targets = load_all_targets()
    reports = []
    for path in (mlp_float_path, cnn_int8_path, sparse_float_path, lenet, aborting_model):
        footprint = measure(path)
        reports.append(Report(footprint, tuple(verdict_for(footprint, t) for t in targets)))
    return reports


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_every_line_is_at_most_100_columns_on_all_fixtures_and_targets(fixture_reports, fmt):
    from edge_prune.measurement.report import render

    for report in fixture_reports:
        for line in render(report, fmt).splitlines():
            assert len(line) <= 100, f"{report.footprint.source}: {len(line)} columns: {line}"


def test_report_starts_with_a_verdict_line_and_bars_per_target(capsys, cnn_int8_path):
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7")
    lines = out.splitlines()
    assert lines[3].startswith("cortex-m7 (STM32F746NG, Cortex-M7): FITS; headroom flash ")
    assert lines[4].startswith("  flash [#") and "% of 1,048,576 B (" in lines[4]
    assert lines[5].startswith("  RAM   [#") and "% of 327,680 B (" in lines[5]
    assert out.index("Accounting") > out.index("RAM   [")


def test_operator_count_and_op_types_are_two_rows(capsys, mlp_float_path):
    from edge_prune.measurement.tflite_file import read_model

    info = read_model(mlp_float_path)
    assert len(info.operators) != len(info.op_types)  # the two figures differ on this model
    for fmt, sep in (("text", r"\s+"), ("markdown", r" \| ")):
        _, out, _ = run_cli(capsys, "report", mlp_float_path, "--target", "cortex-m4",
                            "--format", fmt)  # fmt: skip
        assert re.search(rf"operators{sep}{len(info.operators)}{sep}operator nodes", out)
        types = re.escape(", ".join(info.op_types))
        assert re.search(rf"op types{sep}{len(info.op_types)}{sep}{types}", out)


def test_bar_shows_the_part_used_and_marks_overflow():
    from edge_prune.measurement.report import bar

    assert bar(61.2, width=10) == "[#######...]"
    assert bar(0.0, width=4) == "[....]"
    assert bar(131.0, width=4) == "[####]!"


def test_one_runtime_figure_per_target(capsys, cnn_int8_path):
    """cortex-m4's figure comes from its measured CMSIS-NN build, and only that one shows."""
    from edge_prune.measurement.footprint import runtime_flash
    from edge_prune.measurement.tflite_file import read_model

    ops = read_model(cnn_int8_path).op_types
    m4 = runtime_flash(ops, load_target("cortex-m4"))
    for fmt in ("text", "markdown"):
        _, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                            "--format", fmt)  # fmt: skip
        flat = " ".join(out.split())
        assert f"{m4.total_bytes:,} (measured)" in out
        assert flat.count("runtime code on cortex-m4:") == 1
        assert "cmsis-nn kernels" in flat and "BOUND" not in flat


def test_a_core_without_a_build_gets_a_labelled_bound(capsys, cnn_int8_path, tmp_path):
    from edge_prune.measurement.footprint import runtime_flash
    from edge_prune.measurement.tflite_file import read_model

    path = tmp_path / "m85.toml"
    path.write_text(
        'part = "x"\nboard = "y"\ncore = "Cortex-M85"\nclock_hz = 1\n'
        "flash_bytes = 2_000_000\nram_bytes = 500_000\n"
        "reserved_flash_bytes = 0\nreserved_ram_bytes = 0\n"
    )
    r = runtime_flash(read_model(cnn_int8_path).op_types, load_target(str(path)))
    _, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", str(path))
    flat = " ".join(out.split())
    assert f"{r.total_bytes:,} (bound)" in out
    assert f"runtime code on m85: {r.total_bytes:,} B, a BOUND: no build covers" in flat


# --- Baseline and growth limit ------------------------------------------------------------------


@pytest.fixture
def mlp_baseline(capsys, tmp_path, mlp_float_path) -> Path:
    code, out, _ = run_cli(capsys, "report", mlp_float_path, "--target", "cortex-m7",
                           "--target", "cortex-m4", "--format", "json")  # fmt: skip
    assert code == 0
    path = tmp_path / "base.json"
    path.write_text(out)
    return path


def test_baseline_shows_the_change_per_target_in_every_format(capsys, mlp_baseline, cnn_int8_path):
    base = json.loads(mlp_baseline.read_text())
    base_m7 = next(t for t in base["targets"] if t["target"] == "cortex-m7")
    outputs = {}
    for fmt in ("text", "markdown", "json"):
        code, outputs[fmt], _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                                        "--baseline", mlp_baseline, "--format", fmt)  # fmt: skip
        assert code == 0
    now = json.loads(outputs["json"])
    changes = {(c["target"], c["figure"]): c for c in now["delta"]["changes"]}
    assert changes[(None, "flatbuffer")]["delta"] == 3_880 - 4_012
    flash = changes[("cortex-m7", "flash needed")]
    now_m7 = now["targets"][0]["flash"]["needed_bytes"]
    assert flash["baseline"] == base_m7["flash"]["needed_bytes"]
    assert flash["delta"] == now_m7 - base_m7["flash"]["needed_bytes"]
    assert ("cortex-m7", "RAM needed") in changes and ("cortex-m7", "arena") in changes
    assert now["baseline"]["file"] == str(mlp_baseline)
    row = f"{base_m7['flash']['needed_bytes']:,} B"
    assert "Change against the baseline" in outputs["text"] and row in outputs["text"]
    assert f"| cortex-m7 | flash needed | {row} |" in outputs["markdown"]


def test_fail_on_growth_exits_1_and_names_the_target(
    capsys, mlp_baseline, cnn_int8_path, mlp_float_path
):
    # mlp_float -> cnn_int8: the runtime code grows with the op set (CONV_2D, DEPTHWISE_CONV_2D,
    # MAX_POOL_2D, RESHAPE beside FULLY_CONNECTED and SOFTMAX), measured per target's build.
    from edge_prune.measurement.footprint import runtime_flash
    from edge_prune.measurement.tflite_file import read_model

    m4 = load_target("cortex-m4")
    before = runtime_flash(read_model(mlp_float_path).op_types, m4)
    after = runtime_flash(read_model(cnn_int8_path).op_types, m4)
    growth = 100 * (after.total_bytes - before.total_bytes) / before.total_bytes
    assert growth > 20
    args = ("report", cnn_int8_path, "--target", "cortex-m7", "--target", "cortex-m4",
            "--baseline", mlp_baseline)  # fmt: skip
    code, out, _ = run_cli(capsys, *args, "--fail-on-growth", f"{growth - 5:.0f}")
    assert code == 1
    assert "cortex-m4 (runtime code)" in " ".join(out.split())
    assert "(flash needed)" not in out
    code, out, _ = run_cli(capsys, *args, "--fail-on-growth", "1000", "--format", "json")
    # the float MLP's 6,700 instructions -> the int8 CNN's ~138,000 (cortex-m4; ~808,000 on the
    # cortex-m7 reference build): the gate compares instructions per inference too, on every
    # build with calibrated costs
    grown = json.loads(out)["delta"]["grown_beyond_limit"]
    assert code == 1 and [(c["target"], c["figure"]) for c in grown] == [
        ("cortex-m7", "instructions"),
        ("cortex-m4", "instructions"),
    ]
    code, out, _ = run_cli(capsys, *args, "--fail-on-growth", "100000", "--format", "json")
    assert code == 0 and json.loads(out)["delta"]["grown_beyond_limit"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("not json at all", "not JSON (line 1 column 1)"),
        ('{"targets": [{"target": "x"}]}', "no footprint report in it"),
        ('{"footprint": {"flatbuffer_bytes": -3}, "targets": []}', "footprint.flatbuffer_bytes"),
    ],
)
def test_bad_baseline_exits_2_naming_the_file_and_what_was_expected(
    capsys, tmp_path, cnn_int8_path, content, message
):
    path = tmp_path / "previous.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                             "--baseline", path)  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"--baseline {path}: " in err and message in err
    assert "expected a report written by `edge-prune report --format json`" in err


def test_fail_on_growth_needs_a_baseline_and_a_percent(capsys, cnn_int8_path, mlp_baseline):
    code, _, err = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                           "--fail-on-growth", "5")  # fmt: skip
    assert code == 2 and "--fail-on-growth needs --baseline" in err
    code, _, err = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                           "--baseline", mlp_baseline, "--fail-on-growth", "-5")  # fmt: skip
    assert code == 2 and "--fail-on-growth -5: expected a percent >= 0" in err


def test_accuracy_change_is_shown_when_both_reports_carry_it(capsys, tmp_path, cnn_int8_path):
    def build_report_json(name: str, accuracy: float) -> Path:
        code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                               "--format", "json")  # fmt: skip
        path = tmp_path / name
        path.write_text(json.dumps({"deployable": {"artifact": "int8"},
                                    "accuracy": {"int8_tflm": accuracy},
                                    "footprint": json.loads(out)}))  # fmt: skip
        return path

    before, now = build_report_json("before.json", 0.95), build_report_json("now.json", 0.9721)
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                           "--baseline", before, "--accuracy-from", now)  # fmt: skip
    assert code == 0
    assert "97.21%" in out and "+2.21 points" in out
    other = tmp_path / "other.json"
    data = json.loads(now.read_text())
    data["footprint"]["footprint"].update(sha256="0" * 64, flatbuffer_bytes=1)
    other.write_text(json.dumps(data))
    code, _, err = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m7",
                           "--accuracy-from", other)  # fmt: skip
    assert code == 2 and "describes another model" in err


def _table_arena(text: str, target: str) -> int:
    """The arena column of ``target``'s row in the text or markdown accounting table."""
    rows = [[c for c in re.split(r"\s{2,}|\s*\|\s*", line.strip(" |")) if c]
            for line in text.splitlines()]  # fmt: skip
    row = next(cells for cells in rows if len(cells) == 8 and cells[0] == target)
    return int(row[5].replace(",", ""))


def test_one_arena_figure_in_the_table_markdown_json_and_model_data_h(capsys, tmp_path):
    """resnet8_int8 on cortex-m4 (CMSIS-NN): its scratch buffers grow the head, so the
    target's figure differs from both inputs; every output shows the target's."""
    model = DATA_DIR / "resnet8_int8.tflite"
    _, text, _ = run_cli(capsys, "report", model, "--target", "cortex-m4",
                         "--emit-c", tmp_path / "fw")  # fmt: skip
    _, markdown, _ = run_cli(capsys, "report", model, "--target", "cortex-m4", "--format",
                             "markdown")  # fmt: skip
    _, js, _ = run_cli(capsys, "report", model, "--target", "cortex-m4", "--format", "json")
    report = json.loads(js)
    arena = report["targets"][0]["ram"]["arena_bytes"]
    inputs = report["targets"][0]["ram"]["arena_inputs"]
    assert arena not in (inputs["host_64bit_bytes"], inputs["reference_32bit_bytes"])
    assert arena == report["targets"][0]["ram"]["needed_bytes"] - 65_536  # reserved RAM
    assert _table_arena(text, "cortex-m4") == arena
    assert _table_arena(markdown, "cortex-m4") == arena
    assert f"arena on cortex-m4: {arena:,} B" in text
    header = (tmp_path / "fw" / "model_data.h").read_text()
    assert f"TensorArenaSize = {arena};" in header
    assert "verdict for cortex-m4 uses" in header
    # no second verdict-like arena in the JSON
    assert "verdict_bytes" not in js and "arena_device_bytes" not in js
