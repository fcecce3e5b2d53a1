"""What a weight encoding must provide to be chosen per tensor and decoded by TFLM's DECODE.

A codec is one object (see :class:`Codec`) registered in
:mod:`edge_prune.measurement.codecs.registry`;
:func:`~edge_prune.measurement.codecs.per_tensor.compress_for_mcu` asks every selected codec for
its encodings of each constant tensor, keeps the smallest, builds the model with TFLM's
``compress()`` and decodes every DECODE output with the codec's Python decoder before returning
anything.
:mod:`edge_prune.measurement.codecs.verify` decodes the DECODE operators of a model from elsewhere
the same way. No TensorFlow here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from edge_prune.errors import ConfigError
from edge_prune.measurement.codecs._tflm import DECODE_OP, BadLayout, Unsuitable

if TYPE_CHECKING:
    import numpy as np

    from edge_prune.measurement.targets import Target

__all__ = ["BadLayout", "Codec", "Unsuitable", "check_codec"]

# TFLM names the decoder of each format in kernels/decode_state_<source>.cc; a Cortex-M link
# keeps it as the object ``decode_state_<source>.o`` (edge_prune/data/tflm_runtime/*.json).
DECODE_OP_KEY = f"CUSTOM:{DECODE_OP}"  # the DECODE kernel's key in the runtime tables


class Codec(Protocol):
    """A weight encoding that TFLM's ``TFLM_DECODE`` operator expands at run time.

    Encoding (what :func:`~edge_prune.measurement.codecs.per_tensor.compress_for_mcu` calls):

    - ``name``: the registry key; it names the codec in reports (``TensorEncoding.codec``), in
      ``McuCompressionResult.decoded_elements`` and in the instruction cost keys
      (``DECODE:<name>`` in ``edge_prune/data/tflm_instructions.json``).
    - ``decode_type``: byte 0 of the 16-byte DECODE common metadata that starts the ancillary
      tensor (TFLM: 0 LUT, 1 Huffman, 2 pruning, 128-255 application decoders), an int; one
      codec per value. It says which codec decodes a DECODE output.
    - ``method_type``: the ``tflite_micro...compression.spec`` class of its methods; TFLM's
      ``compress()`` dispatches a method to the codec registered for its type.
    - ``methods(tensor)``: the encodings worth trying for a ``model_editor.Tensor`` (spec method
      objects, in tie-break order). Raises :class:`Unsuitable` when the codec cannot take the
      tensor (type, too many symbols ...): the reason is recorded and the tensor may go to
      another codec. Raises :class:`~edge_prune.errors.ConversionError` only when an option the
      caller set forbids leaving the tensor raw (LUT's ``strict``): the driver names the tensor
      and stops, no model is written.
    - ``describe(method)``: one line for reports ("4-bit indices, per-channel tables").
    - ``facts(method)``: the method's parameters as report fields (``{}`` when none).
    - ``compress(tensor, method)``: TFLM's ``CompressionResult`` (encoded bytes, ancillary
      bytes with the DECODE common metadata); raises TFLM's ``CompressionError`` when it cannot.
      Its size, encoded + ancillary, is what the choice compares.
    - ``decoded_bytes(tensor)``: the bytes DECODE writes into the arena for this tensor (the
      decoded copy lives there until its consumer has run).

    Decoding (Python mirrors of the TFLM decoder, to check what was built):

    - ``decode(encoded, ancillary, output)``: the tensor's values from a layout this codec
      wrote (``output``: the DECODE output ``model_editor.Tensor``).
    - ``decode_checked(encoded, ancillary, output)``: the same for a layout from elsewhere,
      checked as TFLM's decoder reads it; :class:`BadLayout` for one it cannot decode.

    Measured costs (read from the tables shipped with edge-prune; ``None`` where a table has no
    figure, never a guess):

    - ``decoder_source``: the decoder's TFLM source, ``kernels/decode_state_<source>.cc``.
    - ``code_bytes(target)``: flash of the decoder's own object in the DECODE kernel of the
      target's TFLM build, from the runtime table (``edge_prune/data/tflm_runtime``); the
      DECODE kernel's shared part (``decode.o``, ``decode_state.o``) is not in it. None when
      no table covers the build or the table did not link DECODE.
    - ``instructions_per_element(target)``: instructions per decoded element on the target's
      TFLM build, calibrated on QEMU runs (``edge_prune/data/tflm_instructions.json``, key
      ``DECODE:<name>``); the fixed cost per call is not in it. None when no calibration
      covers the build or this decoder.

    A class that subclasses :class:`Codec` gets ``facts``, ``decoded_bytes``, ``code_bytes``
    and ``instructions_per_element`` as defined here; everything else it must define.
    """

    name: str
    decode_type: int
    decoder_source: str

    @property
    def method_type(self) -> type: ...

    def methods(self, tensor) -> list: ...

    def describe(self, method) -> str: ...

    def compress(self, tensor, method): ...

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray: ...

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray: ...

    def facts(self, method) -> dict[str, object]:
        return {}

    def decoded_bytes(self, tensor) -> int:
        """The tensor's own type and shape: its constant data in the uncompressed model."""
        return len(tensor.buffer.data)

    def code_bytes(self, target: Target) -> int | None:
        return decoder_code_bytes(target, self.decoder_source)

    def instructions_per_element(self, target: Target) -> float | None:
        from edge_prune.measurement import instructions

        costs = instructions.cost_model(target)
        if costs is None:
            return None
        return costs.per_unit.get(instructions.decoder_cost_key(self.name))


# Every member a codec must have, whether or not it subclasses Codec.
REQUIRED_MEMBERS = (
    "name",
    "decode_type",
    "decoder_source",
    "method_type",
    "methods",
    "describe",
    "facts",
    "compress",
    "decoded_bytes",
    "decode",
    "decode_checked",
    "code_bytes",
    "instructions_per_element",
)
_DATA_MEMBERS = ("name", "decode_type", "decoder_source", "method_type")
_DEFAULTS_IN_CODEC = ("facts", "decoded_bytes", "code_bytes", "instructions_per_element")


def check_codec(codec) -> None:
    """Raise :class:`~edge_prune.errors.ConfigError` unless ``codec`` has every member of
    :class:`Codec`, with a non-empty ``name`` and a ``decode_type`` in 0-255."""
    label = repr(getattr(codec, "name", None) or type(codec).__name__)
    missing = [m for m in REQUIRED_MEMBERS if not _has(codec, m)]
    if missing:
        raise ConfigError(
            f"codec {label} cannot be registered: it lacks {', '.join(missing)} "
            "(see edge_prune.measurement.codecs.protocol.Codec)"
        )
    not_callable = [
        m for m in REQUIRED_MEMBERS if m not in _DATA_MEMBERS and not callable(getattr(codec, m))
    ]
    if not_callable:
        raise ConfigError(
            f"codec {label} cannot be registered: {', '.join(not_callable)} must be methods"
        )
    if not isinstance(codec.name, str) or not codec.name:
        raise ConfigError(f"codec {label} cannot be registered: name must be a non-empty str")
    code = codec.decode_type
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise ConfigError(
            f"codec {label} cannot be registered: decode_type {code!r} is not an int in 0-255 "
            "(byte 0 of the DECODE common metadata)"
        )


def _has(codec, member: str) -> bool:
    """Whether ``codec`` defines ``member`` (the stubs of :class:`Codec` do not count), without
    evaluating a property (``method_type`` imports TFLM)."""
    owners = [
        cls
        for cls in type(codec).__mro__
        if cls is not object and (cls is not Codec or member in _DEFAULTS_IN_CODEC)
    ]
    return member in getattr(codec, "__dict__", {}) or any(member in vars(c) for c in owners)


def decoder_code_bytes(target: Target, source: str) -> int | None:
    """Flash of ``decode_state_<source>.o`` among the sections the target build's DECODE kernel
    keeps beyond the framework, from the shipped runtime table; None when there is none."""
    from edge_prune.measurement import runtime_tables

    if target.tflm_arch is None:
        return None
    table = runtime_tables.load_table(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    if table is None or DECODE_OP_KEY not in table.ops:
        return None
    suffix = f"/decode_state_{source}.o)"
    sections = [
        i
        for i in table.ops[DECODE_OP_KEY] - table.framework
        if table.objects[table.section_object[i]].endswith(suffix)
    ]
    return sum(table.section_bytes[i] for i in sections) if sections else None
