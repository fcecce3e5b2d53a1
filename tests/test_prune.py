"""Pruning: schedule validation, wrapping, sparsity reached and held, strip, report, stages."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from tiny_models import (
    compile_for_classes,
    make_cnn,
    make_features,
    make_images,
    make_mlp,
)

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.training._tf import keras, tf
from edge_prune.training.prune import (
    PruningSchedule,
    SparsityHeldBackWarning,
    is_pruning_wrapped,
    prune,
    prune_in_stages,
    sparsity_report,
    strip,
)
from edge_prune.training.rewind import record_weights

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
PRUNED_KERNELS = ("conv2d", "dense_hidden", "logits")
BATCH = 32  # 160 samples -> 5 steps per epoch


def kernel_sparsity(model, layer: str) -> float:
    return sparsity_report(model).layer(layer).sparsity


@pytest.fixture(scope="module")
def images():
    return make_images(160)


@pytest.fixture(scope="module")
def pruned_cnn(images):
    """CNN pruned to 80% over exactly 20 steps; the sparsity at the end step; the original."""
    x, y = images
    original = make_cnn()
    before = [w.copy() for w in original.get_weights()]
    pruned = prune(
        original,
        PruningSchedule.polynomial_decay(0.8, end_step=20, frequency=5),
        optimizer=keras.optimizers.Adam(1e-2),
        loss=LOSS,
    )
    pruned.fit(x, y, batch_size=BATCH, epochs=4, verbose=0)  # 4 x 5 = 20 steps
    at_end_step = {name: kernel_sparsity(pruned, name) for name in PRUNED_KERNELS}
    return pruned, at_end_step, original, before


# --------------------------------------------------------------------------- sparsity


def test_polynomial_decay_reaches_final_sparsity_at_end_step(pruned_cnn):
    _, at_end_step, _, _ = pruned_cnn
    for name, sparsity in at_end_step.items():
        assert sparsity == pytest.approx(0.8, abs=0.01), name


def test_sparsity_is_held_after_end_step(pruned_cnn, images):
    pruned, at_end_step, _, _ = pruned_cnn
    x, y = images
    pruned.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    for name, sparsity in at_end_step.items():
        assert kernel_sparsity(pruned, name) == sparsity, name


def test_stripped_model_predicts_like_pruned_model(pruned_cnn, images):
    pruned, _, _, _ = pruned_cnn
    stripped = strip(pruned)
    assert isinstance(stripped, keras.Sequential)
    assert not is_pruning_wrapped(stripped)
    names = [layer.name for layer in stripped.layers]
    assert names == ["conv2d", "flatten", "dense_hidden", "logits"]
    x, _ = images
    np.testing.assert_array_equal(
        stripped.predict(x, verbose=0), pruned.model.predict(x, verbose=0)
    )


def test_strip_zeroes_every_masked_weight_even_after_an_unmasked_update(pruned_cnn):
    pruned, _, _, _ = pruned_cnn
    wrapper = pruned.model.get_layer("prune_low_magnitude_dense_hidden")
    weight, mask, _ = wrapper.pruning_vars[0]
    weight.assign_add(tf.ones_like(weight))  # like an optimizer step after the last re-mask
    stripped = strip(pruned)
    kernel = stripped.get_layer("dense_hidden").kernel.numpy()
    masked = mask.numpy() == 0
    assert masked.mean() == pytest.approx(0.8, abs=0.01)
    assert np.all(kernel[masked] == 0)
    assert kernel_sparsity(stripped, "dense_hidden") == pytest.approx(0.8, abs=0.01)


def test_prune_leaves_the_original_model_weights_unchanged(pruned_cnn):
    _, _, original, before = pruned_cnn
    for old, new in zip(before, original.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_constant_sparsity_prunes_at_every_pruning_step():
    x, y = make_features(64)
    pruned = prune(
        make_mlp(),
        PruningSchedule.constant_sparsity(0.5, frequency=1),
        optimizer="adam",
        loss=LOSS,
    )
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert kernel_sparsity(pruned, "dense_1") == pytest.approx(0.5, abs=0.01)


def test_m_by_n_sparsity_leaves_two_zeros_in_every_four_input_weights():
    x, y = make_features(64)
    pruned = prune(make_mlp(), PruningSchedule.m_by_n_sparsity(2, 4), optimizer="adam", loss=LOSS)
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    kernel = strip(pruned).get_layer("dense_2").kernel.numpy()  # (64 inputs, 32 units)
    zeros_per_group = (kernel.T.reshape(32, 16, 4) == 0).sum(axis=-1)
    assert np.all(zeros_per_group >= 2)
    assert kernel_sparsity(pruned, "dense_2") == pytest.approx(0.5, abs=0.01)


# --------------------------------------------------------------------------- wrapping


def test_excluded_layers_by_name_and_type_stay_unwrapped():
    pruned = prune(
        make_cnn(),
        PruningSchedule.polynomial_decay(0.8, end_step=5, frequency=1),
        exclude_layers=["logits"],
        exclude_types=[keras.layers.Conv2D],
    )
    assert pruned.pruned_layers == ("dense_hidden",)
    assert set(pruned.unpruned_layers) == {"conv2d", "logits"}
    names = [layer.name for layer in pruned.model.layers]
    assert names == ["conv2d", "flatten", "prune_low_magnitude_dense_hidden", "logits"]


def test_prune_recompiles_with_the_compiled_models_loss_and_a_fresh_optimizer():
    model = compile_for_classes(make_cnn(), learning_rate=0.005)
    pruned = prune(model, PruningSchedule.polynomial_decay(0.5, end_step=5, frequency=1))
    assert pruned.model.optimizer is not model.optimizer
    assert isinstance(pruned.model.optimizer, type(model.optimizer))
    assert pruned.model.optimizer.get_config()["learning_rate"] == pytest.approx(0.005)
    assert pruned.model.loss is model.loss


def test_fit_without_compile_says_to_compile(images):
    x, y = images
    pruned = prune(make_cnn(), PruningSchedule.polynomial_decay(0.5, end_step=5, frequency=1))
    with pytest.raises(ConfigError, match="not compiled.*optimizer="):
        pruned.fit(x, y)


def test_log_dir_adds_a_sparsity_log_written_each_epoch(tmp_path):
    x, y = make_features(64)
    pruned = prune(
        make_mlp(),
        PruningSchedule.polynomial_decay(0.5, end_step=2, frequency=1),
        optimizer="adam",
        loss=LOSS,
        log_dir=str(tmp_path),
    )
    names = [type(c).__name__ for c in pruned.callbacks]
    assert names[:2] == ["UpdatePruningStep", "SparsityLog"]
    pruned.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    lines = (tmp_path / "sparsity.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["epoch"], r["step"]) for r in records] == [(0, 2), (1, 4)]
    assert records[-1]["sparsity"]["dense_1/kernel"] == pytest.approx(0.5, abs=0.01)


def test_pruning_works_inside_a_mirrored_strategy_scope():
    x, y = make_features(64)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        pruned = prune(
            make_mlp(),
            PruningSchedule.polynomial_decay(0.6, end_step=2, frequency=1),
            optimizer="adam",
            loss=LOSS,
        )
        pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        stripped = strip(pruned)
    assert kernel_sparsity(stripped, "dense_1") == pytest.approx(0.6, abs=0.01)
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.model.predict(x, verbose=0), atol=1e-6
    )


# --------------------------------------------------------------------------- report


def test_sparsity_report_prints_per_layer_rows_and_the_model_total():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(6, name="dense")])
    kernel = np.ones((10, 6), np.float32)
    kernel.flat[:42] = 0
    model.get_layer("dense").set_weights([kernel, np.ones(6, np.float32)])
    report = sparsity_report(model)
    text = str(report)
    assert "dense  kernel  (10, 6)  Sparsity: 42/60 (70%)" in text
    assert "dense  bias    (6,)     Sparsity: 0/6 (0%)" in text
    assert text.splitlines()[-1].startswith("total")
    assert text.splitlines()[-1].endswith("Sparsity: 42/66 (63.6%)")
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["zeros"], data["total"]) == (42, 66)
    assert data["layers"][0] == {
        "layer": "dense",
        "weight": "kernel",
        "shape": [10, 6],
        "zeros": 42,
        "total": 60,
        "sparsity": 0.7,
    }


# --------------------------------------------------------------------------- stages


def test_prune_in_stages_reaches_each_stage_sparsity():
    x, y = make_features(64)
    result = prune_in_stages(
        make_mlp(),
        (0.5, 0.7, 0.85),
        loss=LOSS,
        x=x,
        y=y,
        batch_size=BATCH,
        prune_epochs=1,
        fine_tune_epochs=0,
    )
    assert [s.target_sparsity for s in result.stages] == [0.5, 0.7, 0.85]
    for stage in result.stages:
        for name in ("dense_1", "dense_2", "logits"):
            sparsity = stage.report.layer(name).sparsity
            assert sparsity == pytest.approx(stage.target_sparsity, abs=0.01), (stage, name)
    assert not is_pruning_wrapped(result.model)
    assert kernel_sparsity(result.model, "dense_2") == pytest.approx(0.85, abs=0.01)


def test_prune_in_stages_fine_tunes_at_the_lower_learning_rate_with_masks_held():
    x, y = make_features(64)
    calls = []

    def fit(model, callbacks, epochs):
        calls.append((epochs, float(model.optimizer.learning_rate.numpy())))
        model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=callbacks, verbose=0)

    result = prune_in_stages(
        make_mlp(),
        (0.5,),
        loss=LOSS,
        fit=fit,
        steps_per_epoch=2,
        prune_epochs=2,
        fine_tune_epochs=1,
        learning_rate=1e-2,
        fine_tune_learning_rate=1e-3,
    )
    assert calls == [(2, pytest.approx(1e-2)), (1, pytest.approx(1e-3))]
    assert result.stages[0].report.layer("dense_1").sparsity == pytest.approx(0.5, abs=0.01)


# --------------------------------------------------------------------------- bad input


def test_keras3_model_raises_unsupported_model_error_saying_use_tf_keras():
    import keras as keras3  # Keras 3, installed as a TensorFlow dependency

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    schedule = PruningSchedule.polynomial_decay(0.5, end_step=10)
    with pytest.raises(UnsupportedModelError, match="Keras 3 model.*import tf_keras as keras"):
        prune(model, schedule)
    with pytest.raises(UnsupportedModelError, match="Keras 3 model"):
        sparsity_report(model)


def test_subclassed_model_raises_unsupported_model_error_saying_use_sequential():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Tiny()
    model(np.zeros((1, 4), np.float32))
    with pytest.raises(UnsupportedModelError, match="subclassed model.*Sequential or Functional"):
        prune(model, PruningSchedule.polynomial_decay(0.5, end_step=10))


def test_unbuilt_model_raises_unsupported_model_error():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="not built.*input shape"):
        prune(model, PruningSchedule.polynomial_decay(0.5, end_step=10))


def test_unknown_excluded_layer_name_raises_config_error_listing_layers():
    with pytest.raises(ConfigError, match="no layer named 'dense_9'.*conv2d"):
        prune(
            make_cnn(),
            PruningSchedule.polynomial_decay(0.5, end_step=10),
            exclude_layers=["dense_9"],
        )


class Scale(keras.layers.Layer):
    """A custom layer with a weight, unknown to tfmot's prune registry."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=input_shape[-1:], initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def test_layers_tfmot_cannot_prune_stay_dense_and_unknown_ones_warn():
    inputs = keras.Input((8,))
    h = keras.layers.BatchNormalization(name="norm")(inputs)
    h = Scale(name="scale")(h)
    outputs = keras.layers.Dense(2, name="out")(h)
    model = keras.Model(inputs, outputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = prune(model, PruningSchedule.polynomial_decay(0.5, end_step=10))
    assert pruned.pruned_layers == ("out",)
    assert pruned.unpruned_layers == ("norm", "scale")
    messages = [str(w.message) for w in caught]
    assert any("layers left dense: scale: tfmot cannot prune Scale" in m for m in messages)
    assert not any("norm" in m for m in messages)


def test_stages_must_increase():
    with pytest.raises(ConfigError, match="stages must increase"):
        prune_in_stages(make_mlp(), (0.7, 0.5), loss=LOSS, fit=lambda *a: None, steps_per_epoch=1)


def test_model_already_wrapped_for_pruning_raises_saying_strip_first():
    pruned = prune(make_mlp(), PruningSchedule.polynomial_decay(0.5, end_step=10))
    with pytest.raises(UnsupportedModelError, match="already wrapped.*strip it first"):
        prune(pruned.model, PruningSchedule.polynomial_decay(0.5, end_step=10))


def test_layers_of_a_nested_model_are_pruned_and_reported_with_its_name():
    block = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8, name="inner")], name="block"
    )
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(block(inputs)))
    pruned = prune(model, PruningSchedule.polynomial_decay(0.5, end_step=10))
    assert pruned.pruned_layers == ("inner", "head")
    rows = [(r.layer, r.weight) for r in sparsity_report(pruned).rows]
    assert rows == [
        ("block/inner", "kernel"),
        ("block/inner", "bias"),
        ("head", "kernel"),
        ("head", "bias"),
    ]


# --------------------------------------------------------------------------- depthwise


def _depthwise_block(seed: int = 0) -> keras.Model:
    """pointwise (4x8 kernel, 32 weights) → depthwise (3x3x8, 72 weights) → GAP → out (8x3)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            keras.layers.Conv2D(8, 1, name="pw"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="out"),
        ]
    )


def test_depthwise_kernels_left_dense_warn_with_asked_and_reached_sparsity():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prune(_depthwise_block(), PruningSchedule.constant_sparsity(0.8))
    messages = [str(w.message) for w in caught if issubclass(w.category, SparsityHeldBackWarning)]
    # 56 prunable kernel weights at 80%, 72 depthwise weights dense: 0.8 * 56 / 128 = 35%.
    assert messages == [
        "sparsity held back: asked 80.0% but the kernels will reach 35.0% (56 prunable "
        "weights, 72 that tfmot does not prune: dw (72 weights)); pass prune_depthwise=True "
        "to prune the depthwise kernels too"
    ]


def test_prune_depthwise_prunes_the_depthwise_kernel_to_the_target():
    x = np.random.default_rng(0).random((16, 6, 6, 4)).astype(np.float32)
    y = np.random.default_rng(1).random((16, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparsityHeldBackWarning)
        pruned = prune(
            _depthwise_block(),
            PruningSchedule.constant_sparsity(0.8, frequency=1),
            optimizer="adam",
            loss="mse",
            prune_depthwise=True,
        )
    assert pruned.pruned_layers == ("pw", "dw", "out")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    stripped = strip(pruned)

    assert type(stripped.get_layer("dw")) is keras.layers.DepthwiseConv2D
    dw = sparsity_report(stripped).layer("dw", "depthwise_kernel")
    assert dw.sparsity == pytest.approx(0.8, abs=0.02)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.model.predict(x, verbose=0))


def test_prune_in_stages_with_rewinding_resets_survivors_to_their_early_values():
    x, y = make_features(64)
    model = compile_for_classes(make_mlp())
    early = record_weights(1)
    model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[early])
    calls = []

    def fit(m, callbacks, epochs):
        calls.append(epochs)  # no training: the rewound weights stay visible

    result = prune_in_stages(
        model, (0.5,), loss=LOSS, fit=fit, steps_per_epoch=4, prune_epochs=1,
        fine_tune_epochs=1, rewind_to_epoch=1, early_weights=early.weights,
    )  # fmt: skip
    kernel = result.model.get_layer("dense_1").get_weights()[0]
    early_kernel = early.weights[0]
    kept = kernel != 0
    assert calls == [1, 1]
    np.testing.assert_array_equal(kernel[kept], early_kernel[kept])


def test_rewinding_needs_both_the_epoch_and_the_recorded_weights():
    x, y = make_features(16)
    with pytest.raises(ConfigError, match="rewind_to_epoch and early_weights go together"):
        prune_in_stages(make_mlp(), (0.5,), loss=LOSS, x=x, y=y, rewind_to_epoch=1)
