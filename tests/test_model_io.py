"""User model files: tf_keras models load; Keras 3 files and Lambda layers are refused."""

from __future__ import annotations

import pytest

from edge_prune.errors import DataError, UnsupportedModelError
from edge_prune.training._tf import keras
from edge_prune.training.model_io import check_saved_model, compile_not_restored, load_saved_model
from edge_prune.training.train import check_model_fits_data, compile_as_the_user_did


def _small(lambda_layer=False):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_tf_keras_model_file_loads(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    _small().save(path)
    model = load_saved_model(path)
    assert model.name == "small" and model.output_shape == (None, 10)


def _unregistered_loss(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compile_settings_that_cannot_be_restored_are_dropped_and_the_reason_kept(tmp_path, suffix):
    from edge_prune.data import load_digits

    path = tmp_path / f"m{suffix}"
    model = _small()
    model.compile(optimizer="sgd", loss=_unregistered_loss)
    model.save(path)
    loaded = load_saved_model(path)
    assert loaded.optimizer is None  # loaded uncompiled: graph and weights only
    assert "_unregistered_loss" in compile_not_restored(loaded)
    how = compile_as_the_user_did(loaded, 1e-3, load_digits())
    assert how.startswith("edge-prune's compile settings: Adam(0.001)")
    assert "its own could not be restored:" in how and "_unregistered_loss" in how


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_restored_compile_settings_leave_no_reason(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    model = _small()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.save(path)
    loaded = load_saved_model(path)
    assert loaded.optimizer is not None and compile_not_restored(loaded) is None


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_unless_allowed(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    _small(lambda_layer=True).save(path)
    with pytest.raises(UnsupportedModelError, match=r"Lambda layer\(s\) double.*--allow-lambda"):
        check_saved_model(path)
    assert load_saved_model(path, allow_lambda=True).get_layer("double") is not None


def test_keras3_model_file_is_refused_with_the_way_out(tmp_path):
    import keras as keras3

    inputs = keras3.Input((4,))
    model = keras3.Model(inputs, keras3.layers.Dense(2)(inputs))
    path = tmp_path / "k3.keras"
    model.save(path)
    with pytest.raises(UnsupportedModelError, match="Keras 3.*import tf_keras as keras"):
        check_saved_model(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.keras", b"not a zip", "not a Keras .keras archive"),
        ("m.h5", b"not hdf5", "not an HDF5 model file"),
        ("m.onnx", b"", "unknown model format"),
    ],
)
def test_files_that_are_not_models_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedModelError, match=message):
        check_saved_model(path)


def test_model_and_data_shapes_must_agree():
    from edge_prune.data import load_digits

    data = load_digits()
    inputs = keras.Input((28, 28, 1))
    wrong_input = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    with pytest.raises(DataError, match=r"samples have shape \(8, 8, 1\).*expects \(28, 28, 1\)"):
        check_model_fits_data(wrong_input, data, "m.keras")
    inputs = keras.Input((8, 8, 1))
    too_few = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(DataError, match="labels go up to 9 but the model m.keras has 3 outputs"):
        check_model_fits_data(too_few, data, "m.keras")
