"""Deployability check on TFLM and the chooser of the artifact to flash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import trained_cnn

from edge_prune.convert import convert_all
from edge_prune.deployability import (
    DeployabilityReport,
    NoDeployableArtifactError,
    check,
    choose_deployable,
    top1_accuracy,
)
from edge_prune.errors import ConfigError, DataError

HELD_OUT = slice(96, 128)


@pytest.fixture(scope="module")
def artifacts():
    model, x, y = trained_cnn(seed=1, epochs=3)
    for layer in model.layers:  # prune by hand so the sparse encoding applies
        weights = layer.get_weights()
        if weights:
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0
            layer.set_weights([kernel, *weights[1:]])
    flatbuffers = convert_all(model, x[:96], variants=("float", "int8", "int8-sparse"))
    x_test, y_test = x[HELD_OUT], y[HELD_OUT]
    keras_outputs = model.predict(x_test, verbose=0)
    return {
        "flatbuffers": {k: v.tflite_bytes for k, v in flatbuffers.items()},
        "x": x_test,
        "y": y_test,
        "keras_outputs": keras_outputs,
        "keras_accuracy": top1_accuracy(keras_outputs, y_test),
    }


@pytest.fixture(scope="module")
def reports(artifacts):
    fb, x, y = artifacts["flatbuffers"], artifacts["x"], artifacts["y"]
    keras_outputs = artifacts["keras_outputs"]
    return {
        name: check(fb[name], x, keras_outputs, labels=y, name=name)
        for name in ("float", "int8", "int8-sparse")
    }


def _report(name, flash_bytes, accuracy, runs=True, missing_op=None) -> DeployabilityReport:
    return DeployabilityReport(
        name=name,
        flash_bytes=flash_bytes,
        runs_on_tflm=runs,
        missing_op=missing_op,
        accuracy=accuracy if runs else None,
    )


def test_sparse_encoded_model_does_not_run_on_tflm_for_lack_of_densify(reports, artifacts):
    sparse = reports["int8-sparse"]

    assert not sparse.runs_on_tflm
    assert sparse.missing_op == "DENSIFY"
    assert sparse.flash_bytes == len(artifacts["flatbuffers"]["int8-sparse"])
    assert sparse.flash_bytes < reports["int8"].flash_bytes
    assert "does NOT run on TFLM (no kernel for DENSIFY)" in str(sparse)


def test_int8_outputs_are_dequantized_before_comparing_with_keras(reports, artifacts):
    int8 = reports["int8"]

    assert int8.runs_on_tflm
    assert int8.compared_as == "float"
    assert int8.samples == len(artifacts["x"])
    logit_range = float(np.ptp(artifacts["keras_outputs"]))
    assert int8.max_abs_difference < 0.1 * logit_range
    assert int8.top1_agreement >= 0.9
    assert int8.arena_bytes > 0 and int8.arena_head_bytes > 0


def test_float_model_matches_keras_closely(reports):
    assert reports["float"].compared_as == "float"
    assert reports["float"].max_abs_difference < 1e-4
    assert reports["float"].top1_agreement == 1.0


def test_int8_models_are_compared_raw_against_an_int8_reference(artifacts):
    fb = artifacts["flatbuffers"]
    report = check(fb["int8"], artifacts["x"], fb["int8"], measure_arena=False)

    assert report.compared_as == "int8"
    assert report.max_abs_difference == 0.0
    assert report.arena_bytes is None


def test_tflm_accuracy_is_measured_against_the_labels(reports, artifacts):
    assert reports["float"].accuracy == pytest.approx(artifacts["keras_accuracy"])
    assert 0.0 <= reports["int8"].accuracy <= 1.0


def test_reference_with_other_shape_is_a_data_error(artifacts):
    with pytest.raises(DataError, match="reference_outputs: shape"):
        check(
            artifacts["flatbuffers"]["int8"],
            artifacts["x"],
            artifacts["keras_outputs"][:5],
            measure_arena=False,
        )


def test_chooser_never_picks_a_model_tflm_cannot_run_even_if_smallest(reports, artifacts):
    candidates = [reports["int8-sparse"], reports["float"], reports["int8"]]

    choice = choose_deployable(candidates, artifacts["keras_accuracy"], tolerance_points=100.0)

    assert choice.chosen.name == "int8"
    rejected = dict(choice.rejected)
    assert "does not run on TFLM (no kernel for DENSIFY)" in rejected["int8-sparse"]
    assert rejected["float"].startswith("larger")


def test_chooser_refuses_when_only_unrunnable_models_are_left():
    sparse = _report("int8-sparse", 100, None, runs=False, missing_op="DENSIFY")
    with pytest.raises(NoDeployableArtifactError, match="int8-sparse: does not run on TFLM"):
        choose_deployable([sparse], dense_accuracy=0.9)


def test_chooser_takes_the_smallest_within_tolerance():
    candidates = [
        _report("int8", 4000, 0.985),
        _report("lut-2bit", 1500, 0.95),  # 4 points below: outside 1.0
        _report("lut-4bit", 2500, 0.98),  # 1 point below: on the edge, allowed
    ]

    choice = choose_deployable(candidates, dense_accuracy=0.99, tolerance_points=1.0)

    assert choice.chosen.name == "lut-4bit"
    assert "2,500 B" in choice.reason and "within 1 points" in choice.reason
    rejected = dict(choice.rejected)
    assert "4.00 points below" in rejected["lut-2bit"]
    assert rejected["int8"].startswith("larger: 4,000 B")


def test_a_wider_tolerance_admits_the_smaller_model():
    candidates = [_report("int8", 4000, 0.985), _report("lut-2bit", 1500, 0.95)]

    choice = choose_deployable(candidates, dense_accuracy=0.99, tolerance_points=5.0)

    assert choice.chosen.name == "lut-2bit"


def test_chooser_raises_when_every_model_drops_too_much():
    candidates = [_report("int8", 4000, 0.90), _report("lut", 1500, 0.85)]
    with pytest.raises(NoDeployableArtifactError, match=r"int8: TFLM accuracy 90.00% is 9.00"):
        choose_deployable(candidates, dense_accuracy=0.99)


def test_chooser_ignores_a_model_whose_tflm_accuracy_was_not_measured():
    candidates = [_report("lut", 1500, None), _report("int8", 4000, 0.99)]

    choice = choose_deployable(candidates, dense_accuracy=0.99)

    assert choice.chosen.name == "int8"
    assert "not measured" in dict(choice.rejected)["lut"]


@pytest.mark.parametrize(
    ("dense_accuracy", "tolerance", "argument"),
    [(99.0, 1.0, "dense_accuracy"), (0.9, -1.0, "tolerance_points")],
)
def test_chooser_arguments_out_of_range_are_config_errors(dense_accuracy, tolerance, argument):
    with pytest.raises(ConfigError, match=argument):
        choose_deployable([_report("int8", 1, 0.9)], dense_accuracy, tolerance)


def test_choice_and_reports_are_json_ready(reports, artifacts):
    choice = choose_deployable(list(reports.values()), artifacts["keras_accuracy"], 100.0)

    data = json.loads(json.dumps(choice.to_dict()))
    assert data["chosen"] == "int8"
    assert {r["name"] for r in data["rejected"]} == {"float", "int8-sparse"}
    assert json.loads(json.dumps(reports["int8-sparse"].to_dict()))["missing_op"] == "DENSIFY"


def test_a_failed_arena_measurement_does_not_make_a_running_model_undeployable(
    artifacts, monkeypatch
):
    from edge_prune import tflm
    from edge_prune.errors import TFLMError

    def crash(*args, **kwargs):
        raise TFLMError("<bytes>: TFLM interpreter was killed by SIGSEGV (during allocate)")

    monkeypatch.setattr(tflm, "measure_arena", crash)
    report = check(artifacts["flatbuffers"]["int8"], name="int8")

    assert report.runs_on_tflm
    assert report.arena_bytes is None
    assert "arena not measured" in report.arena_failure and "SIGSEGV" in str(report)
