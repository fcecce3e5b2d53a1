"""The table of layer kinds: complete for the model families, read by the cost counter and by
structured pruning, and extended by one entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from layer_kind_models import BUILDERS, FAMILIES, GOLDEN, summary

from edge_prune._tf import keras
from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.firmware import TFLM_ADD_METHODS
from edge_prune.layer_kinds import (
    KINDS,
    LayerKind,
    kind_named,
    kind_of,
    kinds,
    per_output_element,
    register,
    unregister,
)
from edge_prune.macs import count_costs
from edge_prune.structured import prune_channels

# Cost labels of recurrent layers the converter unrolls into other ops (edge_prune.convert).
UNROLLED_LABELS = {"GRU", "UNIDIRECTIONAL_SEQUENCE_RNN"}


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
    ops = {op for kind in KINDS for op in kind.ops}
    assert sorted(ops - set(TFLM_ADD_METHODS)) == sorted(UNROLLED_LABELS)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cost": "guess"}, "cost must be one of"),
        ({"channels": "sideways"}, "channels must be None or one of"),
        ({"cost": "weighted", "ops": ("CONV_2D",)}, "needs its op and a macs function"),
        ({"cost": "activation"}, "needs an activation function"),
        ({"channels": "owns", "kernel_axes": (0, 1)}, "needs the size_key"),
        ({"channels": "repeats"}, "needs the kernel_axes"),
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
