"""Sparsity-preserving clustering: few values per kernel, pruned zeros kept, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import compile_for_classes, trained_cnn, zero_smallest

from edge_prune.errors import ConfigError
from edge_prune.training.cluster import cluster, strip_clustering
from edge_prune.training.train import copy_model

PRUNED_FRACTION = 0.7


@pytest.fixture(scope="module")
def models():
    model, x, y = trained_cnn(seed=0, epochs=2)
    zero_smallest(model, PRUNED_FRACTION)
    clustered = compile_for_classes(cluster(model, number_of_clusters=16), learning_rate=1e-3)
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    return {"keras": strip_clustering(clustered), "x": x, "y": y}


def test_cluster_keeps_pruned_zeros_and_at_most_16_values_per_kernel(models):
    for layer in models["keras"].layers:
        if not layer.get_weights():
            continue
        kernel = layer.get_weights()[0]
        assert len(np.unique(kernel)) <= 16, layer.name
        assert np.mean(kernel == 0.0) >= PRUNED_FRACTION - 0.01, layer.name


def test_cluster_count_below_two_is_a_config_error(models):
    with pytest.raises(ConfigError, match="number_of_clusters"):
        cluster(models["keras"], number_of_clusters=1)


def test_layer_with_fewer_weights_than_clusters_gets_fewer_clusters(models):
    # At 95% sparsity a small kernel keeps fewer nonzero weights on one side than there are
    # centroids; tfmot's k-means++ would fail on it ("num_to_sample <= points.rows()").
    model = copy_model(models["keras"])
    conv = model.get_layer("conv2d")
    kernel, bias = conv.get_weights()
    kernel[:] = 0.0
    kernel.flat[:3] = [0.5, -0.5, 0.25]
    conv.set_weights([kernel, bias])

    clustered = strip_clustering(cluster(model, number_of_clusters=8))

    conv_kernel = clustered.get_layer("conv2d").get_weights()[0]
    assert np.count_nonzero(conv_kernel) <= 3  # the zeros stay zeros
    assert len(np.unique(conv_kernel)) <= 4
    assert len(np.unique(clustered.get_layer("dense_hidden").get_weights()[0])) <= 8
