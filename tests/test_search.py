"""`edge-prune search`: choice rule, files, best.toml byte for byte, resume, jobs, refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_prune import cli
from edge_prune.config import PipelineConfig, load_config
from edge_prune.data import load_digits
from edge_prune.errors import ConfigError
from edge_prune.search.point import PointSpec, SearchPoint, SearchSpace, choose_point
from edge_prune.search.render import config_toml

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# One epoch of everything: the point is the plumbing, not accuracy.
TINY = """
[train]
epochs = 2
[prune]
begin_epoch = 0
end_epoch = 1
epochs = 1
frequency = 5
[structured]
epochs = 1
[compress]
epochs = 0
[int4]
enabled = false
[select]
tolerance_points = 100.0
"""
# Three of the four points of ratio 0 or 0.5, sparsity 0.5 or 0.8, 8 clusters.
SPACE = ["--ratios", "0,0.5", "--sparsities", "0.5,0.8", "--clusters", "8"]
GRID = [*SPACE, "--trials", "3"]


def test_a_point_over_the_time_budget_is_not_eligible():
    assert _point(1_000).eligible
    assert not replace(_point(1_000), within_time=False).eligible


def _point(flash: int, ram: int = 50_000, *, fits=True, within=True, sparsity=0.5, key="k"):
    return SearchPoint(
        key=key,
        structured_ratio=0.0,
        final_sparsity=sparsity,
        clusters=8,
        schedule="polynomial",
        measured_sparsity=sparsity,
        artifact="int8",
        build_deploys="int8",
        flatbuffer_bytes=flash - 180_000,
        tflm_score=0.95,
        loss=0.5 if within else 3.0,
        arena_bytes=ram - 40_000,
        runtime_flash_bytes=80_000,
        flash_needed_bytes=flash,
        ram_needed_bytes=ram,
        within_tolerance=within,
        fits_flash=fits,
        fits_ram=True,
        trusted=True,
    )


def test_choice_is_least_flash_not_highest_sparsity():
    points = [
        _point(190_352, sparsity=0.5),
        _point(195_344, sparsity=0.7),  # higher sparsity, larger deployable
        _point(150_000, sparsity=0.9, within=False),  # smallest but outside the tolerance
        _point(140_000, sparsity=0.95, fits=False),
    ]
    assert choose_point(points).final_sparsity == 0.5


def test_choice_ties_on_flash_go_to_less_ram():
    assert choose_point([_point(200_000, 90_000), _point(200_000, 60_000)]).ram_needed_bytes == (
        60_000
    )
    assert choose_point([_point(200_000, fits=False)]) is None


def _result(scores, baseline=0.975, tolerance=1.0):
    import dataclasses

    from edge_prune.measurement.metrics import ACCURACY
    from edge_prune.search.result import SearchResult

    points = tuple(
        dataclasses.replace(_point(150_000 + 10_000 * i, key=str(i)), tflm_score=score)
        for i, score in enumerate(scores)
    )
    return SearchResult(
        "part", 262_144, 65_536, 87_040, 8_192, "m", "digits", 359, ACCURACY, baseline,
        tolerance, points,
    )  # fmt: skip


def test_plot_score_axis_spans_the_tolerance_band_not_a_failed_point():
    from edge_prune.search.render import score_axis

    low, high = score_axis(_result([0.972, 0.968, 0.95, 0.48]))
    assert 93.0 < low < 95.0 and 97.5 < high < 98.5  # 95% shown, 48% drawn at the edge
    low, high = score_axis(_result([0.99, 0.97]))
    assert low < 96.5 and 99.0 < high < 99.5  # the band (96.5-97.5) and both points
    low, high = score_axis(_result([0.975], tolerance=0.0))
    assert low < 97.5 < high  # no band, one point: still a range


def test_pareto_markdown_says_which_arena_the_ram_column_counts():
    from edge_prune.search.render import render_markdown

    text = render_markdown(_result([0.97]))
    assert "64-bit" not in text and "tensor arena on a 32-bit Cortex-M" in text


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"clusters": (8, 8)}, "--clusters: 8 given more than once"),
        ({"ratios": (0.5,), "schedules": ("rewind",)}, "rewinding needs channel ratio 0"),
        ({"ratios": (1.5,)}, r"--ratios: got \(1.5,\), expected channel ratios"),
        ({"bitwidths": (5,)}, "--bitwidths"),
    ],
)
def test_search_space_refuses_repeats_and_empty_spaces(space, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace(**space)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clusters", "8,8"], "--clusters: 8 given more than once"),
        (["--schedules", "rewind", "--ratios", "0.5"], "rewinding needs channel ratio 0"),
        (["--ratios", "2"], "--ratios: 2 is outside [0, 1); a channel ratio is"),
    ],
)
def test_search_arguments_are_bad_input_exit_2(tmp_path, capsys, args, message):
    code = _search(tmp_path, tmp_path / "out", *args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_jobs_are_capped_to_the_cores_with_a_warning(monkeypatch):
    import os

    from edge_prune.commands.search import capped_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    said: list[str] = []
    assert capped_jobs(6, said.append) == 2 and "--jobs 6 capped to 2" in said[0]
    assert capped_jobs(2, said.append) == 2 and len(said) == 1


def test_a_point_spec_keeps_the_lut_width_only_where_it_means_something():
    assert PointSpec(0.5, 0.8, 8, bitwidth=2).bitwidth == 0  # 8 clusters need 3 bits
    assert PointSpec(0.5, 0.8, 0, bitwidth=4).bitwidth == 0
    config = PointSpec(0.0, 0.8, 4, "rewind", 2).config(PipelineConfig())
    assert config.compress.bitwidth == 2 and config.prune.schedule == "rewind"


def test_best_toml_reads_back_as_the_same_config(tmp_path):
    config = PointSpec(0.75, 0.85, 4, "iterative").config(load_config(None))
    path = tmp_path / "best.toml"
    path.write_text(config_toml(config))
    assert load_config(path) == config
    assert config.compress.clusters == 4 and config.structured.ratio == 0.75
    assert config.prune.schedule == "iterative"


def test_point_without_clusters_switches_compression_off():
    config = PointSpec(0.0, 0.9, 0).config(PipelineConfig())
    assert config.compress.enabled is False and config.prune.final_sparsity == 0.9


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    (root / "tiny.toml").write_text(TINY)
    digits = load_digits()
    np.savez(
        root / "small.npz",
        x_train=digits.x_train[:320],
        y_train=digits.y_train[:320],
        x_test=digits.x_test[:80],
        y_test=digits.y_test[:80],
    )
    return root


def _search(root, out, *extra, target="cortex-m4"):
    args = ["search", "--target", str(target), "--config", str(root / "tiny.toml")]
    args += ["--data", str(root / "small.npz"), "--out", str(out), *extra]
    commands = cli.COMMANDS if "search" in cli.COMMANDS else (*cli.COMMANDS, "search")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "COMMANDS", commands)
        return cli.main(args)


@pytest.fixture(scope="module")
def searched(inputs_dir):
    out = inputs_dir / "out"
    code = _search(inputs_dir, out, *GRID, "--jobs", "1")
    return code, out, out / "search-cortex-m4"


def _without_timings(report: dict) -> dict:
    report = {**report, "timings": None}
    if report["best"]:
        report["best"] = {**report["best"], "seconds": None}
    report["points"] = [{**p, "seconds": None} for p in report["points"]]
    return report


@pytest.mark.parametrize(
    ("flag", "message"), [("--trials", "--trials: got 0"), ("--jobs", "--jobs: got 0")]
)
def test_zero_trials_or_jobs_exit_2_before_any_work(tmp_path, capsys, flag, message):
    code = _search(tmp_path, tmp_path / "out", flag, "0")
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_search_writes_pareto_files_best_toml_and_best_build(searched):
    code, _, out = searched
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "best.toml",
        "pareto.csv",
        "pareto.json",
        "pareto.md",
        "pareto.png",
    ]
    assert (out / "pareto.png").read_bytes().startswith(PNG_SIGNATURE)
    names = {p.name for p in (out / "best").iterdir()}
    assert {"model.tflite", "model_data.cc", "report.json", "report.md"} <= names
    report = json.loads((out / "pareto.json").read_text())
    assert len(report["points"]) == 3
    eligible = [p for p in report["points"] if p["eligible"]]
    assert report["best"]["flash_needed_bytes"] == min(p["flash_needed_bytes"] for p in eligible)
    assert "<- chosen" in (out / "pareto.md").read_text()


def test_best_toml_rebuilds_the_best_artifact_byte_for_byte(searched, inputs_dir, tmp_path):
    from edge_prune.deploy import build_model
    from edge_prune.runner import quiet

    _, _, out = searched
    outcome = build_model(
        "cortex-m4",
        load_config(out / "best.toml"),
        data_path=inputs_dir / "small.npz",
        out_dir=tmp_path,
        progress=quiet,
    )
    rebuilt = (outcome.out_dir / "model.tflite").read_bytes()
    assert rebuilt == (out / "best" / "model.tflite").read_bytes()
    assert sorted(p.name for p in outcome.out_dir.iterdir()) == sorted(
        p.name for p in (out / "best").iterdir()
    )


def test_rerun_resumes_from_the_points_cache_without_building(searched, inputs_dir, monkeypatch):
    from edge_prune.search.workshop import Workshop

    _, out_root, out = searched
    before = json.loads((out / "pareto.json").read_text())

    def must_not_build(self, spec):
        raise AssertionError(f"rebuilt {spec}")

    monkeypatch.setattr(Workshop, "build", must_not_build)
    assert _search(inputs_dir, out_root, *GRID) == 0
    after = json.loads((out / "pareto.json").read_text())
    assert after["timings"]["reused_points"] == 3
    assert _without_timings(after) == _without_timings(before)


def test_a_truncated_cached_model_is_rebuilt_with_a_warning(searched, inputs_dir, capsys):
    _, out_root, out = searched
    best = json.loads((out / "pareto.json").read_text())["best"]
    cached = out_root / "search-cortex-m4.cache" / "points" / best["key"] / "model.tflite"
    good = cached.read_bytes()
    cached.write_bytes(good[:100])
    (out_root / "search-cortex-m4.cache" / "shared" / "evil.pkl").write_bytes(
        b"cos\nsystem\n(S'touch /tmp/edge-prune-pwned'\ntR."
    )
    assert _search(inputs_dir, out_root, *GRID) == 0
    err = capsys.readouterr().err
    assert f"WARNING: cache entry {cached}: contents changed" in err
    assert cached.read_bytes() == good == (out / "best" / "model.tflite").read_bytes()
    assert not Path("/tmp/edge-prune-pwned").exists()


def test_two_jobs_build_the_same_points_as_one(searched, inputs_dir):
    _, _, out = searched
    other = inputs_dir / "out-jobs2"
    assert _search(inputs_dir, other, *SPACE, "--trials", "4", "--jobs", "2") == 0
    one = json.loads((out / "pareto.json").read_text())["points"]
    two = json.loads((other / "search-cortex-m4" / "pareto.json").read_text())["points"]
    two_by_key = {p["key"]: {**p, "seconds": None, "pareto": None} for p in two}
    assert len(two_by_key) == 4
    for p in one:
        assert two_by_key[p["key"]] == {**p, "seconds": None, "pareto": None}


def test_target_no_point_fits_exits_1_naming_the_closest(inputs_dir, target_file, capsys):
    tight = target_file("tiny-board", flash_bytes=80_000, reserved_flash_bytes=65_536)
    out = inputs_dir / "out-tight"
    grid = ["--ratios", "0.5", "--sparsities", "0.5", "--clusters", "8", "--trials", "1"]
    assert _search(inputs_dir, out, *grid, target=tight) == 1
    printed = capsys.readouterr().out
    assert "No point fits tiny-board" in printed and "closest: ratio 0.5" in printed
    assert "B flash" in printed
    report = json.loads((out / "search-tiny-board" / "pareto.json").read_text())
    assert report["best"] is None and not (out / "search-tiny-board" / "best").exists()


def test_every_schedule_reaches_the_sparsity_and_its_config_rebuilds_it(inputs_dir, tmp_path):
    from edge_prune.deploy import build_model
    from edge_prune.runner import quiet

    out = inputs_dir / "out-schedules"
    grid = ["--ratios", "0", "--sparsities", "0.8", "--clusters", "0", "--trials", "2"]
    assert _search(inputs_dir, out, *grid, "--schedules", "iterative,rewind") == 0
    report = json.loads((out / "search-cortex-m4" / "pareto.json").read_text())
    assert sorted(p["schedule"] for p in report["points"]) == ["iterative", "rewind"]
    base = load_config(inputs_dir / "tiny.toml")
    for p in report["points"]:
        assert p["measured_sparsity"] == pytest.approx(0.8, abs=0.03)
        # at 80% zeros a sparse form is smaller: TFLM's DECODE encoding or the sparse kernels
        assert p["artifact"] in ("int8-sparse", "int8-pruned")
        toml = tmp_path / f"{p['schedule']}.toml"
        toml.write_text(config_toml(PointSpec(0.0, 0.8, 0, p["schedule"]).config(base)))
        outcome = build_model(
            "cortex-m4",
            load_config(toml),
            data_path=inputs_dir / "small.npz",
            out_dir=tmp_path / p["schedule"],
            progress=quiet,
        )
        cached = out / "search-cortex-m4.cache" / "points" / p["key"] / "model.tflite"
        assert (outcome.out_dir / "model.tflite").read_bytes() == cached.read_bytes()
