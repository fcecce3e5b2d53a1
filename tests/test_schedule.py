"""Pruning schedules: constructors, checks naming the argument, serialization, config check."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from edge_prune.errors import ConfigError
from edge_prune.training.schedule import (
    ConstantSparsity,
    MByNSparsity,
    PolynomialDecay,
    PruningSchedule,
    schedule_from_config,
)


def test_from_epochs_converts_epochs_to_steps():
    schedule = PruningSchedule.from_epochs(
        0.8, steps_per_epoch=7, begin_epoch=1, end_epoch=4, frequency=10
    )
    assert schedule.begin_step == 7
    assert schedule.end_step == 27  # 7 + 21 steps rounded down to a multiple of frequency 10
    auto = PruningSchedule.from_epochs(0.8, steps_per_epoch=45, end_epoch=8)
    assert (auto.end_step, auto.frequency) == (360, 36)  # 10 mask updates


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "0.5"])
def test_sparsity_outside_0_1_raises_config_error_naming_it(value):
    with pytest.raises(ConfigError, match=r"final_sparsity must be a number in \[0, 1\)"):
        PruningSchedule.polynomial_decay(value, end_step=100)


def test_end_step_before_begin_step_raises_config_error():
    with pytest.raises(ConfigError, match="end_step must be greater than begin_step.*=10.*=20"):
        PruningSchedule.polynomial_decay(0.5, begin_step=20, end_step=10, frequency=1)
    with pytest.raises(ConfigError, match="end_epoch must be greater than begin_epoch"):
        PruningSchedule.from_epochs(0.5, steps_per_epoch=10, begin_epoch=3, end_epoch=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequency": 0}, "frequency must be an integer >= 1, got 0"),
        (
            {"end_step": 150, "frequency": 40},
            r"\(150\) must be a multiple of frequency \(40\).*try frequency=15",
        ),
        ({"initial_sparsity": 0.9}, "initial_sparsity must not exceed final_sparsity"),
        ({"power": 0}, "power must be a number > 0"),
        ({"begin_step": -1}, "begin_step must be an integer >= 0"),
    ],
)
def test_invalid_schedule_arguments_raise_config_error(kwargs, message):
    arguments = {"end_step": 100, "frequency": 10} | kwargs
    with pytest.raises(ConfigError, match=message):
        PruningSchedule.polynomial_decay(0.5, **arguments)


def test_invalid_m_by_n_raises_config_error():
    with pytest.raises(ConfigError, match=r"m_by_n must be .*0 < m < n, got \(4, 4\)"):
        PruningSchedule.m_by_n_sparsity(4, 4)


def test_schedule_round_trips_through_a_dict():
    for schedule in (
        PruningSchedule.polynomial_decay(0.8, end_step=100, frequency=10),
        PruningSchedule.constant_sparsity(0.5),
        PruningSchedule.m_by_n_sparsity(2, 4),
    ):
        assert PruningSchedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bogus'"):
        PruningSchedule.from_dict({"bogus": 1})


def test_each_constructor_gives_its_own_schedule_class_with_its_target():
    assert isinstance(PruningSchedule.polynomial_decay(0.8, end_step=100), PolynomialDecay)
    assert isinstance(PruningSchedule.constant_sparsity(0.5), ConstantSparsity)
    two_four = PruningSchedule.m_by_n_sparsity(2, 4)
    assert isinstance(two_four, MByNSparsity)
    assert (two_four.m_by_n, two_four.target_sparsity) == ((2, 4), 0.5)
    assert PruningSchedule.constant_sparsity(0.3).target_sparsity == 0.3


def test_get_config_round_trips_like_tfmot_schedules():
    schedule = PruningSchedule.polynomial_decay(0.8, end_step=100, frequency=10, power=2.0)
    config = json.loads(json.dumps(schedule.get_config()))
    assert config["class_name"] == "PolynomialDecay"
    assert config["config"]["final_sparsity"] == 0.8
    assert PruningSchedule.from_config(config) == schedule
    with pytest.raises(ConfigError, match="class_name must be one of.*got 'Cosine'"):
        PruningSchedule.from_config({"class_name": "Cosine", "config": {}})


def test_each_schedule_gives_tfmot_wrapper_arguments():
    decay = PruningSchedule.polynomial_decay(0.8, end_step=100, frequency=10).wrapper_arguments()
    assert type(decay["pruning_schedule"]).__name__ == "PolynomialDecay"
    m_by_n = PruningSchedule.m_by_n_sparsity(2, 4).wrapper_arguments()
    assert m_by_n["sparsity_m_by_n"] == (2, 4)


def _prune_section(**overrides):
    values = {
        "initial_sparsity": 0.0,
        "final_sparsity": 0.5,
        "begin_epoch": 0,
        "end_epoch": 6,
        "epochs": 10,
        "power": 3,
        "frequency": 10,
    }
    return SimpleNamespace(**(values | overrides))


def test_schedule_from_config_converts_epochs_with_the_steps_per_epoch():
    schedule = schedule_from_config(_prune_section(), steps_per_epoch=5)
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (0, 30, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frequency": 50}, r"'prune.frequency' must be at most the pruning span of 30 steps"),
        ({"end_epoch": 11}, r"'prune.end_epoch' \(11\) must not exceed 'prune.epochs' \(10\)"),
        ({"initial_sparsity": 0.6}, "'prune.initial_sparsity' must not exceed final_sparsity"),
        ({"begin_epoch": 6}, r"'prune.end_epoch' \(6\) must be after 'prune.begin_epoch' \(6\)"),
    ],
)
def test_schedule_from_config_names_the_config_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        schedule_from_config(_prune_section(**overrides), steps_per_epoch=5, source="run.toml")
