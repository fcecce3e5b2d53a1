"""Structured (channel/unit) pruning: rebuilt models, tied masks, rankings and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.training._tf import keras
from edge_prune.training.structured import prune_channels

RNG_SEED = 7


def _zero_channels(model, conv_name: str, bn_name: str | None, channels: list[int]) -> None:
    """Make ``channels`` of a Conv/Dense output exactly 0 after its BatchNorm (if any).

    A zero filter and zero bias give 0 before BN; BN turns 0 into
    gamma·(0 - mean)/sqrt(var + eps) + beta, so mean = 0 and beta = 0 make it 0 too. A ReLU
    keeps 0, an Add of two zero channels is 0, pooling of zeros is 0. So every removed channel
    was 0 everywhere, its weights in the next layers multiplied 0: removing it changes nothing
    and the outputs must be equal up to float summation order.
    """
    layer = model.get_layer(conv_name)
    weights = layer.get_weights()
    weights[0][..., channels] = 0.0
    if len(weights) > 1:
        weights[1][channels] = 0.0
    layer.set_weights(weights)
    if bn_name is not None:
        bn = model.get_layer(bn_name)
        gamma, beta, mean, var = bn.get_weights()
        beta[channels] = 0.0
        mean[channels] = 0.0
        bn.set_weights([gamma, beta, mean, var])


def _randomize_batchnorm(model) -> None:
    """Non-trivial BN statistics, so a wrong BN slice changes the outputs."""
    rng = np.random.default_rng(RNG_SEED)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.2, n),
                    rng.normal(0, 0.2, n),
                    rng.uniform(0.5, 2.0, n),
                ]
            )


def _residual_model():
    """conv_a → bn_a → relu ─┬→ conv_b → bn_b ─┐
    └───────────────── Add → relu → conv_c → GAP → dense_out"""
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((8, 8, 3), name="img")
    a = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(inp)
    a = keras.layers.BatchNormalization(name="bn_a")(a)
    a = keras.layers.ReLU(name="relu_a")(a)
    b = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(a)
    b = keras.layers.BatchNormalization(name="bn_b")(b)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.ReLU(name="relu_add")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_c")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, name="dense_out")(x)
    model = keras.Model(inp, out)
    _randomize_batchnorm(model)
    return model


def _sample(shape, n=4):
    return np.random.default_rng(RNG_SEED).normal(size=(n, *shape)).astype("float32")


def _outputs(model, x):
    return model(x, training=False).numpy()


def _kept(result, name):
    return next(layer for layer in result.layers if layer.name == name)


def test_residual_model_with_zero_channels_rebuilds_smaller_with_equal_outputs():
    model = _residual_model()
    _zero_channels(model, "conv_a", "bn_a", [1, 5])
    _zero_channels(model, "conv_b", "bn_b", [1, 5])
    _zero_channels(model, "conv_c", None, [0, 6])
    x = _sample((8, 8, 3))

    result = prune_channels(model, 0.25)

    new = result.model
    assert new.get_layer("conv_a").filters == 6
    assert new.get_layer("conv_b").filters == 6
    assert new.get_layer("conv_c").filters == 6
    assert new.get_layer("bn_b").gamma.shape[0] == 6
    assert new.get_layer("dense_out").units == 3
    assert _kept(result, "conv_a").kept_indices == (0, 2, 3, 4, 6, 7)
    assert _kept(result, "conv_c").kept_indices == (1, 2, 3, 4, 5, 7)
    np.testing.assert_allclose(_outputs(new, x), _outputs(model, x), atol=1e-5)
    assert result.params_after < result.params_before


def test_layers_tied_by_add_keep_the_same_mask_and_list_each_other():
    model = _residual_model()

    result = prune_channels(model, 0.5)

    a, b = _kept(result, "conv_a"), _kept(result, "conv_b")
    assert a.kept == b.kept == 4
    assert a.kept_indices == b.kept_indices
    assert a.tied_with == ("conv_b",) and b.tied_with == ("conv_a",)
    assert _outputs(result.model, _sample((8, 8, 3))).shape == (4, 3)


def test_tied_layers_given_different_ratios_are_refused():
    with pytest.raises(ConfigError, match="share one channel mask"):
        prune_channels(_residual_model(), {"conv_a": 0.5, "conv_b": 0.25})


def test_per_layer_ratio_prunes_only_the_named_layer_and_its_tied_partner():
    result = prune_channels(_residual_model(), {"conv_b": 0.5})

    kept = {layer.name: layer.kept for layer in result.layers}
    assert kept == {"conv_a": 4, "conv_b": 4, "conv_c": 8, "dense_out": 3}


def test_output_layer_is_left_alone_and_listed():
    result = prune_channels(_residual_model(), 0.5)

    assert _kept(result, "dense_out").kept == 3
    skipped = {s.name: s.reason for s in result.skipped}
    assert list(skipped) == ["dense_out"]
    assert "model output 'dense_out'" in skipped["dense_out"]
    assert "dense_out" in str(result)


def test_input_model_is_not_modified():
    model = _residual_model()
    before = [w.copy() for w in model.get_weights()]

    prune_channels(model, 0.5)

    assert model.get_layer("conv_a").filters == 8
    for old, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)


def test_flatten_dense_rows_follow_removed_channels_in_hwc_order():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(6, activation="relu", name="hidden"),
            keras.layers.Dropout(0.1, name="drop"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    _zero_channels(model, "conv", None, [2, 3])
    _zero_channels(model, "hidden", None, [0, 4, 5])
    x = _sample((6, 6, 2))

    result = prune_channels(model, 0.5)

    assert result.model.get_layer("hidden").kernel.shape == (2 * 2 * 2, 3)
    assert _kept(result, "hidden").kept_indices == (1, 2, 3)
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-5)


def test_concatenate_offsets_masks_and_depthwise_follows_its_input():
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((6, 6, 2))
    left = keras.layers.Conv2D(4, 1, name="left")(inp)
    right = keras.layers.Conv2D(6, 1, name="right")(inp)
    x = keras.layers.Concatenate(name="cat")([left, right])
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(5, 1, name="mix")(x)
    x = keras.layers.Reshape((16, 5), name="reshape")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inp, out)
    _randomize_batchnorm(model)
    _zero_channels(model, "left", None, [0, 3])
    _zero_channels(model, "right", None, [1, 2, 4])
    # Depthwise outputs 2c and 2c+1 read concat channel c. A zero input gives the depthwise
    # bias, then BN: zero that bias and the BN beta and mean of those outputs.
    removed_concat = [0, 3, 4 + 1, 4 + 2, 4 + 4]
    dw_removed = [2 * c + j for c in removed_concat for j in (0, 1)]
    dw_kernel, dw_bias = model.get_layer("dw").get_weights()
    dw_bias[dw_removed] = 0.0
    model.get_layer("dw").set_weights([dw_kernel, dw_bias])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    beta[dw_removed], mean[dw_removed] = 0.0, 0.0
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    _zero_channels(model, "mix", None, [1, 3])
    x = _sample((6, 6, 2))

    result = prune_channels(model, {"left": 0.5, "right": 0.5, "mix": 0.4})

    new = result.model
    assert new.get_layer("cat").output_shape[-1] == 2 + 3
    assert new.get_layer("dw").output_shape[-1] == 10
    assert new.get_layer("bn").gamma.shape[0] == 10
    assert new.get_layer("reshape").output_shape == (None, 16, 3)
    np.testing.assert_allclose(_outputs(new, x), _outputs(model, x), atol=1e-5)


def test_l1_and_l2_rank_a_spread_filter_and_a_peaked_filter_differently():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="hidden"), keras.layers.Dense(1)]
    )
    # unit 0: four 1s (L1 4, L2 2); unit 1: one 3 (L1 3, L2 3).
    kernel = np.array([[1.0, 3.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype="float32")
    model.get_layer("hidden").set_weights([kernel, np.zeros(2, "float32")])

    by_l1 = prune_channels(model, {"hidden": 0.5}, criterion="l1")
    by_l2 = prune_channels(model, {"hidden": 0.5}, criterion="l2")

    assert _kept(by_l1, "hidden").kept_indices == (0,)
    assert _kept(by_l2, "hidden").kept_indices == (1,)


def test_batchnorm_scale_is_folded_into_the_score():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Conv2D(4, 1, use_bias=False, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1),
        ]
    )
    model.get_layer("conv").set_weights([np.ones((1, 1, 2, 4), "float32")])
    gamma = np.array([1.0, 0.01, 1.0, -0.02], "float32")  # |gamma| counts, not its sign
    var = np.array([1.0, 1.0, 100.0, 1.0], "float32")  # var 100 divides channel 2 by 10
    model.get_layer("bn").set_weights([gamma, np.zeros(4), np.zeros(4), var])

    result = prune_channels(model, 0.5)

    assert _kept(result, "conv").kept_indices == (0, 2)


def test_min_channels_and_channel_multiple_bound_the_kept_count():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Conv2D(8, 1, name="small"),
            keras.layers.Conv2D(10, 1, name="wide"),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )

    floored = prune_channels(model, {"small": 0.9}, min_channels=3)
    rounded = prune_channels(model, {"wide": 0.3}, channel_multiple=4)

    assert _kept(floored, "small").kept == 3
    assert _kept(rounded, "wide").kept == 8  # 10 - floor(3.0) = 7, rounded up to 8


def test_residual_from_model_input_leaves_the_tied_conv_alone():
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 1, name="conv")(inp)
    x = keras.layers.Add()([inp, x])
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, name="out")(x)

    result = prune_channels(keras.Model(inp, out), 0.5)

    reasons = {s.name: s.reason for s in result.skipped}
    assert "model input" in reasons["conv"]
    assert _kept(result, "conv").kept == 3


def test_unsupported_layer_type_is_refused_by_name():
    model = keras.Sequential(
        [
            keras.Input((8, 2)),
            keras.layers.Conv1DTranspose(4, 3, name="temporal"),
            keras.layers.Flatten(),
        ]
    )
    with pytest.raises(UnsupportedModelError, match="'temporal' is a Conv1DTranspose"):
        prune_channels(model, 0.5)


def _sensor_model():
    """conv_a → bn_a → relu → pool → conv_b → GAP → dense_out, on 16 steps of 3 channels."""
    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((16, 3), name="signal")
    x = keras.layers.Conv1D(8, 3, padding="same", name="conv_a")(inp)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.MaxPooling1D(2, name="pool")(x)
    x = keras.layers.Conv1D(8, 3, name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    out = keras.layers.Dense(3, name="dense_out")(x)
    model = keras.Model(inp, out)
    _randomize_batchnorm(model)
    return model


def test_conv1d_model_with_zero_channels_rebuilds_smaller_with_equal_outputs():
    model = _sensor_model()
    _zero_channels(model, "conv_a", "bn_a", [2, 6])
    _zero_channels(model, "conv_b", None, [0, 3])
    x = _sample((16, 3))

    result = prune_channels(model, 0.25)

    new = result.model
    assert new.get_layer("conv_a").filters == 6
    assert new.get_layer("conv_b").filters == 6
    assert new.get_layer("conv_b").get_weights()[0].shape == (3, 6, 6)
    assert new.get_layer("bn_a").gamma.shape[0] == 6
    assert _kept(result, "conv_a").kept_indices == (0, 1, 3, 4, 5, 7)
    assert _kept(result, "conv_b").kept_indices == (1, 2, 4, 5, 6, 7)
    np.testing.assert_allclose(_outputs(new, x), _outputs(model, x), atol=1e-5)
    assert result.params_after < result.params_before


def test_recurrent_layer_is_kept_whole_with_its_inputs_and_listed_as_skipped():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((12, 4)),
            keras.layers.Conv1D(8, 3, name="conv"),
            keras.layers.LSTM(6, return_sequences=True, name="lstm"),
            keras.layers.Conv1D(8, 3, name="conv_after"),
            keras.layers.GRU(5, name="gru"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    x = _sample((12, 4))

    result = prune_channels(model, 0.5)

    skipped = {s.name: s.reason for s in result.skipped}
    assert skipped["lstm"] == "recurrent layer kept whole"
    assert skipped["gru"] == "recurrent layer kept whole"
    assert "feeds recurrent layer 'lstm'" in skipped["conv"]
    assert "feeds recurrent layer 'gru'" in skipped["conv_after"]
    assert [layer.name for layer in result.layers] == ["conv", "conv_after", "out"]
    np.testing.assert_allclose(_outputs(result.model, x), _outputs(model, x), atol=1e-6)


def test_grouped_conv_keeps_its_channels_and_those_feeding_it_while_others_go():
    keras.utils.set_random_seed(RNG_SEED)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(8, 3, groups=2, padding="same", name="grouped_in"),
            keras.layers.Conv2D(8, 3, padding="same", name="feed"),
            keras.layers.Conv2D(8, 3, groups=4, padding="same", name="grouped"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Conv2D(8, 1, name="after"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    _zero_channels(model, "after", None, [0, 6])
    x = _sample((8, 8, 4))

    result = prune_channels(model, 0.25)

    skipped = {s.name: s.reason for s in result.skipped}
    assert skipped["grouped_in"] == "grouped convolution (groups=2): channels kept whole"
    assert skipped["grouped"] == "grouped convolution (groups=4): channels kept whole"
    assert skipped["feed"] == "it feeds grouped convolution 'grouped' (kept whole)"
    new = result.model
    assert [new.get_layer(n).filters for n in ("grouped_in", "feed", "grouped")] == [8, 8, 8]
    assert _kept(result, "after").kept_indices == (1, 2, 3, 4, 5, 7)
    assert new.get_layer("after").filters == 6
    np.testing.assert_allclose(_outputs(new, x), _outputs(model, x), atol=1e-5)
    assert result.params_after < result.params_before


def test_subclassed_model_is_refused():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="only Sequential and Functional"):
        prune_channels(model, 0.5)


@pytest.mark.parametrize(
    ("ratio", "message"),
    [
        (1.0, r"ratio must be a number in \[0, 1\)"),
        ({"gap": 0.5}, "'gap' is not a Conv2D or Dense"),
        ({"conv_c": -0.1}, r"ratio\['conv_c'\] must be"),
    ],
)
def test_bad_ratios_are_refused_with_the_argument_named(ratio, message):
    with pytest.raises(ConfigError, match=message):
        prune_channels(_residual_model(), ratio)


def test_result_to_dict_is_json_ready_and_str_lists_layers():
    import json

    result = prune_channels(_residual_model(), 0.5)

    data = json.loads(json.dumps(result.to_dict()))
    assert data["channels_total"] == 8 + 8 + 8 + 3
    assert data["channels_kept"] == 4 + 4 + 4 + 3
    assert data["skipped"] == [{"name": "dense_out", "reason": data["skipped"][0]["reason"]}]
    assert "conv_b" in str(result) and "4/8" in str(result)
