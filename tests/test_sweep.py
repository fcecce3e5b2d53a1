"""`edge-prune sweep`: the marked sparsity, the files it writes, and refusals of bad input."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from edge_prune.cli import main
from edge_prune.data import load_digits
from edge_prune.errors import ConfigError
from edge_prune.sweep import SweepPoint, SweepResult, parse_sparsities, render_csv, render_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# One epoch of everything and no cluster fine-tuning: the point is the plumbing, not accuracy.
TINY = """
[train]
epochs = 1
[prune]
begin_epoch = 0
end_epoch = 1
epochs = 1
frequency = 5
[compress]
clusters = 8
epochs = 0
[select]
tolerance_points = 100.0
"""


def _point(sparsity: float, accuracy: float | None, fits: bool, size: int = 20_000) -> SweepPoint:
    within = accuracy is not None
    return SweepPoint(
        final_sparsity=sparsity,
        measured_sparsity=sparsity,
        pruned_keras_accuracy=0.9,
        int8_bytes=45_000,
        int8_tflm_accuracy=0.9,
        sparse_bytes=40_000,
        sparse_runs_on_tflm=False,
        compressed_bytes=size,
        compressed_tflm_accuracy=accuracy,
        deployable="int8-clustered-lut" if within else None,
        deployable_bytes=size if within else None,
        deployable_tflm_accuracy=accuracy,
        arena_bytes=30_000 if within else None,
        runtime_flash_bytes=80_000 if within else None,
        flash_needed_bytes=190_000 if within else None,
        ram_needed_bytes=100_000 if within else None,
        fits_target=fits,
        choice="test" if within else "no candidate within tolerance",
        seconds=1.0,
    )


def _result(points) -> SweepResult:
    return SweepResult(
        target_name="cortex-m4",
        target_part="nRF52840",
        flash_bytes=1_048_576,
        reserved_flash_bytes=87_040,
        runtime_flash_bytes=84_528,
        runtime_flash_kind="estimate",
        model_name="digits_cnn",
        data_source="digits",
        test_samples=359,
        dense_keras_accuracy=0.97,
        baseline_accuracy=0.97,
        tolerance_points=1.0,
        points=tuple(points),
    )


def test_best_is_least_flash_within_tolerance_that_fits():
    result = _result(
        [
            replace(_point(0.5, 0.970, fits=True), flash_needed_bytes=195_000),
            _point(0.8, 0.965, fits=True),
            _point(0.9, 0.962, fits=False),  # within tolerance, does not fit
            _point(0.95, None, fits=False),  # no artifact within tolerance
        ]
    )
    assert result.best.final_sparsity == 0.8
    assert "0.8 (int8-clustered-lut" in result.conclusion()
    marked = [row for row in result.to_markdown().splitlines() if "<- best" in row]
    assert len(marked) == 1 and marked[0].startswith("| 0.8 |")


def test_no_best_when_no_sparsity_fits():
    result = _result([_point(0.5, 0.97, fits=False), _point(0.9, None, fits=False)])
    assert result.best is None
    assert "none of the sparsities swept" in result.conclusion()
    assert result.to_dict()["best_sparsity"] is None


def test_csv_has_one_row_per_sparsity_and_flags_the_best():
    smaller = replace(_point(0.9, 0.965, fits=True), flash_needed_bytes=180_000)
    result = _result([_point(0.5, 0.97, fits=True), smaller])
    rows = list(csv.DictReader(render_csv(result).splitlines()))
    assert [r["final_sparsity"] for r in rows] == ["0.5", "0.9"]
    assert [r["best"] for r in rows] == ["False", "True"]


def test_plot_is_a_png_even_with_missing_values():
    result = _result([_point(0.5, 0.97, fits=True), _point(0.95, None, fits=False)])
    png = render_plot(replace(result, tolerance_points=200.0))  # floor below 0: no floor line
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5,abc", "'abc' is not a number"),
        ("0.5,1.0", "outside \\[0, 0.99\\]"),
        ("0.995", "outside \\[0, 0.99\\]"),
        ("-0.1", "outside"),
        ("0.5,0.5", "more than once"),
        ("0.5,,0.9", "comma-separated"),
        ("", "comma-separated"),
    ],
)
def test_bad_sparsities_are_refused_with_the_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sparsities(text)


def test_sparsities_are_sorted():
    assert parse_sparsities(" 0.9, 0, 0.5 ") == (0.0, 0.5, 0.9)


def test_bad_sparsities_exit_2_before_any_work(tmp_path, capsys):
    code = main(["sweep", "--target", "cortex-m4", "--sparsities", "0.5,2", "--out", str(tmp_path)])
    assert code == 2
    assert "--sparsities: 2 is outside [0, 0.99]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    config = root / "tiny.toml"
    config.write_text(TINY)
    digits = load_digits()
    data = root / "small.npz"  # a quarter of the digits: fewer steps, fewer TFLM runs
    np.savez(
        data,
        x_train=digits.x_train[:320],
        y_train=digits.y_train[:320],
        x_test=digits.x_test[:80],
        y_test=digits.y_test[:80],
    )
    args = ["sweep", "--target", "cortex-m4", "--sparsities", "0.5,0.9"]
    args += ["--config", str(config), "--data", str(data), "--out", str(root / "out")]
    code = main(args)
    return code, root / "out" / "sweep-cortex-m4"


def test_sweep_writes_table_csv_json_and_png(swept):
    code, out = swept
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "sweep.csv",
        "sweep.json",
        "sweep.md",
        "sweep.png",
    ]
    assert (out / "sweep.png").read_bytes().startswith(PNG_SIGNATURE)
    table = (out / "sweep.md").read_text()
    assert "| 0.5 |" in table and "| 0.9 |" in table and "<- best" in table
    assert len(list(csv.DictReader((out / "sweep.csv").read_text().splitlines()))) == 2


def test_sweep_points_reach_their_sparsity_and_the_sparse_model_runs_on_tflm_and_shrinks(swept):
    _, out = swept
    points = json.loads((out / "sweep.json").read_text())["points"]
    for p in points:
        assert p["measured_sparsity"] == pytest.approx(p["final_sparsity"], abs=0.03)
        assert p["sparse_runs_on_tflm"] is True  # TFLM DECODE encodings, not DENSIFY
        assert p["compressed_bytes"] < p["int8_bytes"]
    assert points[1]["sparse_bytes"] < points[0]["sparse_bytes"]


def test_marked_sparsity_is_within_tolerance_and_budget(swept):
    _, out = swept
    report = json.loads((out / "sweep.json").read_text())
    best = report["best"]
    floor = report["baseline_accuracy"] - report["tolerance_points"] / 100
    assert best["deployable_tflm_accuracy"] >= floor
    assert best["flash_needed_bytes"] <= report["flash_budget"]["part_flash_bytes"]
    assert best["deployable_bytes"] <= report["flash_budget"]["bytes"]
    eligible = [p for p in report["points"] if p["within_tolerance"] and p["fits_target"]]
    assert best["flash_needed_bytes"] == min(p["flash_needed_bytes"] for p in eligible)
