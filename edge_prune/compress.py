"""Temporary re-export of the names that moved to :mod:`edge_prune.cluster` and
:mod:`edge_prune.codecs`; new code imports from those modules."""

from __future__ import annotations

from edge_prune.cluster import cluster, strip_clustering
from edge_prune.codecs.lut import (
    DEFAULT_MIN_TENSOR_BYTES,
    LUT_BITWIDTHS,
    LutCompressionResult,
    TensorDecision,
    lut_compress,
)

__all__ = [
    "DEFAULT_MIN_TENSOR_BYTES",
    "LUT_BITWIDTHS",
    "LutCompressionResult",
    "TensorDecision",
    "cluster",
    "lut_compress",
    "strip_clustering",
]
