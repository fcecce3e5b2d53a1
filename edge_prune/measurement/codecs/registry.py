"""The one table of codecs: every place that names, tries or decodes a codec reads it here.

:data:`CODECS` maps a codec's ``name`` to the codec
(:class:`~edge_prune.measurement.codecs.protocol.Codec`), in tie-break order;
:data:`DEFAULT_CODECS` is the names of the built-in ones, what
:func:`~edge_prune.measurement.codecs.per_tensor.compress_for_mcu` and ``edge-prune model`` try by
default. Adding a codec: its module (a class following the protocol) and one entry in ``_BUILT_IN``.
"""

from __future__ import annotations

from edge_prune.errors import ConfigError
from edge_prune.measurement.codecs.huffman import HuffmanCodec
from edge_prune.measurement.codecs.lut import LutCodec
from edge_prune.measurement.codecs.protocol import Codec, check_codec
from edge_prune.measurement.codecs.pruning import PruningCodec

_BUILT_IN: tuple[Codec, ...] = (LutCodec(), PruningCodec(), HuffmanCodec())

CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Add ``codec`` to :data:`CODECS` after checking it has every member of the protocol and
    that its name and decode type are not taken; :class:`~edge_prune.errors.ConfigError` if
    not."""
    check_codec(codec)
    if codec.name in CODECS:
        raise ConfigError(f"codec {codec.name!r} cannot be registered: the name is taken")
    taken = by_decode_type(codec.decode_type)
    if taken is not None:
        raise ConfigError(
            f"codec {codec.name!r} cannot be registered: decode type {codec.decode_type} is "
            f"{taken.name!r}'s"
        )
    CODECS[codec.name] = codec
    return codec


def by_decode_type(decode_type: int) -> Codec | None:
    """The registered codec that writes ``decode_type`` in byte 0 of the DECODE metadata."""
    return next((c for c in CODECS.values() if c.decode_type == decode_type), None)


def select(codecs) -> dict[str, Codec]:
    """``{name: codec}`` for registered names or codec objects, in the given order (a codec
    object with options, e.g. ``LutCodec(bitwidth=4)``, stands in for its name);
    :class:`~edge_prune.errors.ConfigError` for anything else."""
    expected = f"expected a tuple of names from {', '.join(CODECS)} or codec objects"
    if isinstance(codecs, str) or not isinstance(codecs, (tuple, list)):
        raise ConfigError(f"codecs: got {codecs!r}, {expected}")
    selected: dict[str, Codec] = {}
    for item in codecs:
        if isinstance(item, str):
            if item not in CODECS:
                raise ConfigError(f"codecs: got {codecs!r}, {expected}")
            codec = CODECS[item]
        else:
            check_codec(item)
            codec = item
        if selected.get(codec.name, codec) is not codec:
            raise ConfigError(f"codecs: two codecs named {codec.name!r} in {codecs!r}")
        selected[codec.name] = codec
    return selected


for _codec in _BUILT_IN:
    register(_codec)

DEFAULT_CODECS: tuple[str, ...] = tuple(CODECS)
