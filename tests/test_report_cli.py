"""``edge-prune report`` and ``edge-prune targets``: output formats and exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_prune.cli import main

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
    assert "does not fit (flash)" in out
    assert "does not fit tiny; fits cortex-m7" in out


def test_model_tflm_cannot_run_exits_1_and_says_which_op(capsys, sparse_float_path):
    code, out, _ = run_cli(capsys, "report", sparse_float_path, "--target", "cortex-m55")
    assert code == 1
    assert "does not run on TFLM: DENSIFY" in out
    assert f"flash at rest: {sparse_float_path.stat().st_size:,} B" in out


def test_json_report_says_what_each_figure_counts(capsys, mlp_float_path):
    code, out, _ = run_cli(capsys, "report", mlp_float_path, "--all-targets", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["fits_all_targets"]
    assert len(report["targets"]) >= 6
    arena = report["footprint"]["arena"]
    assert (
        arena["recorded_head_bytes"] + arena["recorded_tail_bytes"]
        == (arena["recorded_total_bytes"])
    )
    assert "64-bit host" in arena["what"]
    assert report["footprint"]["runtime_flash"]["kind"] == "estimate"
    cortex_m4 = next(t for t in report["targets"] if t["target"] == "cortex-m4")
    assert cortex_m4["flash"]["runtime_kind"] == "measured on device (target file)"


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
    assert "| cortex-m4 | nRF52840 |" in written


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


def test_flatbuffer_that_segfaults_tflm_exits_2_and_says_so(capsys, tmp_path, cnn_int8_path):
    # Four random bytes (seed 148) that the flatbuffer reader accepts but that make the TFLM
    # interpreter (pinned tflite-micro) segfault while allocating.
    data = bytearray(cnn_int8_path.read_bytes())
    rng = np.random.default_rng(148)
    for position in rng.integers(8, len(data), size=4):
        data[position] = int(rng.integers(256))
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "report", path, "--target", "cortex-m4")
    assert code == 2
    assert (
        f"edge-prune: error: {path}: TFLM interpreter was killed by SIGSEGV (during allocate" in err
    )


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
