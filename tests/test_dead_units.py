"""Dead-unit removal: units nothing reads, or whose constant output folds into the next bias."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_prune.errors import ConfigError
from edge_prune.training._tf import keras
from edge_prune.training.layer_kinds import ACTIVATION_OPS
from edge_prune.training.structured import remove_dead_units

RNG_SEED = 11


def _sample(shape, n=8):
    return np.random.default_rng(RNG_SEED).normal(size=(n, *shape)).astype("float32")


def _outputs(model, x):
    return model(x, training=False).numpy()


def _layer(result, name):
    return next(layer for layer in result.layers if layer.name == name)


def _set(model, name, update) -> None:
    layer = model.get_layer(name)
    weights = layer.get_weights()
    update(weights)
    layer.set_weights(weights)


def _mlp():
    keras.utils.set_random_seed(RNG_SEED)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="d1"),
            keras.layers.Dense(16, activation="relu", name="d2"),
            keras.layers.Dense(10, name="out"),
        ]
    )


def _kill_incoming(weights, units, bias=0.7):
    weights[0][..., units] = 0.0  # last axis: the output units (Dense) or filters (Conv)
    weights[1][units] = bias  # relu(0.7) = 0.7: a nonzero constant that must be folded


def _kill_outgoing(weights, units):
    weights[0][units, :] = 0.0


def test_mlp_drops_unused_units_and_folds_constant_ones_with_equal_outputs():
    model = _mlp()
    _set(model, "d1", lambda w: _kill_incoming(w, [3, 9]))
    _set(model, "d2", lambda w: _kill_outgoing(w, [0, 5, 6]))  # d1 units 0, 5, 6 unused
    _set(model, "d2", lambda w: _kill_incoming(w, [2]))
    _set(model, "out", lambda w: _kill_outgoing(w, [4, 15]))  # d2 units 4, 15 unused
    x = _sample((64,))

    result = remove_dead_units(model)

    d1, d2 = _layer(result, "d1"), _layer(result, "d2")
    assert (d1.kept, d1.unused, d1.folded) == (27, 3, 2)
    assert (d2.kept, d2.unused, d2.folded) == (13, 2, 1)
    assert result.model.get_layer("d1").units == 27
    assert result.model.get_layer("d2").kernel.shape == (27, 13)
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)
    assert result.params_after < result.params_before


def test_folding_is_needed_for_constant_units():
    """Dropping the constant units without folding their bias would change the outputs."""
    model = _mlp()
    _set(model, "d1", lambda w: _kill_incoming(w, [3, 9]))
    x = _sample((64,))

    result = remove_dead_units(model)

    new_bias = result.model.get_layer("d2").bias.numpy()
    assert not np.allclose(new_bias, model.get_layer("d2").bias.numpy())
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_a_dead_unit_can_make_an_earlier_unit_dead():
    """d1 unit 1 feeds only d2 unit 7; d2 unit 7 is unused: both go (a second pass)."""
    model = _mlp()

    def only_to_unit_7(w):
        w[0][1, :] = 0.0
        w[0][1, 7] = 0.5

    _set(model, "d2", only_to_unit_7)
    _set(model, "out", lambda w: _kill_outgoing(w, [7]))
    x = _sample((64,))

    result = remove_dead_units(model)

    assert _layer(result, "d2").kept_indices == tuple(i for i in range(16) if i != 7)
    assert 1 not in _layer(result, "d1").kept_indices
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_nothing_dead_comes_back_with_the_same_weights():
    model = _mlp()

    result = remove_dead_units(model)

    assert result.units_removed == 0 and result.params_after == result.params_before
    for old, new in zip(model.get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_output_layer_is_never_shrunk_and_a_layer_keeps_one_unit():
    model = _mlp()
    _set(model, "out", lambda w: w.__setitem__(0, np.zeros_like(w[0])))  # d2 all unused
    _set(model, "out", lambda w: _kill_incoming(w, [0, 1, 2]))

    result = remove_dead_units(model)

    assert result.model.get_layer("out").units == 10
    assert _layer(result, "out").kept == 10
    assert _layer(result, "d2").kept == 1
    x = _sample((64,))
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_cnn_dead_channels_before_flatten_dense_are_removed_with_equal_outputs():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(6, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="relu"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(5, name="out"),
        ]
    )
    rng = np.random.default_rng(RNG_SEED)
    model.get_layer("bn").set_weights(
        [rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.3, 6), rng.normal(0, 0.3, 6), np.ones(6)]
    )

    def conv_dead(w):
        w[0][..., 1] = 0.0  # constant: bias → BN → relu → pool, folded per flattened position
        w[1][1] = 0.4

    def flat_rows_dead(w):
        w[0][4::6, :] = 0.0  # every H·W position of channel 4: unused

    _set(model, "conv", conv_dead)
    _set(model, "out", flat_rows_dead)
    x = _sample((8, 8, 2))

    result = remove_dead_units(model)

    conv = _layer(result, "conv")
    assert conv.kept_indices == (0, 2, 3, 5) and (conv.unused, conv.folded) == (1, 1)
    assert result.model.get_layer("bn").gamma.shape[0] == 4
    assert result.model.get_layer("out").kernel.shape == (4 * 4 * 4, 5)
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_constant_channel_is_kept_before_a_same_padded_conv():
    """A 3×3 'same' Conv sees zero padding at the border: the constant is not foldable."""
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, padding="same", name="a"),
            keras.layers.Conv2D(4, 3, padding="same", name="b"),
            keras.layers.Conv2D(4, 1, name="c"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="out"),
        ]
    )

    def constant(w):
        w[0][..., 2] = 0.0
        w[1][2] = 0.3

    _set(model, "a", constant)
    _set(model, "b", constant)
    x = _sample((6, 6, 2))

    result = remove_dead_units(model)

    assert _layer(result, "a").kept == 4  # read by 'same' 3×3 conv b
    assert _layer(result, "b").kept_indices == (0, 1, 3)  # read by 1×1 conv c: folded
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_add_tied_channels_go_only_when_dead_in_every_member():
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Conv2D(3, 1, name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    # channel 1: unused by c (after the depthwise) and by b: dead in both members → removed.
    # channel 2: unused by c, but a's channel 2 is read by b → kept in both.
    _set(model, "c", lambda w: w[0].__setitem__((Ellipsis, slice(1, 3), slice(None)), 0.0))
    _set(model, "b", lambda w: w[0].__setitem__((Ellipsis, 1, slice(None)), 0.0))
    x = _sample((6, 6, 3))

    result = remove_dead_units(model)

    assert _layer(result, "a").kept_indices == (0, 2, 3)
    assert _layer(result, "b").kept_indices == (0, 2, 3)
    assert result.model.get_layer("dw").output_shape[-1] == 3
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_conv1d_unused_channel_is_removed():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((12, 3)),
            keras.layers.Conv1D(5, 3, activation="relu", name="conv"),
            keras.layers.Conv1D(4, 3, name="conv2"),
            keras.layers.GlobalMaxPooling1D(),
            keras.layers.Dense(2, name="out"),
        ]
    )
    _set(model, "conv2", lambda w: w[0].__setitem__((slice(None), 3, slice(None)), 0.0))
    x = _sample((12, 3))

    result = remove_dead_units(model)

    assert _layer(result, "conv").kept_indices == (0, 1, 2, 4)
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_result_reports_per_layer_and_serializes():
    model = _mlp()
    _set(model, "out", lambda w: _kill_outgoing(w, [4]))

    result = remove_dead_units(model)

    data = json.loads(json.dumps(result.to_dict()))
    assert data["units_removed"] == 1
    assert "15/16" in str(result) and "d2" in str(result)


def test_negative_atol_is_refused():
    with pytest.raises(ConfigError, match="atol"):
        remove_dead_units(_mlp(), atol=-1.0)


def test_functional_concatenate_folds_a_constant_branch_unit_and_leaves_the_input_model():
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((6,))
    left = keras.layers.Dense(3, activation="elu", name="left")(inp)
    right = keras.layers.Dense(4, activation="sigmoid", name="right")(inp)
    x = keras.layers.Concatenate(name="cat")([left, right])
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(RNG_SEED)
    model.get_layer("bn").set_weights(
        [rng.uniform(0.5, 1.5, 7), rng.normal(0, 0.3, 7), rng.normal(0, 0.3, 7), np.ones(7)]
    )
    _set(model, "right", lambda w: _kill_incoming(w, [1], bias=-0.8))  # sigmoid(-0.8), then BN
    before = [w.copy() for w in model.get_weights()]
    x = _sample((6,))

    result = remove_dead_units(model)

    assert _layer(result, "right").kept_indices == (0, 2, 3)
    assert result.model.get_layer("cat").output_shape[-1] == 6
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)
    for old, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)


def test_grouped_conv_and_the_channels_feeding_it_are_left_alone_with_equal_outputs():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            keras.layers.Conv2D(8, 1, activation="relu", name="feed"),
            keras.layers.Conv2D(8, 3, groups=2, activation="relu", name="grouped"),
            keras.layers.Conv2D(6, 1, activation="relu", name="after"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="out"),
        ]
    )

    def grouped_constant(w):  # kernel (3, 3, 8 / 2, 8): inputs per group
        w[0][..., 2] = 0.0
        w[1][2] = 0.7

    _set(model, "feed", lambda w: _kill_incoming(w, [1]))  # constant, but feeds 'grouped'
    _set(model, "grouped", grouped_constant)  # constant, but grouped
    _set(model, "after", lambda w: _kill_incoming(w, [3]))  # folded into 'out'
    _set(model, "out", lambda w: _kill_outgoing(w, [5]))  # unused
    x = _sample((6, 6, 4))

    result = remove_dead_units(model)

    skipped = {s.name: s.reason for s in result.skipped}
    assert skipped["grouped"] == "grouped convolution (groups=2): channels kept whole"
    assert skipped["feed"] == "it feeds grouped convolution 'grouped' (kept whole)"
    assert _layer(result, "feed").kept == 8 and _layer(result, "grouped").kept == 8
    after = _layer(result, "after")
    assert after.kept_indices == (0, 1, 2, 4) and (after.unused, after.folded) == (1, 1)
    assert result.model.get_layer("grouped").get_weights()[0].shape == (3, 3, 4, 8)
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


# Every activation a Conv/Dense producer may have whose constant output can fold (softmax
# mixes its channels: never folded).
FOLDABLE_ACTIVATIONS = sorted((set(ACTIVATION_OPS) - {"softmax"}) | {"linear"})


@pytest.mark.parametrize("activation", FOLDABLE_ACTIVATIONS)
def test_a_zero_filter_folds_its_activated_bias_for_every_table_activation(activation):
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(5, 3, activation=activation, name="conv"),
            keras.layers.Conv2D(4, 1, name="mix"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(6, activation=activation, name="fc"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    _set(model, "conv", lambda w: _kill_incoming(w, [1], bias=-0.8))
    _set(model, "fc", lambda w: _kill_incoming(w, [2], bias=0.6))
    x = _sample((6, 6, 2))

    result = remove_dead_units(model)

    assert _layer(result, "conv").kept_indices == (0, 2, 3, 4)
    assert _layer(result, "fc").kept_indices == (0, 1, 3, 4, 5)
    assert _layer(result, "fc").folded == 1
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)
