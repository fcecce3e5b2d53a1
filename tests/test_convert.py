"""TFLite conversion: float/int8, sparse encoding, agreement with Keras, determinism, errors."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from tiny_models import make_cnn, make_images, make_mlp

from edge_prune.errors import ConfigError, ConversionError, DataError, UnsupportedModelError
from edge_prune.measurement.tflite_file import read_model
from edge_prune.training._tf import keras, tf
from edge_prune.training.convert import VARIANTS, convert, convert_all
from edge_prune.training.prune import prune, strip
from edge_prune.training.schedule import PruningSchedule

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


CALIBRATION_SAMPLES = 128  # all the images: outputs are then compared within the calibrated range


@pytest.fixture(scope="module")
def pruned_80():
    """A CNN trained while pruned to 80%, stripped, the pruned model, and its images."""
    x, y = make_images(128)
    pruned = prune(
        make_cnn(),
        PruningSchedule.polynomial_decay(0.8, end_step=16, frequency=4),
        optimizer=keras.optimizers.Adam(1e-2),
        loss=LOSS,
    )
    pruned.fit(x, y, batch_size=32, epochs=4, verbose=0, shuffle=False)  # 4 x 4 = 16 steps
    return strip(pruned), x, pruned


@pytest.fixture(scope="module")
def variants(pruned_80):
    model, x, _ = pruned_80
    return convert_all(model, x, calibration_samples=CALIBRATION_SAMPLES)


def run_tflite(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    """Run every sample through tf.lite.Interpreter, (de)quantizing int8 input and output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "tf.lite.Interpreter is deprecated"
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    sink = interpreter.get_output_details()[0]
    outputs = []
    for sample in x:
        value = sample[np.newaxis]
        if source["dtype"] == np.int8:
            scale, zero_point = source["quantization"]
            value = np.clip(np.round(value / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.reset_all_variables()  # each sample its own inference (LSTM state)
        interpreter.set_tensor(source["index"], value)
        interpreter.invoke()
        out = interpreter.get_tensor(sink["index"])[0]
        if sink["dtype"] == np.int8:
            scale, zero_point = sink["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        outputs.append(out)
    return np.array(outputs)


def output_scale(flatbuffer: bytes) -> float:
    info = read_model(flatbuffer)
    return info.output_tensors[0].scale[0]


def test_convert_all_gives_the_four_variants_with_their_io_types(variants):
    assert tuple(variants) == VARIANTS
    for name, result in variants.items():
        expected = "int8" if name.startswith("int8") else "float32"
        assert result.record.variant == name
        assert result.record.input_dtypes == (expected,)
        assert result.record.output_dtypes == (expected,)
        assert result.record.size_bytes == len(result.tflite_bytes)
        assert result.tflite_bytes[4:8] == b"TFL3"


def test_float_tflite_outputs_match_keras(pruned_80, variants):
    model, x, _ = pruned_80
    expected = model.predict(x, verbose=0)
    for name in ("float", "float-densify"):
        np.testing.assert_allclose(
            run_tflite(variants[name].tflite_bytes, x), expected, atol=1e-4, err_msg=name
        )


def test_int8_tflite_outputs_agree_with_keras_within_quantization_tolerance(pruned_80, variants):
    model, x, _ = pruned_80
    expected = model.predict(x, verbose=0)
    for name in ("int8", "int8-densify"):
        flatbuffer = variants[name].tflite_bytes
        got = run_tflite(flatbuffer, x)
        # Input, weight and activation rounding add up over 3 layers: allow 4 output steps.
        assert np.abs(got - expected).max() <= 4 * output_scale(flatbuffer), name
        assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 0.95, name


def test_sparse_encoding_is_smaller_than_dense_at_80_percent_and_lists_sparse_tensors(variants):
    for quantization in ("float", "int8"):
        dense, sparse = variants[quantization], variants[f"{quantization}-densify"]
        assert sparse.record.size_bytes < dense.record.size_bytes
        assert sparse.record.dense_size_bytes == dense.record.size_bytes
        assert dense.record.sparse_tensors == ()
        names = sparse.record.sparse_tensors
        assert any("dense_hidden" in n for n in names), names
        stored_sparse = {t.name for t in read_model(sparse.tflite_bytes).sparse_tensors}
        assert set(names) == stored_sparse


def test_same_model_and_data_give_byte_identical_flatbuffers(pruned_80, variants):
    model, x, _ = pruned_80
    again = convert(
        model,
        quantization="int8",
        sparse=True,
        representative_data=x,
        calibration_samples=CALIBRATION_SAMPLES,
        compare_dense=False,
    )
    assert again.tflite_bytes == variants["int8-densify"].tflite_bytes


def test_per_tensor_dense_quantization_gives_a_smaller_int8_file(pruned_80, variants):
    model, x, _ = pruned_80
    per_tensor = convert(
        model,
        quantization="int8",
        representative_data=x,
        calibration_samples=CALIBRATION_SAMPLES,
        per_channel_dense=False,
    )
    assert per_tensor.record.per_channel_dense is False
    assert per_tensor.record.size_bytes < variants["int8"].record.size_bytes
    hidden = next(t for t in read_model(per_tensor.tflite_bytes).tensors if t.shape == (32, 288))
    assert len(hidden.scale) == 1


def test_record_converts_to_a_json_ready_dict(variants):
    data = json.loads(json.dumps(variants["int8-densify"].to_dict()))
    assert data["variant"] == "int8-densify"
    assert data["quantization"] == "int8" and data["sparse"] is True
    assert data["calibration_samples"] == CALIBRATION_SAMPLES
    assert data["size_bytes"] < data["dense_size_bytes"]
    assert "int8-densify:" in str(variants["int8-densify"])


def test_save_writes_the_flatbuffer(variants, tmp_path):
    path = variants["int8"].save(tmp_path / "out" / "model.tflite")
    assert path.read_bytes() == variants["int8"].tflite_bytes


def test_sparse_encoding_not_smaller_warns_with_both_sizes():
    model = make_mlp()  # dense: no tensor reaches the converter's 30% zero threshold
    with pytest.warns(UserWarning, match="float-densify: sparse encoding is not smaller") as caught:
        result = convert(model, sparse=True)
    size, dense = result.record.size_bytes, result.record.dense_size_bytes
    assert result.record.sparse_tensors == ()
    assert size >= dense
    assert any(f"{size:,} bytes sparse vs {dense:,} bytes dense" in str(w.message) for w in caught)


def test_a_model_still_wrapped_for_pruning_is_stripped_before_conversion(pruned_80, variants):
    _, _, pruned = pruned_80
    assert convert(pruned).tflite_bytes == variants["float"].tflite_bytes


# --------------------------------------------------------------------------- bad input


def test_representative_data_of_wrong_shape_raises_data_error_with_both_shapes():
    x, _ = make_images(8)
    with pytest.raises(DataError, match=r"shape \(8, 8, 8\);.*expects \(samples, 8, 8, 1\)"):
        convert(make_cnn(), quantization="int8", representative_data=x[..., 0])


def test_int8_without_representative_data_raises_data_error():
    with pytest.raises(DataError, match="representative_data is required for int8"):
        convert(make_cnn(), quantization="int8")


def test_representative_data_with_nan_raises_data_error():
    x, _ = make_images(8)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="finite numbers"):
        convert(make_cnn(), quantization="int8", representative_data=x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "int4"}, "quantization must be one of float, int8, got 'int4'"),
        ({"sparse": "yes"}, "sparse must be True or False"),
        ({"per_channel_dense": 1}, "per_channel_dense must be True or False, got 1"),
        ({"calibration_samples": 0}, "calibration_samples must be an integer >= 1"),
    ],
)
def test_bad_conversion_arguments_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        convert(make_cnn(), **kwargs)


def test_unknown_variant_raises_config_error():
    with pytest.raises(ConfigError, match="unknown 'int16'.*float, float-densify"):
        convert_all(make_cnn(), None, variants=("int16",))


def test_the_densify_variants_former_names_say_what_they_are_now():
    with pytest.raises(ConfigError, match="'int8-sparse' is now 'int8-densify'"):
        convert_all(make_cnn(), None, variants=("int8-sparse",))


def test_the_api_names_the_densify_files_as_tflite_only():
    module = sys.modules[
        convert.__module__
    ]  # edge_prune.training.convert is the function, by design

    assert VARIANTS == ("float", "float-densify", "int8", "int8-densify")
    for doc in (module.__doc__, module.convert_all.__doc__, module.convert.__doc__):
        text = " ".join(doc.split())
        assert "DENSIFY" in text and "TFLite runtimes only" in text, text


def test_keras3_model_is_refused_by_convert():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="import tf_keras as keras"):
        convert(model)


def test_converter_failure_raises_conversion_error_naming_the_variant():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(9)(inputs)
    # MatrixInverse has no TFLite builtin kernel: the converter refuses it.
    outputs = keras.layers.Lambda(
        lambda t: tf.reshape(tf.linalg.inv(tf.reshape(t, (-1, 3, 3))), (-1, 9))
    )(h)
    model = keras.Model(inputs, outputs, name="needs_flex")
    with pytest.raises(
        ConversionError, match="to float failed for model needs_flex.*MatrixInverse"
    ):
        convert(model)


def test_converter_failure_leaves_out_the_select_tf_ops_advice():
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(
        lambda t: tf.reshape(tf.linalg.inv(tf.reshape(tf.tile(t, (1, 3)), (-1, 3, 3))), (-1, 9))
    )(inputs)
    with pytest.raises(ConversionError) as caught:
        convert(keras.Model(inputs, outputs, name="needs_flex"))
    message = str(caught.value)
    assert "MatrixInverse" in message
    assert "SELECT_TF_OPS" not in message and "Please consider" not in message


# --------------------------------------------------------------------------- batch of one


def _recurrent_and_3d_models():
    layers = keras.layers
    keras.utils.set_random_seed(0)
    gru = keras.Sequential([keras.Input((6, 3)), layers.GRU(4), layers.Dense(2)], name="gru")
    dense_3d = keras.Sequential(
        [keras.Input((6, 3)), layers.Dense(4, name="per_step"), layers.Flatten(), layers.Dense(2)],
        name="dense_3d",
    )
    return gru, dense_3d


@pytest.mark.parametrize("index", [0, 1])
def test_gru_and_dense_on_3d_convert_with_batch_one_to_builtin_ops_tflm_runs(index):
    from edge_prune.measurement import tflm

    model = _recurrent_and_3d_models()[index]
    x = np.random.default_rng(0).random((16, 6, 3)).astype(np.float32)

    converted = convert(model, quantization="int8", representative_data=x)

    info = read_model(converted.tflite_bytes)
    assert info.input_tensors[0].shape == (1, 6, 3)
    # A dynamic batch gives SHAPE/REDUCE_PROD/PACK (Dense on 3-D) or tensor lists (GRU).
    assert not {"SHAPE", "REDUCE_PROD", "PACK", "WHILE"} & set(info.operators), info.operators
    source, sink = info.input_tensors[0], info.output_tensors[0]
    q = np.clip(np.round(x[:4] / source.scale[0] + source.zero_point[0]), -128, 127)
    raw = tflm.run(converted.tflite_bytes, q.astype(np.int8)).reshape(4, -1)
    got = (raw.astype(np.float32) - sink.zero_point[0]) * sink.scale[0]
    assert np.abs(got - model.predict(x[:4], verbose=0)).max() <= 12 * sink.scale[0]


def test_tensor_list_failure_names_the_tf_ops_without_the_select_tf_ops_advice():
    from edge_prune.training.convert import _converter_message

    # The last lines of TF 2.21's error for an LSTM converted with a dynamic batch.
    text = (
        "<unknown>:0: error: loc(...): 'tf.TensorListReserve' op requires element_shape to be "
        "static during TF Lite transformation pass\n"
        "<unknown>:0: error: Lowering tensor list ops is failed. Please consider using Select TF "
        "ops and disabling `_experimental_lower_tensor_list_ops` flag in the TFLite converter "
        "object. For example, converter.target_spec.supported_ops = "
        "[tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]"
    )
    message = _converter_message(RuntimeError(text))
    assert message.startswith("ops not in the TFLite builtin set: TensorListReserve;")
    assert "SELECT_TF_OPS" not in message and "Please consider" not in message
