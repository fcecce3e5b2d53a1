"""Bundled data, user .npz files and the pipeline config: loaded right or refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.config import PipelineConfig, config_from_dict, load_config, with_overrides
from edge_prune.data import load_digits, load_npz
from edge_prune.errors import ConfigError, DataError


def test_bundled_digits_are_split_per_class_and_scaled():
    d = load_digits()
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.float32
    assert len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
    assert set(np.unique(d.y_test)) == set(range(10))
    assert d.num_classes == 10


def test_digits_split_is_deterministic_for_a_seed():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert np.array_equal(a.y_test, b.y_test) and np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _good(n=6):
    return {
        "x_train": np.zeros((n, 4, 4, 1), np.float32),
        "y_train": np.arange(n) % 3,
        "x_test": np.zeros((2, 4, 4, 1), np.float32),
        "y_test": np.array([0, 1]),
    }


def test_npz_round_trip(tmp_path):
    d = load_npz(_npz(tmp_path, **_good()))
    assert d.input_shape == (4, 4, 1) and d.num_classes == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_test": None}, "missing array.*x_test"),
        ({"x_test": np.zeros((2, 5, 4, 1))}, "x_train samples have shape .* x_test"),
        ({"y_train": np.arange(5)}, "x_train has 6 samples but y_train has 5"),
        ({"x_train": np.array([["a"] * 4] * 6)}, "x_train must be a numeric array"),
        ({"x_train": np.full((6, 4, 4, 1), np.nan)}, "x_train holds 96 NaN/inf"),
        ({"y_test": np.array([0.5, 1.0])}, "y_train is class ids but y_test is float targets"),
        ({"y_test": np.array([[0], [1]])}, "y_test must be 1-D"),
        ({"x_train": np.zeros((0, 4, 4, 1)), "y_train": np.zeros(0)}, "x_train is empty"),
        ({"y_train": -(np.arange(6) % 3)}, "negative labels"),
    ],
)
def test_bad_npz_is_refused_naming_the_array(tmp_path, change, message):
    arrays = {**_good(), **change}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(DataError, match=message):
        load_npz(_npz(tmp_path, **arrays))


def test_npz_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="data.npz"):
        load_npz(path)


def test_missing_npz_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "nope.npz")


def test_config_defaults_without_file():
    assert load_config(None) == PipelineConfig()


def test_config_file_overrides_only_given_keys(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[prune]\nfinal_sparsity = 0.9\nend_epoch = 4\n")
    config = load_config(path)
    assert config.prune.final_sparsity == 0.9 and config.prune.end_epoch == 4
    assert config.train == PipelineConfig().train


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prune\nfinal_sparsity = 0.9", "TOML syntax error"),
        ("[prune]\nfinal_sparsity = 1.5", r"'prune.final_sparsity' = 1.5 is outside \[0, 0.99\]"),
        ("[prune]\nfinal_sparsity = 'high'", "'prune.final_sparsity' must be float, got str"),
        ("[prune]\nsparsity = 0.5", "unknown key 'prune.sparsity'"),
        ("[pruning]\nfinal_sparsity = 0.5", r"unknown section \[pruning\]"),
        ("[train]\nepochs = -3", "'train.epochs' = -3 is outside"),
        ("[train]\nepochs = 1e99", "'train.epochs' must be int, got float"),
        ("[train]\nbatch_size = 99999999999", "'train.batch_size' = 99999999999 is outside"),
        ("[prune]\nbegin_epoch = 5\nend_epoch = 3", "must be after 'prune.begin_epoch'"),
        ("[structured]\ncriterion = 'l3'", "expected one of"),
        ("train = 3", "'train' must be a table"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_config_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_bytes(b"[prune]\nfinal_sparsity = 0.5 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_overrides_are_checked_like_the_file():
    config = with_overrides(PipelineConfig(), {"prune.final_sparsity": 0.5, "train.seed": None})
    assert config.prune.final_sparsity == 0.5
    with pytest.raises(ConfigError, match="command line: 'prune.final_sparsity'"):
        with_overrides(PipelineConfig(), {"prune.final_sparsity": 1.0}, source="command line")


def test_config_dict_round_trips():
    config = config_from_dict({"compress": {"clusters": 4}})
    assert config_from_dict(config.to_dict()) == config


def test_more_clusters_than_the_lut_bitwidth_holds_is_refused():
    with pytest.raises(ConfigError, match=r"'compress.clusters' \(16\) needs more than"):
        config_from_dict({"compress": {"clusters": 16, "bitwidth": 3}})
    assert config_from_dict({"compress": {"clusters": 8, "bitwidth": 3}}).compress.bitwidth == 3


def test_pruning_frequency_longer_than_the_span_is_refused_before_training():
    from edge_prune.stages.state import check_schedule_fits_data

    data = load_digits()  # 1,438 training samples: 45 steps of 32 per epoch
    config = config_from_dict({"prune": {"frequency": 100, "begin_epoch": 1, "end_epoch": 3}})
    with pytest.raises(
        ConfigError, match=r"'prune.frequency' must be at most the pruning span of 90 steps"
    ):
        check_schedule_fits_data(config, data)
    check_schedule_fits_data(config_from_dict({"prune": {"frequency": 90}}), data)


def _one_hot(ids, classes=3, dtype=np.float32):
    return np.eye(classes, dtype=dtype)[ids]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_one_hot_labels_are_class_ids_judged_by_top1(tmp_path, dtype):
    good = _good()
    arrays = good | {
        "y_train": _one_hot(good["y_train"], dtype=dtype),
        "y_test": _one_hot(good["y_test"], dtype=dtype),
    }
    d = load_npz(_npz(tmp_path, **arrays))
    assert d.is_classification and d.num_classes == 3
    assert np.array_equal(d.y_train, good["y_train"]) and d.y_train.dtype == np.int64
    assert "one-hot rows of 3 values" in d.describe() and "top-1" in d.labels_note


def test_probability_rows_are_classification_by_their_argmax(tmp_path):
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]] * 2, np.float32)
    arrays = _good() | {"y_train": rows, "y_test": rows[:2]}
    d = load_npz(_npz(tmp_path, **arrays))
    assert d.task == "classification"
    assert list(d.y_train) == [0, 2, 1, 0, 2, 1]
    assert d.labels_note.startswith("y_train and y_test are probability rows")


def test_float_rows_that_do_not_sum_to_one_stay_regression(tmp_path):
    rows = np.full((6, 3), 0.5, np.float32)  # e.g. a reconstruction target
    d = load_npz(_npz(tmp_path, **(_good() | {"y_train": rows, "y_test": rows[:2]})))
    assert d.task == "regression" and d.labels_note is None
