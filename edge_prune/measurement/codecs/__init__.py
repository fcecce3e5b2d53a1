"""Weight encodings that TFLM's ``TFLM_DECODE`` operator expands at run time, chosen per tensor.

- :func:`compress_for_mcu`: per constant weight tensor, the smallest of raw and the encodings
  of the selected codecs, checked to decode to the original weights, within an optional arena
  limit; :func:`lut_compress` is the same with the LUT codec alone (fixed or chosen widths).
- :func:`strip_for_mcu`: drop what TFLM does not read (tensor names, signature defs,
  conversion metadata).

A codec is one module (``lut``, ``pruning``, ``huffman``) with a class following
:class:`Codec` (``protocol``), listed once in ``registry`` (:data:`CODECS`,
:data:`DEFAULT_CODECS`, :func:`register`).
"""

from edge_prune.measurement.codecs.diet import strip_for_mcu
from edge_prune.measurement.codecs.per_tensor import (
    McuCompressionResult,
    TensorEncoding,
    compress_for_mcu,
    lut_compress,
)
from edge_prune.measurement.codecs.protocol import Codec
from edge_prune.measurement.codecs.registry import CODECS, DEFAULT_CODECS, register

__all__ = [
    "CODECS",
    "DEFAULT_CODECS",
    "Codec",
    "McuCompressionResult",
    "TensorEncoding",
    "compress_for_mcu",
    "lut_compress",
    "register",
    "strip_for_mcu",
]
