"""Choosing the artifact to flash among those checked on TFLM."""

from __future__ import annotations

import json

import pytest

from edge_prune.choose import choose_deployable
from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.evaluate import ArtifactCheck


def _report(name, flash_bytes, accuracy, runs=True, missing_op=None) -> ArtifactCheck:
    return ArtifactCheck(
        name=name,
        flash_bytes=flash_bytes,
        runs_on_tflm=runs,
        missing_op=missing_op,
        accuracy=accuracy if runs else None,
    )


def test_chooser_never_picks_a_model_tflm_cannot_run_even_if_smallest(cnn_checks, cnn_artifacts):
    candidates = [cnn_checks["int8-sparse"], cnn_checks["float"], cnn_checks["int8"]]

    choice = choose_deployable(candidates, cnn_artifacts["keras_accuracy"], tolerance=100.0)

    assert choice.chosen.name == "int8"
    rejected = dict(choice.rejected)
    assert "does not run on TFLM (no kernel for DENSIFY)" in rejected["int8-sparse"]
    assert rejected["float"].startswith("larger")


def test_chooser_refuses_when_only_unrunnable_models_are_left():
    sparse = _report("int8-sparse", 100, None, runs=False, missing_op="DENSIFY")
    with pytest.raises(NoDeployableArtifactError, match="int8-sparse: does not run on TFLM"):
        choose_deployable([sparse], dense_score=0.9)


def test_chooser_takes_the_smallest_within_tolerance():
    candidates = [
        _report("int8", 4000, 0.985),
        _report("lut-2bit", 1500, 0.95),  # 4 points below: outside 1.0
        _report("lut-4bit", 2500, 0.98),  # 1 point below: on the edge, allowed
    ]

    choice = choose_deployable(candidates, dense_score=0.99, tolerance=1.0)

    assert choice.chosen.name == "lut-4bit"
    assert "2,500 B" in choice.reason and "within 1 points" in choice.reason
    rejected = dict(choice.rejected)
    assert "4.00 points below" in rejected["lut-2bit"]
    assert rejected["int8"].startswith("larger: 4,000 B")


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
    assert {r["name"] for r in data["rejected"]} == {"float", "int8-sparse"}
    assert json.loads(json.dumps(cnn_checks["int8-sparse"].to_dict()))["missing_op"] == "DENSIFY"
