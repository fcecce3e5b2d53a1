"""The layer graph read from a tf_keras model: order, inputs, shapes and refusals."""

from __future__ import annotations

import pytest

from edge_prune.errors import UnsupportedModelError
from edge_prune.training._tf import keras
from edge_prune.training.keras_graph import model_nodes


def test_functional_model_gives_nodes_in_order_with_their_inputs_and_shapes():
    inp = keras.Input((4, 4, 2), name="img")
    a = keras.layers.Conv2D(3, 1, name="a")(inp)
    b = keras.layers.Conv2D(3, 1, name="b")(inp)
    out = keras.layers.Add(name="sum")([a, b])
    nodes = model_nodes(keras.Model(inp, out))

    assert [n.name for n in nodes] == ["img", "a", "b", "sum"]
    by_name = {n.name: n for n in nodes}
    assert by_name["sum"].inputs == ("a", "b")
    assert by_name["sum"].input_shapes == ((None, 4, 4, 3), (None, 4, 4, 3))
    assert by_name["a"].class_name == "Conv2D" and by_name["a"].config["filters"] == 3


def test_sequential_model_chains_each_layer_to_the_one_before():
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")]
    )
    nodes = model_nodes(model)

    assert [(n.name, n.inputs) for n in nodes] == [("d1", ()), ("d2", ("d1",))]
    assert nodes[1].output_shape == (None, 2)


def test_shared_layer_is_refused_by_name():
    shared = keras.layers.Dense(3, name="shared")
    inp = keras.Input((3,))
    model = keras.Model(inp, shared(shared(inp)))
    with pytest.raises(UnsupportedModelError, match="'shared' is called 2 times"):
        model_nodes(model)


def test_unbuilt_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="not built"):
        model_nodes(keras.Sequential([keras.layers.Dense(2)]))
