"""The layer graph of a tf_keras Sequential or Functional model, read from its config.

Both the cost counter (:mod:`edge_prune.training.macs`) and structured pruning
(:mod:`edge_prune.training.structured`) walk a model as a list of :class:`GraphNode` in topological
order (inputs before the layers that read them). Reading does not call the model and needs no
TensorFlow import of its own: the layers are read through their Keras attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_prune.errors import UnsupportedModelError

if TYPE_CHECKING:
    from edge_prune.training._tf import keras

__all__ = ["GraphNode", "model_nodes"]


@dataclass(frozen=True)
class GraphNode:
    """One layer of a Sequential or Functional model, called once, with its neighbours."""

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]  # names of the layers it reads; () for the model input
    input_shapes: tuple[tuple, ...]
    output_shape: tuple
    layer: keras.layers.Layer  # the tf_keras layer object (read only)


def model_nodes(model: keras.Model) -> list[GraphNode]:
    """The layers of a built Sequential or Functional tf_keras model, inputs before users.

    Raises UnsupportedModelError for subclassed or unbuilt models and for layers called more
    than once (shared layers).
    """
    class_name = type(model).__name__
    module = type(model).__module__
    if module.startswith("keras") and not module.startswith("keras.src.engine"):
        raise UnsupportedModelError(
            f"model '{getattr(model, 'name', model)}' is a Keras 3 {class_name} ({module}): "
            "build it with tf_keras (import tf_keras as keras, TF_USE_LEGACY_KERAS=1)"
        )
    if class_name == "Sequential" and not model.built:
        raise UnsupportedModelError(
            f"model '{model.name}' is not built: give it an input shape (keras.Input) first"
        )
    if not getattr(model, "_is_graph_network", False) or class_name not in (
        "Sequential",
        "Functional",
    ):
        raise UnsupportedModelError(
            f"model '{getattr(model, 'name', model)}' is a {class_name}: only Sequential and "
            "Functional tf_keras models can be analysed (subclassed models cannot)"
        )
    if class_name == "Sequential":
        return _sequential_nodes(model)
    return _functional_nodes(model, model.get_config())


def _sequential_nodes(model: keras.Sequential) -> list[GraphNode]:
    nodes = []
    previous: tuple[str, ...] = ()
    for layer in model.layers:
        nodes.append(_node(layer, previous))
        previous = (layer.name,)
    return nodes


def _functional_nodes(model: keras.Model, config: dict) -> list[GraphNode]:
    nodes = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = model.get_layer(name)
        calls = entry["inbound_nodes"]
        if len(calls) > 1:
            raise UnsupportedModelError(
                f"layer '{name}' is called {len(calls)} times (shared layer): not supported"
            )
        inputs = tuple(_inbound_name(name, item) for item in calls[0]) if calls else ()
        nodes.append(_node(layer, inputs))
    return nodes


def _inbound_name(layer_name: str, item: object) -> str:
    if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
        return item[0]
    raise UnsupportedModelError(
        f"layer '{layer_name}' has inputs this tool cannot read ({item!r}): use Keras layers"
    )


def _node(layer: keras.layers.Layer, inputs: tuple[str, ...]) -> GraphNode:
    input_shapes = _shapes(layer.input_shape)
    output_shapes = _shapes(layer.output_shape)
    return GraphNode(
        name=layer.name,
        class_name=type(layer).__name__,
        config=layer.get_config(),
        inputs=inputs,
        input_shapes=input_shapes,
        output_shape=output_shapes[0],
        layer=layer,
    )


def _shapes(shape: tuple | list[tuple]) -> tuple[tuple, ...]:
    """``layer.input_shape`` is a tuple, or a list of tuples for several inputs."""
    if isinstance(shape, list):
        return tuple(tuple(s) for s in shape)
    return (tuple(shape),)
