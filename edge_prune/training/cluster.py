"""Sparsity-preserving weight clustering (tfmot) for pruned ``tf_keras`` models.

Pruning alone leaves many distinct weight values per layer; clustering cuts them to
``number_of_clusters`` shared values while keeping the pruned zeros, which is what lets the
codecs in :mod:`edge_prune.measurement.codecs` (LUT, Huffman) store a weight in 1-4 bits::

    clustered = cluster(stripped_pruned_model, number_of_clusters=16)
    clustered.compile(...)               # cluster_weights drops the optimizer
    clustered.fit(..., epochs=1)         # short fine-tune
    final = strip_clustering(clustered)

TensorFlow is imported (through :mod:`edge_prune.training._tf`) only when a function is called.
"""

from __future__ import annotations

from edge_prune.errors import ConfigError, UnsupportedModelError


def cluster(
    model,
    number_of_clusters: int = 16,
    *,
    preserve_sparsity: bool = True,
    cluster_per_channel: bool = False,
):
    """Wrap a ``tf_keras`` model for sparsity-preserving weight clustering (tfmot).

    ``model`` should be a pruned model with the pruning wrappers stripped. Each clusterable
    layer's kernel is replaced by ``number_of_clusters`` shared values (centroids initialised
    with k-means++); with ``preserve_sparsity`` the pruned zeros stay zero and count as one of
    the values. ``cluster_per_channel`` (Conv2D only, tfmot) gives each output channel its own
    centroids.

    Returns the *wrapped* model, ready for a short fine-tune. tfmot builds a new model without
    an optimizer: call ``compile`` before ``fit``. Then call :func:`strip_clustering` before
    converting. For 4-bit LUT compression (:mod:`edge_prune.measurement.codecs`) keep
    ``number_of_clusters <= 16``.
    """
    _check_cluster_count(number_of_clusters)
    from edge_prune.training._tf import keras, tfmot

    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"cluster: model is a {type(model).__module__}.{type(model).__name__}, expected a "
            "tf_keras Model (build it with `import tf_keras as keras`, not Keras 3)"
        )
    clustering = tfmot.clustering.keras
    parameters = {
        "number_of_clusters": number_of_clusters,
        "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": preserve_sparsity,
        "cluster_per_channel": cluster_per_channel,
    }

    def wrap(layer):
        return _clustered_layer(layer, parameters, clustering.cluster_weights)

    try:
        if any(isinstance(layer, keras.Model) for layer in model.layers):
            return clustering.cluster_weights(model, **parameters)  # nested: tfmot's own walk
        return keras.models.clone_model(model, clone_function=wrap)
    except (ValueError, TypeError) as e:
        raise UnsupportedModelError(
            f"cluster: tfmot cannot cluster this model ({e}); strip the pruning wrappers first "
            "and use a Sequential or Functional tf_keras model"
        ) from e


def _clustered_layer(layer, parameters: dict, cluster_weights):
    """``layer`` wrapped for clustering, with fewer clusters where k-means++ cannot place them.

    With sparsity preserved, tfmot splits the centroids between the positive and the negative
    weights and fails when one side has fewer weights than its share (seen: a 72-weight conv
    kernel pruned to 95%: "num_to_sample <= points.rows(). 7 vs 4"). Such a layer gets the
    largest cluster count that works, so its zeros stay preserved; a layer where none works
    (almost every weight pruned) and layers without a kernel (pooling, reshapes) are returned
    as they are, as tfmot does.
    """
    from edge_prune.training._tf import tf

    if not any("kernel" in w.name for w in layer.weights):
        return layer
    for clusters in range(parameters["number_of_clusters"], 1, -1):
        try:
            wrapped = cluster_weights(layer, **{**parameters, "number_of_clusters": clusters})
            wrapped.build(layer.input_shape)  # centroids are placed here
        except (tf.errors.InvalidArgumentError, ValueError):
            # tfmot refuses 2 clusters with sparsity preserved ("must be greater than 2")
            continue
        return wrapped
    return layer


def strip_clustering(model):
    """Remove the clustering wrappers; the kernels keep their clustered values."""
    from edge_prune.training._tf import tfmot

    return tfmot.clustering.keras.strip_clustering(model)


def _check_cluster_count(number_of_clusters: int) -> None:
    if (
        not isinstance(number_of_clusters, int)
        or isinstance(number_of_clusters, bool)
        or number_of_clusters < 2
    ):
        raise ConfigError(
            f"number_of_clusters: got {number_of_clusters!r}, expected an integer >= 2 "
            "(16 or fewer for 4-bit LUT compression)"
        )
