"""The time figure per candidate and the time budget: target files, the choice, the report."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge_prune.cli import main
from edge_prune.errors import ConfigError
from edge_prune.measurement import instructions, timing
from edge_prune.measurement.choose import choose_deployable, choose_for_target
from edge_prune.measurement.evaluate import ArtifactCheck
from edge_prune.measurement.targets import load_target


def _estimate(per_key: dict[str, int], missing: tuple[str, ...] = ()):
    return instructions.InstructionEstimate(
        total=sum(per_key.values()),
        per_key=per_key,
        not_estimated=missing,
        measured=False,
        source="test",
    )


def test_board_table_gives_cycles_per_instruction_per_op_type():
    target = load_target("cortex-m4")
    factors = {f.op: f for f in timing.cpi_factors(target)}
    fc = factors["FULLY_CONNECTED"]
    costs = instructions.cost_model(target)
    assert fc.board_cycles_per_mac == pytest.approx(1 / 0.1863)
    assert fc.instructions_per_mac == pytest.approx(costs.per_unit["FULLY_CONNECTED:int8"])
    assert fc.factor == pytest.approx(fc.measured) and fc.factor > 1


def test_time_scales_board_ops_and_bounds_the_rest():
    target = load_target("cortex-m4")
    fc = {f.op: f.factor for f in timing.cpi_factors(target)}["FULLY_CONNECTED"]
    figure = timing.time_figure(
        _estimate({"FULLY_CONNECTED:int8+int4": 64_000, "SOFTMAX:int8": 6_400}), target
    )
    assert figure.cycles == round(64_000 * fc + 6_400)
    assert figure.ms == pytest.approx(1000 * figure.cycles / 64e6)
    assert figure.scaled_ops == ("FULLY_CONNECTED:int8+int4",)
    assert figure.kind.startswith("estimate") and not figure.lower_bound


def test_without_a_board_table_the_time_is_a_lower_bound():
    target = replace(load_target("cortex-m4"), throughput=None)
    figure = timing.time_figure(_estimate({"FULLY_CONNECTED:int8": 640_000}), target)
    assert figure.ms == pytest.approx(10.0)
    assert figure.lower_bound and figure.label() == ">= 10.00 ms"


def test_a_board_faster_than_the_count_allows_is_held_at_one_cycle_per_instruction():
    factor = timing.CpiFactor("DEPTHWISE_CONV_2D", board_cycles_per_mac=2.0, instructions_per_mac=4)
    assert factor.measured == 0.5 and factor.factor == 1.0


def test_budget_is_the_tighter_of_the_option_and_the_target_file():
    target = replace(load_target("cortex-m4"), latency_ms=5.0)
    assert timing.budget_ms(target, 3.0) == 3.0
    assert timing.budget_ms(target, 0.0) == 5.0
    assert timing.budget_ms(replace(target, latency_ms=None), None) is None


def test_over_budget_says_why_and_an_incomplete_figure_cannot_meet_a_budget():
    target = load_target("cortex-m4")
    figure = timing.time_figure(_estimate({"SOFTMAX:int8": 640_000}), target)
    assert timing.over_budget(figure, 20.0) is None
    assert "over the time budget: >= 10.00 ms > 5 ms" in timing.over_budget(figure, 5.0)
    partial = timing.time_figure(_estimate({"SOFTMAX:int8": 64}, ("CUSTOM:X",)), target)
    assert "cannot be checked" in timing.over_budget(partial, 1000.0)
    assert timing.over_budget(None, None) is None


@pytest.mark.parametrize("value", [-1, 0, "5", float("inf")])
def test_target_latency_ms_must_be_a_positive_number(target_file, value):
    path = target_file("slow", latency_ms=value)
    with pytest.raises(ConfigError, match=r"slow\.toml: key 'latency_ms' must be a positive"):
        load_target(path)


def test_target_latency_ms_is_read(target_file):
    assert load_target(target_file("timed", latency_ms=12.5)).latency_ms == 12.5


def _check(name: str, flash: int) -> ArtifactCheck:
    return ArtifactCheck(name=name, flash_bytes=flash, runs_on_tflm=True, accuracy=0.98)


def test_candidate_over_the_budget_is_not_chosen_and_says_so(target_file):
    verdict = _FakeVerdict()
    checks = [_check("small-slow", 1000), _check("large-fast", 4000)]
    choice = choose_for_target(
        checks,
        {"small-slow": verdict, "large-fast": verdict},
        0.98,
        1.0,
        "cortex-m4",
        over_budget={"small-slow": "over the time budget: 9.00 ms > 5 ms", "large-fast": None},
    )
    assert choice.chosen.name == "large-fast"
    assert dict(choice.rejected)["small-slow"] == "over the time budget: 9.00 ms > 5 ms"


def test_objective_time_takes_the_fastest():
    checks = [_check("a", 1000), _check("b", 4000)]
    choice = choose_deployable(checks, 0.98, objective="time", times_ms={"a": 9.0, "b": 2.0})
    assert choice.chosen.name == "b"
    assert dict(choice.rejected)["a"] == "slower: 9.00 ms > 2.00 ms per inference"


class _FakeVerdict:
    fits = True
    flatbuffer_bytes = 0
    arena_bytes = None

    class runtime_flash:  # noqa: N801
        total_bytes = 0


def test_report_exits_1_when_the_model_misses_the_budget(capsys, cnn_int8_path):
    code = main(["report", str(cnn_int8_path), "--target", "cortex-m4", "--max-latency-ms",
                 "0.001", "--format", "json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["time_budget_missed"][0]["target"] == "cortex-m4"
    time = report["targets"][0]["time"]
    assert time["instructions_per_inference"] > 0 and time["clock_hz"] == 64_000_000
    assert "MISSES the time budget on cortex-m4" in report["summary"]


def test_report_within_the_budget_shows_the_time_and_exits_0(capsys, cnn_int8_path):
    code = main(["report", str(cnn_int8_path), "--target", "cortex-m4", "--max-latency-ms", "1000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "M instr" in out and "at 64 MHz" in out and "budget 1000 ms: met" in out


def test_report_refuses_a_non_positive_budget(capsys, cnn_int8_path):
    code = main(["report", str(cnn_int8_path), "--target", "cortex-m4", "--max-latency-ms", "0"])
    assert code == 2
    assert "--max-latency-ms 0: expected milliseconds > 0" in capsys.readouterr().err


def test_growth_gate_compares_instructions(cnn_int8_path):
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.report import Baseline, Report, TargetFigures

    target = load_target("cortex-m4")
    footprint = measure(cnn_int8_path)
    verdict = verdict_for(footprint, target)
    time = timing.estimate_time(cnn_int8_path.read_bytes(), target)
    figures = TargetFigures(
        verdict.flash_needed_bytes,
        verdict.ram_needed_bytes,
        verdict.arena_bytes,
        verdict.runtime_flash.total_bytes,
        instructions=time.instructions // 2,
    )
    baseline = Baseline("base.json", footprint.flatbuffer_bytes, {"cortex-m4": figures})
    report = Report(footprint, (verdict,), baseline=baseline, growth_limit_percent=5, times=(time,))
    grown = [c.figure for c in report.growth_failures]
    assert grown == ["instructions"] and not report.passes
    assert "+100.0%" in report.to_text()
