"""MAC and parameter counts per layer, TFLite op mapping, and the latency estimate."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.training._tf import keras
from edge_prune.training.macs import count_costs, estimate_latency, estimate_latency_for_target
from edge_prune.training.structured import prune_channels


def _small_cnn():
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="relu"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(5, activation="softmax", name="fc"),
        ],
        name="small_cnn",
    )


def _rows(cost):
    return {(r.layer, r.op): r for r in cost.rows}


def test_small_cnn_macs_and_params_equal_the_hand_count():
    # conv: 8x8 out (same), 3x3 kernel, 3 in, 4 out  -> 8*8*3*3*3*4 = 6912 MACs
    #       params 3*3*3*4 + 4 bias                  -> 112
    # bn:   folded into conv by the converter: no op; params gamma, beta, mean, var 4*4 = 16
    # relu: fused into conv: no op
    # dw:   6x6 out (valid), 3x3, 4 in, multiplier 2 -> 6*6*3*3*4*2 = 2592 MACs
    #       params 3*3*4*2 + 8 bias                  -> 80
    # pool: 3x3x8 out, 2x2 window                    -> 72*4 = 288 elementwise ops, 0 MACs
    # flat: RESHAPE to 72
    # fc:   72 in, 5 out                             -> 360 MACs, params 72*5 + 5 = 365
    #       + SOFTMAX over 5 values                  -> 5 elementwise ops
    cost = count_costs(_small_cnn())
    rows = _rows(cost)

    assert rows[("conv", "CONV_2D")].macs == 6912
    assert rows[("conv", "CONV_2D")].params == 112
    assert rows[("bn", None)].params == 16
    assert ("relu", None) in rows
    assert rows[("dw", "DEPTHWISE_CONV_2D")].macs == 2592
    assert rows[("dw", "DEPTHWISE_CONV_2D")].params == 80
    assert rows[("pool", "MAX_POOL_2D")].elementwise_ops == 288
    assert rows[("flat", "RESHAPE")].macs == 0
    assert rows[("fc", "FULLY_CONNECTED")].macs == 360
    assert rows[("fc", "SOFTMAX")].elementwise_ops == 5
    assert cost.total_macs == 6912 + 2592 + 360
    assert cost.total_params == 112 + 16 + 80 + 365


def _residual_model():
    inp = keras.Input((6, 6, 4), name="img")
    grouped = keras.layers.Conv2D(6, 3, padding="same", groups=2, name="grouped")(inp)
    point = keras.layers.Conv2D(6, 1, name="point")(inp)
    x = keras.layers.Add(name="add")([grouped, point])
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.BatchNormalization(name="bn_alone")(x)
    out = keras.layers.Dense(2, activation="sigmoid", name="fc")(x)
    return keras.Model(inp, out, name="residual")


def test_grouped_conv_add_and_global_pooling_are_counted_as_stated():
    rows = _rows(count_costs(_residual_model()))

    assert rows[("grouped", "CONV_2D")].macs == 6 * 6 * 3 * 3 * (4 // 2) * 6  # groups=2
    assert rows[("point", "CONV_2D")].macs == 6 * 6 * 4 * 6
    assert rows[("add", "ADD")].macs == 0
    assert rows[("add", "ADD")].elementwise_ops == 6 * 6 * 6
    assert ("act", None) in rows  # ReLU fused into ADD
    assert rows[("gap", "MEAN")].elementwise_ops == 6 * 6 * 6
    # BN after a MEAN cannot be folded: a multiply and an add per element
    assert rows[("bn_alone", "MUL")].elementwise_ops == 6
    assert rows[("bn_alone", "ADD")].elementwise_ops == 6
    assert rows[("fc", "LOGISTIC")].elementwise_ops == 2


def test_latency_estimate_sums_macs_over_throughput_and_fixed_costs():
    cost = count_costs(_small_cnn())

    est = estimate_latency(
        cost,
        macs_per_cycle={"CONV_2D": 0.5, "FULLY_CONNECTED": 0.25},
        us_per_call={"SOFTMAX": 10.0, "RESHAPE": 2.0},
        clock_hz=1_000_000,
        source="test figures",
    )

    rows = _rows(est)
    assert rows[("conv", "CONV_2D")].est_us == pytest.approx(6912 / 0.5)
    assert rows[("fc", "FULLY_CONNECTED")].est_us == pytest.approx(360 / 0.25)
    assert rows[("fc", "SOFTMAX")].est_us == pytest.approx(10.0)
    assert rows[("bn", None)].est_us == 0.0
    assert rows[("dw", "DEPTHWISE_CONV_2D")].est_us is None
    assert est.estimated_us == pytest.approx(13824 + 1440 + 10 + 2)
    assert est.latency.not_estimated == ("dw (DEPTHWISE_CONV_2D)", "pool (MAX_POOL_2D)")
    assert "ESTIMATE" in str(est) and "test figures" in str(est)
    assert cost.latency is None  # the input is left as it was


def test_add_is_estimated_from_its_elementwise_ops():
    est = estimate_latency(
        count_costs(_residual_model()),
        macs_per_cycle={"ADD": 0.5},
        us_per_call={},
        clock_hz=2_000_000,
        source="s",
    )

    assert _rows(est)[("add", "ADD")].est_us == pytest.approx(216 / 0.5 / 2)


def test_target_like_object_is_read_by_duck_typing():
    cost = count_costs(_small_cnn())
    throughput = SimpleNamespace(
        macs_per_cycle={"CONV_2D": 0.5}, us_per_call={}, source="board measurements"
    )

    est = estimate_latency_for_target(cost, SimpleNamespace(clock_hz=1e6, throughput=throughput))
    none = estimate_latency_for_target(cost, SimpleNamespace(clock_hz=1e6, throughput=None))

    assert est.latency.source == "board measurements"
    assert est.estimated_us == pytest.approx(6912 / 0.5)
    assert none is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clock_hz": 0}, "clock_hz must be a positive"),
        ({"macs_per_cycle": {"CONV_2D": 0}}, r"macs_per_cycle\['CONV_2D'\] must be > 0"),
        ({"us_per_call": {"SOFTMAX": -1}}, r"us_per_call\['SOFTMAX'\] must be >= 0"),
    ],
)
def test_bad_throughput_figures_are_refused_by_name(kwargs, message):
    args = {"macs_per_cycle": {}, "us_per_call": {}, "clock_hz": 1e6, "source": "s"} | kwargs
    with pytest.raises(ConfigError, match=message):
        estimate_latency(count_costs(_small_cnn()), **args)


def test_unknown_layer_is_listed_as_not_counted_and_never_raises():
    model = keras.Sequential(
        [
            keras.Input((8, 2)),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(3, name="fc"),
        ]
    )

    cost = count_costs(model)

    assert [(u.layer, u.layer_type) for u in cost.not_counted] == [("norm", "LayerNormalization")]
    assert _rows(cost)[("norm", None)].params == 4  # gamma, beta: counted all the same
    assert cost.total_macs == 8 * 2 * 3  # Dense on 8 positions only
    assert "Not counted" in str(cost) and "norm (LayerNormalization)" in str(cost)
    assert cost.to_dict()["not_counted"] == [{"layer": "norm", "layer_type": "LayerNormalization"}]
    est = estimate_latency(
        cost, macs_per_cycle={"FULLY_CONNECTED": 1.0}, us_per_call={}, clock_hz=1e6, source="s"
    )
    assert "norm (LayerNormalization, not counted)" in est.latency.not_estimated


def test_conv1d_and_1d_pooling_are_counted_like_their_2d_ops():
    # conv: 16 steps (same), kernel 3, 4 in, 8 out -> 16*3*4*8 = 1536 MACs
    # pool: 8x8 out, window 2 -> 64*2 = 128; gap: 8 steps x 8 channels in -> 64
    model = keras.Sequential(
        [
            keras.Input((16, 4)),
            keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv"),
            keras.layers.AveragePooling1D(2, name="pool"),
            keras.layers.GlobalAveragePooling1D(name="gap"),
        ]
    )

    rows = _rows(count_costs(model))

    assert rows[("conv", "CONV_2D")].macs == 1536
    assert rows[("pool", "AVERAGE_POOL_2D")].elementwise_ops == 128
    assert rows[("gap", "MEAN")].elementwise_ops == 64


def test_recurrent_layers_are_counted_per_gate_and_time_step():
    # 10 steps of 3 inputs, 8 units:
    # LSTM 4 gates x (3 + 8 + 1) x 8 x 10 = 3840; GRU (reset_after: two biases)
    # 3 x (3 + 8 + 2) x 8 x 10 = 3120; SimpleRNN (3 + 8 + 1) x 8 x 10 = 960
    def macs(layer):
        model = keras.Sequential([keras.Input((10, 3)), layer])
        return count_costs(model).total_macs

    assert macs(keras.layers.LSTM(8)) == 3840
    assert macs(keras.layers.GRU(8)) == 3120
    assert macs(keras.layers.GRU(8, reset_after=False)) == 3 * (3 + 8 + 1) * 8 * 10
    assert macs(keras.layers.SimpleRNN(8)) == 960


def test_to_dict_is_json_ready_and_labels_latency_an_estimate():
    est = estimate_latency(
        count_costs(_small_cnn()),
        macs_per_cycle={"CONV_2D": 0.5},
        us_per_call={},
        clock_hz=1e6,
        source="s",
    )

    data = json.loads(json.dumps(est.to_dict()))
    assert data["total_macs"] == 9864
    assert data["latency"]["kind"] == "estimate"
    assert data["layers"][0] | {"est_us": None} == {
        "layer": "conv",
        "layer_type": "Conv2D",
        "op": "CONV_2D",
        "params": 112,
        "macs": 6912,
        "elementwise_ops": 0,
        "est_us": None,
    }
    assert data["layers"][0]["est_us"] == pytest.approx(6912 / 0.5)


def test_halving_channels_of_a_conv_chain_quarters_the_inner_conv_macs():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="c1"),
            keras.layers.Conv2D(8, 3, padding="same", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )

    before = _rows(count_costs(model))
    after = _rows(count_costs(prune_channels(model, 0.5).model))

    assert after[("c1", "CONV_2D")].macs * 2 == before[("c1", "CONV_2D")].macs
    assert after[("c2", "CONV_2D")].macs * 4 == before[("c2", "CONV_2D")].macs


def test_keras_3_model_is_refused_with_what_to_do():
    import keras as keras3  # Keras 3, only to build the model a user might wrongly pass

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="Keras 3 .* build it with tf_keras"):
        count_costs(model)
