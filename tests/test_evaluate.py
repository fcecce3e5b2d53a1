"""Running one artifact on TFLM: runs or not, outputs against its reference, accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.errors import DataError
from edge_prune.measurement.evaluate import check_deployable

HELD_OUT = slice(96, 128)


def test_sparse_encoded_model_does_not_run_on_tflm_for_lack_of_densify(cnn_checks, cnn_artifacts):
    sparse = cnn_checks["int8-densify"]

    assert not sparse.runs_on_tflm
    assert sparse.missing_op == "DENSIFY"
    assert sparse.flash_bytes == len(cnn_artifacts["flatbuffers"]["int8-densify"])
    assert sparse.flash_bytes < cnn_checks["int8"].flash_bytes
    assert "does NOT run on TFLM (no kernel for DENSIFY)" in str(sparse)


def test_int8_outputs_are_dequantized_before_comparing_with_keras(cnn_checks, cnn_artifacts):
    int8 = cnn_checks["int8"]

    assert int8.runs_on_tflm
    assert int8.compared_as == "float"
    assert int8.samples == len(cnn_artifacts["x"])
    logit_range = float(np.ptp(cnn_artifacts["keras_outputs"]))
    assert int8.max_abs_difference < 0.1 * logit_range
    assert int8.top1_agreement >= 0.9
    assert int8.arena_bytes > 0 and int8.arena_head_bytes > 0


def test_float_model_matches_keras_closely(cnn_checks):
    assert cnn_checks["float"].compared_as == "float"
    assert cnn_checks["float"].max_abs_difference < 1e-4
    assert cnn_checks["float"].top1_agreement == 1.0


def test_int8_models_are_compared_raw_against_an_int8_reference(cnn_artifacts):
    fb = cnn_artifacts["flatbuffers"]
    report = check_deployable(fb["int8"], cnn_artifacts["x"], fb["int8"])

    assert report.compared_as == "int8"
    assert report.max_abs_difference == 0.0
    assert report.arena_bytes > 0  # measured in the same TFLM run as the outputs


def test_tflm_accuracy_is_measured_against_the_labels(cnn_checks, cnn_artifacts):
    assert cnn_checks["float"].accuracy == pytest.approx(cnn_artifacts["keras_accuracy"])
    assert 0.0 <= cnn_checks["int8"].accuracy <= 1.0


def test_reference_with_other_shape_is_a_data_error(cnn_artifacts):
    with pytest.raises(DataError, match="reference_outputs: shape"):
        check_deployable(
            cnn_artifacts["flatbuffers"]["int8"],
            cnn_artifacts["x"],
            cnn_artifacts["keras_outputs"][:5],
        )


def test_an_artifact_whose_outputs_differ_from_its_source_gets_a_problem(cnn_checks):
    from dataclasses import replace

    from edge_prune.measurement.evaluate import same_outputs_as

    source = cnn_checks["int8"]
    assert same_outputs_as(source, source).problem is None
    changed = replace(source, name="int8-compressed", outputs=source.outputs + 1)
    flagged = same_outputs_as(changed, source)
    assert "outputs differ from its source int8 (max |diff| 1.0)" in flagged.problem
