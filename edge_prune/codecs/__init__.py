"""Weight encodings that TFLM's ``TFLM_DECODE`` operator expands at run time, chosen per tensor.

- :func:`compress_for_mcu`: per constant weight tensor, the smallest of raw / LUT / pruning
  bitmask / Huffman, checked to decode to the original weights, within an optional arena limit.
- :func:`strip_for_mcu`: drop what TFLM does not read (tensor names, signature defs,
  conversion metadata).
- :func:`lut_compress`: LUT only, for clustered weights.

One module per codec (``lut``, ``pruning``, ``huffman``); the table of codecs is
``choose.CODECS``.
"""

from edge_prune.codecs.choose import McuCompressionResult, TensorEncoding, compress_for_mcu
from edge_prune.codecs.diet import strip_for_mcu
from edge_prune.codecs.lut import LutCompressionResult, lut_compress

__all__ = [
    "LutCompressionResult",
    "McuCompressionResult",
    "TensorEncoding",
    "compress_for_mcu",
    "lut_compress",
    "strip_for_mcu",
]
