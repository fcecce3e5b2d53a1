"""Models that together hold every layer class of :mod:`edge_prune.training.layer_kinds`, and a
summary of what the cost counter and structured pruning make of them
(tests/data/layer_kinds_golden.json).

The summary leaves out what depends on weight values (kept indices, float outputs) and keeps
what depends on the layer kinds only: per row the layer type, op, parameters, MACs and
elementwise ops; per pruned layer the kept/total channels and ties, the skipped layers and
the parameters after, or the refusal. Layer names are set, so the summary reads the same in
any process.

    .venv/bin/python tests/layer_kind_models.py   # rewrite the golden file (review the diff)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiny_models  # noqa: E402

from edge_prune.errors import UnsupportedModelError  # noqa: E402
from edge_prune.training._tf import keras  # noqa: E402
from edge_prune.training.macs import count_costs  # noqa: E402
from edge_prune.training.structured import prune_channels  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "data" / "layer_kinds_golden.json"
L = keras.layers


def _sequential(name: str, shape: tuple, layers: list) -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape, name=f"{name}_in")
    x = inputs
    for i, layer in enumerate(layers):
        layer._name = f"{name}_{i}_{type(layer).__name__.lower()}"
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def every_1d() -> keras.Model:
    return _sequential(
        "every_1d",
        (16, 4),
        [
            L.ZeroPadding1D(1),
            L.Conv1D(6, 3, activation="tanh"),
            L.AveragePooling1D(2),
            L.SpatialDropout1D(0.1),
            L.Conv1D(6, 1),
            L.LeakyReLU(0.1),
            L.MaxPooling1D(2),
            L.GlobalMaxPooling1D(),
            L.Dense(5, activation="softmax"),
        ],
    )


def every_2d() -> keras.Model:
    return _sequential(
        "every_2d",
        (8, 8, 3),
        [
            L.ZeroPadding2D(1),
            L.Conv2D(8, 3),
            L.BatchNormalization(),
            L.ReLU(max_value=6),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
            L.ELU(),
            L.AveragePooling2D(2),
            L.SpatialDropout2D(0.1),
            L.GaussianNoise(0.1),
            L.GaussianDropout(0.1),
            L.Conv2D(6, 1, activation="sigmoid"),
            L.Activation("relu"),
            L.MaxPooling2D(2),
            L.Conv2D(6, 1, activation="hard_sigmoid"),
            L.Activation("linear"),
            L.Flatten(),
            L.Dense(7),
            L.Dropout(0.2),
            L.Activation("tanh"),
            L.Dense(4),
            L.Softmax(),
        ],
    )


def batchnorm_unfolded() -> keras.Model:
    return _sequential(
        "bn_unfolded",
        (6, 6, 2),
        [
            L.BatchNormalization(),
            L.Conv2D(4, 3, padding="same", use_bias=False),
            L.Activation("relu"),
            L.BatchNormalization(),
            L.ReLU(negative_slope=0.2),
            L.GlobalAveragePooling2D(),
            L.Dense(3),
        ],
    )


def grouped_and_global_max() -> keras.Model:
    return _sequential(
        "grouped",
        (6, 6, 4),
        [L.Conv2D(8, 1, groups=2), L.ReLU(), L.GlobalMaxPooling2D(), L.Dense(3)],
    )


def recurrent() -> keras.Model:
    return _sequential(
        "recurrent",
        (6, 3),
        [
            L.GRU(5, return_sequences=True),
            L.GRU(4, return_sequences=True, reset_after=False),
            L.SimpleRNN(4, return_sequences=True),
            L.LSTM(3),
            L.Dense(2),
        ],
    )


def merges() -> keras.Model:
    """Concatenate on channels → depthwise ×2 → BN → two convs added → softmax → Reshape that
    mixes channels → Dense; Concatenate on the time axis before a Conv1D."""
    keras.utils.set_random_seed(4)
    i = keras.Input((6, 6, 3), name="img")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(i)
    b = L.Conv2D(4, 1, name="b")(i)
    c = L.Conv2D(5, 1, name="c")(a)
    x = L.Concatenate(name="cat")([a, b, c])
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    e = L.Conv2D(6, 1, name="e")(x)
    f = L.Conv2D(6, 3, padding="same", name="f")(x)
    s = L.Add(name="add")([e, f])
    s = L.Activation("softmax", name="sm")(s)
    r = L.Reshape((6, 36), name="mix")(s)
    g = L.Dense(4, activation="relu", name="g")(r)
    t = L.Reshape((12, 2), name="time")(L.Flatten(name="fl")(g))
    t = L.Concatenate(axis=1, name="cat_time")([t, t])
    t = L.Conv1D(5, 3, name="c1")(t)
    o = L.Dense(3, name="out")(L.Flatten(name="fl2")(t))
    return keras.Model(i, o, name="merges")


def arithmetic() -> keras.Model:
    """Multiply, Subtract and Permute: counted, refused by structured pruning."""
    keras.utils.set_random_seed(4)
    i = keras.Input((4, 6), name="seq")
    a = L.Dense(6, name="a")(i)
    m = L.Multiply(name="mul")([a, i])
    s = L.Subtract(name="sub")([m, i])
    p = L.Permute((2, 1), name="perm")(s)
    return keras.Model(i, L.Dense(2, name="out")(p), name="arithmetic")


def unknown_classes() -> keras.Model:
    """LayerNormalization and Conv1DTranspose are in no table: not counted, refused."""
    return _sequential(
        "unknown",
        (10, 4),
        [L.Dense(6), L.LayerNormalization(), L.Conv1DTranspose(3, 2), L.Flatten(), L.Dense(2)],
    )


BUILDERS = {
    "cnn": tiny_models.make_cnn,
    "mlp": tiny_models.make_mlp,
    "conv1d": tiny_models.make_sensor_conv1d,
    "lstm": tiny_models.make_lstm,
    "ds_cnn": tiny_models.make_ds_cnn,
    "autoencoder": tiny_models.make_autoencoder,
    "mobilenet": tiny_models.make_mobilenet_block,
    "every_1d": every_1d,
    "every_2d": every_2d,
    "bn_unfolded": batchnorm_unfolded,
    "grouped": grouped_and_global_max,
    "recurrent": recurrent,
    "merges": merges,
    "arithmetic": arithmetic,
    "unknown": unknown_classes,
}
FAMILIES = ("cnn", "mlp", "conv1d", "lstm", "ds_cnn", "autoencoder", "mobilenet")


def cost_summary(model: keras.Model) -> dict:
    cost = count_costs(model)
    return {
        "rows": [[r.layer_type, r.op, r.params, r.macs, r.elementwise_ops] for r in cost.rows],
        "not_counted": [u.layer_type for u in cost.not_counted],
    }


def prune_summary(model: keras.Model) -> dict:
    try:
        result = prune_channels(model, 0.5)
    except UnsupportedModelError as e:
        return {"refused": str(e)}
    return {
        "params_after": result.params_after,
        "layers": [[c.name, c.kept, c.total, list(c.tied_with)] for c in result.layers],
        "skipped": [[s.name, s.reason] for s in result.skipped],
    }


def summary(name: str) -> dict:
    model = BUILDERS[name]()
    return {"costs": cost_summary(model), "channels": prune_summary(model)}


def main() -> None:
    data = {name: summary(name) for name in BUILDERS}
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{GOLDEN}: {len(data)} models")


if __name__ == "__main__":
    main()
