"""Choosing the artifact to flash among those checked on TFLM."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.measurement.choose import choose_deployable
from edge_prune.measurement.evaluate import ArtifactCheck
from edge_prune.measurement.metrics import MSE


def _report(name, flash_bytes, accuracy, runs=True, missing_op=None) -> ArtifactCheck:
    return ArtifactCheck(
        name=name,
        flash_bytes=flash_bytes,
        runs_on_tflm=runs,
        missing_op=missing_op,
        accuracy=accuracy if runs else None,
    )


def test_chooser_never_picks_a_model_tflm_cannot_run_even_if_smallest(cnn_checks, cnn_artifacts):
    candidates = [cnn_checks["int8-densify"], cnn_checks["float"], cnn_checks["int8"]]

    choice = choose_deployable(candidates, cnn_artifacts["keras_accuracy"], tolerance=100.0)

    assert choice.chosen.name == "int8"
    rejected = dict(choice.rejected)
    assert "does not run on TFLM (no kernel for DENSIFY)" in rejected["int8-densify"]
    assert rejected["float"].startswith("more flash")


def test_chooser_refuses_when_only_unrunnable_models_are_left():
    sparse = _report("int8-densify", 100, None, runs=False, missing_op="DENSIFY")
    with pytest.raises(NoDeployableArtifactError, match="int8-densify: does not run on TFLM"):
        choose_deployable([sparse], dense_score=0.9)


def test_chooser_takes_the_smallest_within_tolerance():
    candidates = [
        _report("int8", 4000, 0.985),
        _report("lut-2bit", 1500, 0.95),  # 4 points below: outside 1.0
        _report("lut-4bit", 2500, 0.98),  # 1 point below: on the edge, allowed
    ]

    choice = choose_deployable(candidates, dense_score=0.99, tolerance=1.0)

    assert choice.chosen.name == "lut-4bit"
    assert "2,500 B" in choice.reason and "within 1 point of" in choice.reason
    rejected = dict(choice.rejected)
    assert "4.00 points below" in rejected["lut-2bit"]
    assert rejected["int8"].startswith("more flash: 4,000 B")


def test_a_wider_tolerance_admits_the_smaller_model():
    candidates = [_report("int8", 4000, 0.985), _report("lut-2bit", 1500, 0.95)]

    choice = choose_deployable(candidates, dense_score=0.99, tolerance=5.0)

    assert choice.chosen.name == "lut-2bit"


def test_chooser_raises_when_every_model_drops_too_much():
    candidates = [_report("int8", 4000, 0.90), _report("lut", 1500, 0.85)]
    with pytest.raises(NoDeployableArtifactError, match=r"int8: TFLM accuracy 90.00% is 9.00"):
        choose_deployable(candidates, dense_score=0.99)


def test_chooser_ignores_a_model_whose_tflm_accuracy_was_not_measured():
    candidates = [_report("lut", 1500, None), _report("int8", 4000, 0.99)]

    choice = choose_deployable(candidates, dense_score=0.99)

    assert choice.chosen.name == "int8"
    assert "not measured" in dict(choice.rejected)["lut"]


@pytest.mark.parametrize(
    ("dense_accuracy", "tolerance", "argument"),
    [(99.0, 1.0, "dense_score"), (0.9, -1.0, "tolerance")],
)
def test_chooser_arguments_out_of_range_are_config_errors(dense_accuracy, tolerance, argument):
    with pytest.raises(ConfigError, match=argument):
        choose_deployable([_report("int8", 1, 0.9)], dense_accuracy, tolerance)


def test_choice_and_reports_are_json_ready(cnn_checks, cnn_artifacts):
    choice = choose_deployable(list(cnn_checks.values()), cnn_artifacts["keras_accuracy"], 100.0)

    data = json.loads(json.dumps(choice.to_dict()))
    assert data["chosen"] == "int8"
    assert {r["name"] for r in data["rejected"]} == {"float", "int8-densify"}
    assert json.loads(json.dumps(cnn_checks["int8-densify"].to_dict()))["missing_op"] == "DENSIFY"


def test_an_artifact_with_a_problem_is_never_chosen_even_if_smallest():
    broken = replace(_report("int8-compressed", 10, 0.99), problem="TFLM outputs differ")
    choice = choose_deployable([broken, _report("int8", 100, 0.99)], dense_score=0.99)
    assert choice.chosen.name == "int8"
    assert dict(choice.rejected)["int8-compressed"] == "TFLM outputs differ"


def test_objective_ram_takes_the_smallest_arena():
    small_flash = replace(_report("lut", 100, 0.99), arena=_arena(9_000))
    small_arena = replace(_report("int8", 300, 0.99), arena=_arena(4_000))
    choice = choose_deployable([small_flash, small_arena], dense_score=0.99, objective="ram")
    assert choice.chosen.name == "int8"
    assert choice.to_dict()["objective"] == "ram"


def test_regression_scores_use_a_relative_tolerance():
    close = replace(_report("int8", 100, None), error=0.105)
    far = replace(_report("lut", 50, None), error=0.2)
    choice = choose_deployable([far, close], dense_score=0.1, tolerance=0.1, metric=MSE)
    assert choice.chosen.name == "int8"
    assert "above the dense" in dict(choice.rejected)["lut"]


def _arena(total: int):
    from edge_prune.measurement.tflm import ArenaMeasurement

    return ArenaMeasurement(
        arena_bytes=total,
        recorded_total_bytes=total,
        recorded_head_bytes=total // 2,
        recorded_tail_bytes=total // 2,
        recorded_with_arena_bytes=total,
        allocation_lines=(),
        categories=(),
    )


def _verdict(target, flatbuffer_bytes, ops):
    from edge_prune.measurement.footprint import Verdict, runtime_flash

    runtime = runtime_flash(ops, target)
    return Verdict(
        target=target,
        runs_on_tflm=True,
        missing_op=None,
        flatbuffer_bytes=flatbuffer_bytes,
        runtime_flash=runtime,
        flash_needed_bytes=flatbuffer_bytes + runtime.total_bytes + target.reserved_flash_bytes,
        ram_needed_bytes=4096 + target.reserved_ram_bytes,
        arena_bytes=4096,
        fits_flash=True,
        fits_ram=True,
    )


def test_a_compressed_candidate_must_still_win_after_its_decoder_code():
    from edge_prune.measurement.targets import load_target

    target = load_target("cortex-m4")
    ops = ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE")
    plain = _verdict(target, 13_000, ops)
    compressed = _verdict(target, 7_000, (*ops, "CUSTOM:TFLM_DECODE"))
    decoder_bytes = compressed.runtime_flash.total_bytes - plain.runtime_flash.total_bytes
    assert decoder_bytes > 6_000, "the DECODE kernel costs code on the device"
    candidates = [_report("int8", 13_000, 0.98), _report("int8-compressed", 7_000, 0.98)]
    verdicts = {"int8": plain, "int8-compressed": compressed}

    choice = choose_deployable(candidates, dense_score=0.98, verdicts=verdicts)

    saved = 13_000 - 7_000
    expected = "int8" if decoder_bytes > saved else "int8-compressed"
    assert choice.chosen.name == expected
    assert "runtime code" in choice.reason


def test_ram_objective_and_reason_use_the_arena_the_verdict_counts():
    # int4 weights: the host check ran reference kernels (filters unpacked into the arena);
    # a CMSIS-NN target's verdict counts the packed arena
    from types import SimpleNamespace

    def Verdict(arena):  # noqa: N802
        runtime = SimpleNamespace(total_bytes=50_000)
        return SimpleNamespace(arena_bytes=arena, runtime_flash=runtime, flatbuffer_bytes=0)

    candidates = [
        ArtifactCheck(name="int8", flash_bytes=4000, runs_on_tflm=True, accuracy=0.98),
        ArtifactCheck(name="int4", flash_bytes=2000, runs_on_tflm=True, accuracy=0.98),
    ]
    verdicts = {"int8": Verdict(6000), "int4": Verdict(3000)}
    choice = choose_deployable(candidates, 0.98, objective="ram", verdicts=verdicts)
    assert choice.chosen.name == "int4" and "arena 3,000 B" in choice.reason
    assert dict(choice.rejected)["int8"] == "larger arena: 6,000 B > 3,000 B"
