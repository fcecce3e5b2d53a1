"""The metric follows the data: top-1 accuracy for class ids, mean squared error for floats."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.config import SelectConfig
from edge_prune.errors import DataError
from edge_prune.measurement.metrics import ACCURACY, MSE, metric_for, top1_accuracy


def test_class_ids_are_scored_by_top1_and_float_targets_by_mean_squared_error():
    assert metric_for(np.array([0, 2, 1])) is ACCURACY
    assert metric_for(np.zeros((3, 64), np.float32)) is MSE


def test_top1_accuracy_counts_the_largest_output():
    outputs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_accuracy(outputs, np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_mean_squared_error_is_over_every_value_and_checks_shapes():
    assert MSE.score(np.ones((2, 3)), np.zeros((2, 3))) == 1.0
    with pytest.raises(DataError, match="targets: shape"):
        MSE.score(np.ones((2, 3)), np.zeros((2, 4)))


def test_accuracy_chance_is_the_majority_class_share_of_the_held_out_set():
    y_train = np.array([0, 0, 0, 1, 2])
    y_test = np.array([0, 1, 1, 2])
    assert ACCURACY.chance(y_train, y_test) == 0.25


def test_error_chance_is_the_error_of_predicting_the_training_mean():
    y_train = np.array([[0.0], [2.0]])
    y_test = np.array([[1.0], [3.0]])
    assert MSE.chance(y_train, y_test) == pytest.approx((0 + 4) / 2)


@pytest.mark.parametrize(
    ("metric", "baseline", "value", "loss", "tolerance"),
    [
        (ACCURACY, 0.97, 0.95, 2.0, 1.0),  # points, tolerance from tolerance_points
        (MSE, 0.10, 0.12, 0.2, 0.1),  # relative increase, tolerance from tolerance_relative
    ],
)
def test_loss_is_in_the_units_of_the_metrics_tolerance(metric, baseline, value, loss, tolerance):
    assert metric.loss(baseline, value) == pytest.approx(loss)
    assert metric.tolerance(SelectConfig()) == tolerance


@pytest.mark.parametrize(
    ("tolerance", "text"), [(1.0, "1 point"), (0.5, "0.5 points"), (2.0, "2 points")]
)
def test_accuracy_tolerance_text_is_singular_for_one_point(tolerance, text):
    assert ACCURACY.format_tolerance(tolerance) == text


def test_a_score_near_chance_or_far_below_training_is_flagged():
    assert ACCURACY.no_better_than_chance(0.12, chance=0.10)
    assert not ACCURACY.no_better_than_chance(0.60, chance=0.10)
    assert ACCURACY.far_below_training(train=1.0, held_out=0.5)
    assert not ACCURACY.far_below_training(train=0.99, held_out=0.95)
    assert MSE.no_better_than_chance(0.95, chance=1.0)
    assert MSE.far_below_training(train=0.01, held_out=0.2)


def test_a_trained_model_is_told_from_a_lucky_untrained_one():
    # 10 classes, majority class 10%: an untrained network scored 19.8% on the digits.
    assert not ACCURACY.clearly_learned(0.198, chance=0.10)
    assert ACCURACY.clearly_learned(0.60, chance=0.10)
    assert MSE.clearly_learned(0.01, chance=0.05) and not MSE.clearly_learned(0.04, chance=0.05)


def test_one_hot_and_probability_rows_are_judged_by_top1():
    one_hot = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    soft = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    assert metric_for(one_hot) is ACCURACY and metric_for(soft) is ACCURACY
    assert metric_for(np.full((4, 3), 0.5, np.float32)) is MSE
    outputs = np.array([[3, 1, 0], [0, 2, 1], [0, 1, 5], [1, 0, 0]], np.float32)
    assert ACCURACY.score(outputs, one_hot) == 0.75
    assert ACCURACY.chance(one_hot, one_hot) == 0.5  # always class 1 (most frequent)
