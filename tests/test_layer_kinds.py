"""The table of layer kinds: complete for the model families, read by the cost counter and by
structured pruning, and extended by one entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from layer_kind_models import BUILDERS, FAMILIES, GOLDEN, summary

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.measurement.firmware import TFLM_ADD_METHODS
from edge_prune.measurement.tflite_file import read_model
from edge_prune.training._tf import keras
from edge_prune.training.convert import convert
from edge_prune.training.layer_kinds import (
    ACTIVATION_OPS,
    FOLDED_ACTIVATION_OPS,
    KINDS,
    LayerKind,
    kind_named,
    kind_of,
    kinds,
    per_output_element,
    register,
    unregister,
    unrolled_label,
)
from edge_prune.training.macs import count_costs
from edge_prune.training.structured import prune_channels

# Cost labels of recurrent layers the converter unrolls into other ops
# (edge_prune.training.convert).
UNROLLED_LABELS = {"GRU (unrolled)", "SimpleRNN (unrolled)"}
# Ops the int8 converter may put around an op whose int8 kernel it does not use.
REQUANTIZE_OPS = {"QUANTIZE", "DEQUANTIZE"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_costs_and_channel_removal_equal_the_figures_recorded_before_the_table(name):
    assert summary(name) == json.loads(GOLDEN.read_text(encoding="utf-8"))[name]


def test_every_layer_class_of_the_families_is_in_the_table():
    for family in FAMILIES:
        model = BUILDERS[family]()
        unknown = [type(layer).__name__ for layer in model.layers if not kind_of(layer).known]
        assert unknown == [], family


def test_the_recorded_models_hold_every_class_of_the_table():
    held = {type(layer).__name__ for build in BUILDERS.values() for layer in build().layers}
    assert {k.name for k in KINDS} <= held  # a new entry needs a model in the golden file


def test_an_unknown_class_gets_the_default_kind():
    kind = kind_of(keras.layers.LayerNormalization())
    assert kind.name == "LayerNormalization" and not kind.known
    assert kind.cost == "not_counted" and kind.channels is None and kind.ops == ()


def test_every_op_in_the_table_has_a_tflm_resolver_method():
    ops = {op for kind in KINDS for op in (*kind.ops, *kind.unrolled_into)}
    assert sorted(ops - set(TFLM_ADD_METHODS)) == sorted(UNROLLED_LABELS)
    assert {unrolled_label(k.name) for k in KINDS if k.unrolled_into} == UNROLLED_LABELS


def test_folded_activation_ops_lead_the_ops_of_their_activation():
    for activation, folded in FOLDED_ACTIVATION_OPS.items():
        assert ACTIVATION_OPS[activation][: len(folded)] == folded


def _hard_sigmoid_model() -> keras.Model:
    """hard_sigmoid after a Conv and a Dense (its MUL and ADD fold into them) and after pooling
    (they run)."""
    keras.utils.set_random_seed(6)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="hard_sigmoid", name="conv"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Activation("hard_sigmoid", name="act"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(3, activation="hard_sigmoid", name="fc"),
        ]
    )


def _unrolled_model() -> keras.Model:
    keras.utils.set_random_seed(6)
    return keras.Sequential(
        [
            keras.Input((3, 2)),
            keras.layers.GRU(4, return_sequences=True, name="gru"),
            keras.layers.SimpleRNN(4, name="rnn"),
            keras.layers.Dense(2, name="fc"),
        ]
    )


def _converted_ops(model: keras.Model, quantization: str) -> tuple[str, ...]:
    shape = model.input_shape[1:]
    x = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
    data = x if quantization == "int8" else None
    converted = convert(model, quantization=quantization, representative_data=data)
    return read_model(converted.tflite_bytes).operators


def _elu_model() -> keras.Model:
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, name="hidden"),
            keras.layers.ELU(name="elu"),
            keras.layers.Dense(3, activation="elu", name="fc"),
        ]
    )


@pytest.mark.parametrize("quantization", ["float", "int8"])
def test_the_counter_names_the_ops_the_converter_emits_for_elu(quantization):
    """TensorFlow 2.21 has no int8 ELU: the int8 model runs it in float between a DEQUANTIZE
    and a QUANTIZE, and the counter says so."""
    cost = count_costs(_elu_model(), quantization=quantization)
    assert tuple(r.op for r in cost.rows if r.op) == _converted_ops(_elu_model(), quantization)
    expected = ["DEQUANTIZE", "ELU", "QUANTIZE"] if quantization == "int8" else ["ELU"]
    assert [r.op for r in cost.rows if r.layer == "elu"] == expected


def test_the_counter_refuses_an_unknown_quantization():
    with pytest.raises(ConfigError, match="quantization"):
        count_costs(_elu_model(), quantization="int4")


@pytest.mark.parametrize("quantization", ["float", "int8"])
def test_the_counter_names_the_ops_the_converter_emits_for_hard_sigmoid(quantization):
    cost = count_costs(_hard_sigmoid_model())
    emitted = _converted_ops(_hard_sigmoid_model(), quantization)
    assert tuple(r.op for r in cost.rows if r.op) == emitted
    assert [r.op for r in cost.rows if r.layer == "act"] == ["MUL", "ADD", "MINIMUM", "RELU"]
    assert [r.op for r in cost.rows if r.layer == "fc"] == ["FULLY_CONNECTED", "MINIMUM", "RELU"]


@pytest.mark.parametrize("quantization", ["float", "int8"])
def test_unrolled_recurrent_layers_are_labelled_and_list_the_ops_they_become(quantization):
    model = _unrolled_model()
    rows = {r.layer: r.op for r in count_costs(model).rows}
    emitted = set(_converted_ops(model, quantization)) - REQUANTIZE_OPS

    assert rows == {"gru": "GRU (unrolled)", "rnn": "SimpleRNN (unrolled)", "fc": "FULLY_CONNECTED"}
    unrolled = set(kind_named("GRU").unrolled_into) | set(kind_named("SimpleRNN").unrolled_into)
    assert emitted == unrolled | {"FULLY_CONNECTED"}
    assert not UNROLLED_LABELS & emitted


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cost": "guess"}, "cost must be one of"),
        ({"channels": "sideways"}, "channels must be None or one of"),
        ({"cost": "weighted", "ops": ("CONV_2D",)}, "needs its op and a macs function"),
        ({"cost": "activation"}, "needs an activation function"),
        ({"channels": "owns", "kernel_axes": (0, 1)}, "needs the size_key"),
        ({"channels": "repeats"}, "needs the kernel_axes"),
        ({"unrolled_into": ("FULLY_CONNECTED",)}, "its cost label"),
    ],
)
def test_a_kind_that_cannot_be_read_is_refused_by_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        LayerKind("Custom", **fields)


def test_a_class_is_registered_once_and_built_in_kinds_stay():
    with pytest.raises(ConfigError, match="already in the table"):
        register(LayerKind("Dense"))
    with pytest.raises(ConfigError, match="built in"):
        unregister("Dense")
    assert kind_named("Dense").cost == "weighted"


@keras.utils.register_keras_serializable(package="edge_prune_tests")
class Doubling(keras.layers.Layer):
    """A custom layer edge-prune does not know: multiplies its input by 2."""

    def call(self, inputs):
        return inputs * 2.0


def _model_with_doubling() -> keras.Model:
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(8, 3, name="conv"),
            Doubling(name="double"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="logits"),
        ]
    )


def test_one_registered_kind_teaches_counter_and_pruning_a_custom_layer():
    model = _model_with_doubling()
    before = count_costs(model)
    assert [u.layer for u in before.not_counted] == ["double"]
    with pytest.raises(UnsupportedModelError, match="'double' is a Doubling"):
        prune_channels(model, 0.5)

    kind = register(
        LayerKind(
            "Doubling",
            ops=("MUL",),
            elementwise=per_output_element,
            channels="passes",
            per_value=True,
        )
    )
    try:
        assert kind_of(model.get_layer("double")) is kind and kind in kinds()
        cost = count_costs(model)
        result = prune_channels(model, 0.5)
    finally:
        unregister("Doubling")

    row = next(r for r in cost.rows if r.layer == "double")
    assert (row.op, row.elementwise_ops) == ("MUL", 4 * 4 * 8) and cost.not_counted == ()
    assert [(c.name, c.kept, c.total) for c in result.layers] == [
        ("conv", 4, 8),
        ("logits", 3, 3),
    ]
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    assert result.model(x).shape == (2, 3)
    assert not kind_named("Doubling").known  # unregistered: the default again
