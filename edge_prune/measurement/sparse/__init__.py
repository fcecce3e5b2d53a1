"""Sparse int8 FULLY_CONNECTED / CONV_2D: the weight format, its numpy reference and the
TFLM custom-op kernels (C++ sources shipped as package data under ``kernels/``)."""

from edge_prune.measurement.sparse.format import (
    FORMAT_VERSION,
    Options,
    SparseFilter,
    SparseFormatError,
    decode,
    encode,
    validate,
)
from edge_prune.measurement.sparse.reference import conv_2d, fully_connected

__all__ = [
    "FORMAT_VERSION",
    "Options",
    "SparseFilter",
    "SparseFormatError",
    "conv_2d",
    "decode",
    "encode",
    "fully_connected",
    "validate",
]
