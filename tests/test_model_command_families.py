"""`edge-prune model` end to end on the model families users bring, on small data.

Each family runs the whole pipeline (train, structured, prune, cluster, convert, TFLM, choose,
footprint) and must end with exit 0 or 1 and a deployable model whose TFLM metric is within the
tolerance of its dense model. A model that cannot learn must never be called "FITS".
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_prune.cli import main
from edge_prune.data import load_digits
from edge_prune.training._tf import keras

FAST = """
[train]
epochs = {epochs}
[prune]
final_sparsity = 0.5
end_epoch = 2
epochs = 3
frequency = 5
[structured]
ratio = {ratio}
epochs = 2
[compress]
epochs = 1
[select]
tolerance_points = 5.0
tolerance_relative = 0.5
"""


def _digits_slice(root, *, train: int = 400, flat: bool = False, sequence=False, labels=None):
    d = load_digits()
    x_train, x_test = d.x_train[:train], d.x_test[:120]
    if flat:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    if sequence:  # each 8x8 digit as 8 time steps of 8 values
        x_train, x_test = x_train[..., 0], x_test[..., 0]
    y_train, y_test = d.y_train[:train], d.y_test[:120]
    if labels == "reconstruct":
        y_train, y_test = x_train, x_test
    elif labels == "random":
        rng = np.random.default_rng(0)
        x_train = rng.random(x_train.shape, dtype=np.float32)
        x_test = rng.random(x_test.shape, dtype=np.float32)
        y_train, y_test = rng.integers(0, 10, len(x_train)), rng.integers(0, 10, len(x_test))
    path = root / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def _build(root, model, data, *, epochs: int | None = 12, ratio: float = 0.25):
    model_path = root / f"{model.name}.keras"
    model.save(model_path)
    config = root / "config.toml"
    text = FAST.format(epochs=epochs if epochs is not None else 0, ratio=ratio)
    if epochs is None:  # leave train.epochs unset: a trained model must not be trained again
        text = text.replace("[train]\nepochs = 0\n", "")
    config.write_text(text)
    out = root / "build"
    args = ["model", "--target", "cortex-m4", "--model", str(model_path), "--data", str(data)]
    code = main([*args, "--config", str(config), "--out", str(out)])
    report = json.loads((out / "cortex-m4" / "report.json").read_text())
    return code, report


def _deployable_within_tolerance(report: dict) -> bool:
    chosen = report["deployable"]["artifact"]
    choice = report["choice"]
    checked = next(a for a in report["artifacts"] if a["name"] == chosen)
    score = checked["accuracy"] if checked["accuracy"] is not None else checked["error"]
    if report["metric"]["higher_is_better"]:
        return (choice["dense_score"] - score) * 100 <= choice["tolerance"] + 1e-9
    return score <= choice["dense_score"] * (1 + choice["tolerance"]) + 1e-12


def ds_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(32, 1, use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="ds_cnn")


def autoencoder() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    outputs = keras.layers.Dense(64, activation="sigmoid")(h)
    return keras.Model(inputs, outputs, name="autoencoder")


def conv1d_sensor() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))  # 8 time steps x 8 channels
    x = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="conv1d")


def lstm() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    x = keras.layers.LSTM(24)(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="lstm")


@pytest.mark.parametrize("family", [conv1d_sensor, lstm])
def test_sequence_models_deploy_within_tolerance(tmp_path, family):
    code, report = _build(tmp_path, family(), _digits_slice(tmp_path, sequence=True), epochs=15)

    assert code in (0, 1)
    assert report["untrustworthy"] is None, report["untrustworthy"]
    assert report["accuracy"]["float32-dense_tflm"] > 0.5  # far above chance (about 10%)
    assert _deployable_within_tolerance(report)


def test_batchnorm_ds_cnn_on_a_few_hundred_samples_deploys_within_tolerance(tmp_path):
    code, report = _build(tmp_path, ds_cnn(), _digits_slice(tmp_path, train=300))

    assert code in (0, 1)
    assert report["untrustworthy"] is None, report["untrustworthy"]
    assert report["accuracy"]["float32-dense_tflm"] > 0.5  # far above chance (about 10%)
    assert _deployable_within_tolerance(report)


def test_dense_autoencoder_is_judged_by_mean_squared_error(tmp_path):
    data = _digits_slice(tmp_path, flat=True, labels="reconstruct")
    code, report = _build(tmp_path, autoencoder(), data, epochs=20)

    assert code in (0, 1)
    assert report["data"]["task"] == "regression"
    assert report["metric"]["name"] == "mean squared error"
    assert report["untrustworthy"] is None  # well below the error of predicting the mean
    assert set(report["mean_squared_error"]) >= {"dense_keras", "float32-dense_tflm"}
    assert _deployable_within_tolerance(report)


def test_a_model_that_cannot_learn_does_not_pass_and_exits_1(tmp_path, capsys):
    data = _digits_slice(tmp_path, labels="random")
    code, report = _build(tmp_path, ds_cnn(), data, epochs=6)

    assert code == 1
    assert report["fits"] is False
    assert report["verdict"].startswith("DOES NOT PASS")
    assert "chance level" in report["untrustworthy"]
    assert "Why it does not pass" in (tmp_path / "build" / "cortex-m4" / "report.md").read_text()


def test_a_loaded_model_that_already_scores_well_is_not_trained_again(tmp_path, capsys):
    data = _digits_slice(tmp_path, flat=True)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="trained_mlp",
    )
    keras.utils.set_random_seed(0)
    with np.load(data) as f:
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(f["x_train"], f["y_train"], epochs=30, verbose=0)
    code, report = _build(tmp_path, model, data, epochs=None)

    assert code in (0, 1)
    assert report["training"].startswith("loaded model already trained")
    assert "dense: epoch" not in capsys.readouterr().err
    assert report["accuracy"]["dense_keras"] > 0.8


@pytest.mark.parametrize("epochs", [3])
def test_a_loaded_model_is_trained_with_its_own_compile_settings(tmp_path, epochs):
    data = _digits_slice(tmp_path, flat=True)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax")], name="compiled_mlp"
    )
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    code, report = _build(tmp_path, model, data, epochs=epochs)

    assert code in (0, 1)
    assert report["training"] == (
        f"loaded model trained {epochs} epochs (its own compile settings: SGD, loss "
        "sparse_categorical_crossentropy)"
    )
