"""Lottery-ticket rewinding: zeros stay zero, survivors take the early values, the mask holds."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.data import Dataset
from edge_prune.errors import UnsupportedModelError
from edge_prune.runner import quiet
from edge_prune.training.rewind import record_weights, retrain_with_fixed_mask, rewind


def _mlp(seed: int = 0, hidden: int = 12):
    from edge_prune.training._tf import keras
    from edge_prune.training.train import seed_everything

    seed_everything(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(hidden, activation="relu", name="fc")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny")


def _data(n: int = 96) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    return Dataset(x, y, x[:24], y[:24], "synthetic")


def _pruned(model, fraction: float = 0.6):
    """Zero the smallest-magnitude ``fraction`` of each kernel, as magnitude pruning does."""
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:
            cut = np.quantile(np.abs(w), fraction)
            w = np.where(np.abs(w) <= cut, 0.0, w).astype(w.dtype)
        weights.append(w)
    model.set_weights(weights)
    return model


def test_record_weights_keeps_the_weights_after_epoch_k():
    from edge_prune.training.train import compile_for_training

    data, model = _data(), _mlp()
    compile_for_training(model, 0.01, data)
    before = [w.copy() for w in model.get_weights()]
    at_zero, at_one = record_weights(0), record_weights(1)
    model.fit(data.x_train, data.y_train, epochs=2, verbose=0, callbacks=[at_zero, at_one])
    assert all(np.array_equal(a, b) for a, b in zip(at_zero.weights, before, strict=True))
    assert not np.array_equal(at_one.weights[0], before[0])
    assert not np.array_equal(at_one.weights[0], model.get_weights()[0])


def test_rewind_keeps_zeros_and_restores_early_values_of_survivors():
    early = _mlp(seed=1)
    pruned = _pruned(_mlp(seed=2))
    model, masks = rewind(pruned, early.get_weights())
    for now, was, got, mask in zip(
        pruned.get_weights(), early.get_weights(), model.get_weights(), masks, strict=True
    ):
        if now.ndim >= 2:
            assert np.all(got[now == 0] == 0)
            assert np.array_equal(got[now != 0], was[now != 0])
            assert np.array_equal(mask, (now != 0).astype(now.dtype))
        else:
            assert mask is None and np.array_equal(got, was)
    assert pruned.get_weights()[0] is not model.get_weights()[0]


def test_retraining_with_the_fixed_mask_keeps_pruned_weights_at_zero():
    pruned = _pruned(_mlp(seed=2), fraction=0.7)
    model, masks = rewind(pruned, _mlp(seed=1).get_weights())
    start = model.get_weights()
    retrain_with_fixed_mask(
        model, masks, _data(), epochs=2, batch_size=16, learning_rate=0.01, progress=quiet
    )
    after = model.get_weights()
    for w, mask, w0 in zip(after, masks, start, strict=True):
        if mask is not None:
            assert np.all(w[mask == 0] == 0)
            assert not np.array_equal(w[mask == 1], w0[mask == 1])  # survivors did train


def test_rewind_refuses_another_architecture():
    with pytest.raises(UnsupportedModelError, match="shape"):
        rewind(_mlp(hidden=12), _mlp(hidden=8).get_weights())
