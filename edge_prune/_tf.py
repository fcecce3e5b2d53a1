"""The one place edge-prune imports TensorFlow, tf_keras and tfmot.

tfmot 0.8 works only with Keras 2 (``tf_keras``). TensorFlow decides which Keras ``tf.keras``
is when it is first imported, from ``TF_USE_LEGACY_KERAS``; tfmot reads the same variable. So
this module sets it before the first import and every other module gets TensorFlow from here:
``from edge_prune._tf import tf, keras, tfmot``.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

# tfmot internals for per-layer wrapping and mask access, which its public names do not expose.
from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    prune_registry,
    pruning_wrapper,
)

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "prune_registry", "pruning_wrapper", "tf", "tfmot"]
