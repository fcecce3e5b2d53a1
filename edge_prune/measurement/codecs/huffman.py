"""Huffman codec (DECODE type 1): variable-length codes decoded through multi-level tables.

Layout read by TFLM's decoder (``tensorflow/lite/micro/kernels/decode_state_huffman.cc`` and
``decode_state_huffman.h``; example data in ``decode_state_huffman_test.cc``):

- ancillary: the 16-byte DECODE common metadata, byte 4 (Huffman format version) = 1, byte 5 =
  ``(root table width - 1) << 4 | 1 if 32-bit table entries``; the tables follow at byte 16,
  little-endian. 16-bit entry: bit 15 symbol found, bits 14..11 count, bits 10..0 value;
  32-bit entry: bit 31, bits 30..27, bits 26..0. 16-bit entries only for int8 outputs.
- a symbol entry holds the low 8 (int8) or 16 (int16) bits of the symbol and, in count, the
  code bits this table level consumed; a code shorter than the table is repeated in every slot
  it covers, and the decoder puts back the bits it read beyond the code.
- a pointer entry holds count = sub-table width - 1 and value = the offset from the pointer
  entry to its sub-table. Tables are at most 15 bits wide (the count field is 4 bits), laid out
  depth first in code order, as in the upstream test data.
- encoded tensor: the codewords, most significant bit first, as a big-endian byte stream padded
  to whole 32-bit words (the decoder reads words and byte-swaps them); one more word when the
  decoder's last table read would run past the end. The element count comes from the output.

Codes are canonical Huffman codes, at most :data:`MAX_CODE_BITS` long; table widths are chosen
per sub-tree by a small dynamic program that minimises the number of table entries (ties go to
the wider table: fewer lookups). No TensorFlow here.
"""

from __future__ import annotations

import bisect
import functools
import heapq
from dataclasses import dataclass

import numpy as np

from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.protocol import Codec

DECODE_TYPE = 1
FORMAT_VERSION = 1
MAX_CODE_BITS = 24
MAX_TABLE_BITS = 15
_ENTRY_16 = {"found": 1 << 15, "count_shift": 11, "value_mask": 0x7FF}
_ENTRY_32 = {"found": 1 << 31, "count_shift": 27, "value_mask": 0x7FFFFFF}


# ---------------------------------------------------------------------------------- codes


def code_lengths(counts: dict[int, int], max_bits: int = MAX_CODE_BITS) -> dict[int, int]:
    """Huffman code length per symbol (deterministic ties), at most ``max_bits`` long.

    A single symbol gets a 1-bit code (the decoder needs at least one bit per element). When a
    code would be too long the counts are halved (rounding up) and the tree rebuilt.
    """
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    weights = dict(counts)
    while True:
        lengths = _huffman_lengths(weights)
        if max(lengths.values()) <= max_bits:
            return lengths
        weights = {s: (w + 1) // 2 for s, w in weights.items()}


def _huffman_lengths(weights: dict[int, int]) -> dict[int, int]:
    heap = [(w, s, (s,)) for s, w in sorted(weights.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(weights, 0)
    while len(heap) > 1:
        w1, k1, group1 = heapq.heappop(heap)
        w2, k2, group2 = heapq.heappop(heap)
        for symbol in group1 + group2:
            lengths[symbol] += 1
        heapq.heappush(heap, (w1 + w2, min(k1, k2), group1 + group2))
    return lengths


def canonical_codes(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical code per symbol as a bit string, shorter codes first, then by symbol."""
    codes: dict[int, str] = {}
    code, previous = 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = format(code, f"0{length}b")
        code, previous = code + 1, length
    return codes


# --------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Tables:
    """Decode tables as entries (ints), the root width, and whether entries are 32-bit."""

    entries: tuple[int, ...]
    root_bits: int
    wide: bool

    def to_bytes(self) -> bytes:
        dtype = "<u4" if self.wide else "<u2"
        return np.asarray(self.entries, dtype=dtype).tobytes()

    @property
    def dcm_byte5(self) -> int:
        return ((self.root_bits - 1) << 4) | int(self.wide)


def build_tables(codes: dict[int, str], *, wide: bool, root_bits: int | None = None) -> Tables:
    """Multi-level decode tables for ``codes`` (symbol -> bit string).

    ``root_bits`` fixes the root table's width (the upstream test uses 3); by default the
    width that minimises the entries is used. Raises :class:`_tflm.Unsuitable` when an offset
    or value does not fit the entry format.
    """
    layout = _entry_format(wide)
    by_code = tuple(sorted((code, symbol) for symbol, code in codes.items()))
    widths = _Widths(by_code)
    root = root_bits or widths.best("")[1]
    tables: list[tuple[str, int]] = []  # (prefix, width) in layout order

    def place(prefix: str, width: int) -> None:
        tables.append((prefix, width))
        for child in widths.children(prefix, width):
            place(child, widths.best(child)[1])

    place("", root)
    starts, position = {}, 0
    for prefix, width in tables:
        starts[prefix] = position
        position += 1 << width

    entries: list[int | None] = [None] * position
    for prefix, width in tables:
        base = starts[prefix]
        for code, symbol in widths.under(prefix):
            used = len(code) - len(prefix)
            if used <= width:  # the code ends in this table: fill every slot it covers
                first = base + (int(code[len(prefix) :], 2) << (width - used))
                entry = layout["found"] | used << layout["count_shift"] | _value(symbol, layout)
                entries[first : first + (1 << (width - used))] = [entry] * (1 << (width - used))
        for child in widths.children(prefix, width):
            index = base + int(child[len(prefix) :], 2)
            offset = starts[child] - index
            if offset > layout["value_mask"]:
                raise _tflm.Unsuitable(
                    f"Huffman sub-table offset {offset} > {layout['value_mask']}"
                )
            entries[index] = (widths.best(child)[1] - 1) << layout["count_shift"] | offset
    # Slots no code reaches (only with a single symbol) repeat the first code's entry.
    filler = next(e for e in entries if e is not None)
    return Tables(
        entries=tuple(filler if e is None else e for e in entries), root_bits=root, wide=wide
    )


def _value(symbol: int, layout: dict) -> int:
    return symbol & (0xFF if layout is _ENTRY_16 else 0xFFFF)


def _entry_format(wide: bool) -> dict:
    return _ENTRY_32 if wide else _ENTRY_16


class _Widths:
    """Best table width per code prefix: fewest entries for the sub-tree, ties to the wider."""

    def __init__(self, by_code: tuple[tuple[str, int], ...]):
        self.by_code = by_code  # sorted by code: the codes under a prefix are contiguous
        self.codes = [code for code, _ in by_code]

    def under(self, prefix: str) -> tuple[tuple[str, int], ...]:
        lo = bisect.bisect_left(self.codes, prefix)
        hi = bisect.bisect_left(self.codes, prefix + "2")  # "2" sorts after "0" and "1"
        return self.by_code[lo:hi]

    def children(self, prefix: str, width: int) -> list[str]:
        """Prefixes ``width`` bits below ``prefix`` that still have longer codes under them."""
        depth = len(prefix) + width
        return sorted({c[:depth] for c, _ in self.under(prefix) if len(c) > depth})

    @functools.cache  # noqa: B019 - one instance per table build
    def best(self, prefix: str) -> tuple[int, int]:
        longest = max(len(c) for c, _ in self.under(prefix)) - len(prefix)
        options = []
        for width in range(1, min(MAX_TABLE_BITS, longest) + 1):
            below = sum(self.best(child)[0] for child in self.children(prefix, width))
            options.append(((1 << width) + below, -width))
        entries, neg_width = min(options)
        return entries, -neg_width


# ----------------------------------------------------------------------------- streams


def pack_stream(symbols: np.ndarray, codes: dict[int, str], max_table_bits: int) -> bytes:
    """The codewords of ``symbols`` MSB first, padded to 32-bit words (plus read-ahead word)."""
    length_of = {s: len(c) for s, c in codes.items()}
    value_of = {s: int(c, 2) for s, c in codes.items()}
    flat = symbols.reshape(-1).tolist()
    lengths = np.fromiter((length_of[s] for s in flat), dtype=np.int64, count=len(flat))
    values = np.fromiter((value_of[s] for s in flat), dtype=np.uint64, count=len(flat))
    left_aligned = (values << (32 - lengths).astype(np.uint64)).astype(">u4")
    matrix = np.unpackbits(left_aligned.view(np.uint8).reshape(-1, 4), axis=1)
    bits = matrix[np.arange(32) < lengths[:, None]]
    total = bits.size
    words = -(-total // 32)
    if total + max_table_bits - 1 > words * 32:
        words += 1
    padded = np.zeros(words * 32, dtype=np.uint8)
    padded[:total] = bits
    return np.packbits(padded).tobytes()


def encode(
    values: np.ndarray, *, wide: bool | None = None, root_bits: int | None = None
) -> tuple[bytes, bytes]:
    """``(encoded stream, ancillary)`` for an int8 or int16 array.

    ``wide``: 32-bit table entries; by default 16-bit for int8 (32-bit when an offset does not
    fit 11 bits) and always 32-bit for int16.
    """
    values = np.asarray(values)
    if values.dtype not in (np.int8, np.int16):
        raise _tflm.Unsuitable(f"{values.dtype} values, the Huffman decoder takes int8 or int16")
    if values.size == 0:
        raise _tflm.Unsuitable("empty tensor")
    symbols, counts = np.unique(values, return_counts=True)
    codes = canonical_codes(
        code_lengths(dict(zip(symbols.tolist(), counts.tolist(), strict=False)))
    )
    if values.dtype == np.int16 or wide:
        tables = build_tables(codes, wide=True, root_bits=root_bits)
    else:
        try:
            tables = build_tables(codes, wide=False, root_bits=root_bits)
        except _tflm.Unsuitable:
            tables = build_tables(codes, wide=True, root_bits=root_bits)
    widest = max(_table_widths(tables))
    stream = pack_stream(values, codes, widest)
    ancillary = _tflm.dcm(DECODE_TYPE, FORMAT_VERSION, tables.dcm_byte5) + tables.to_bytes()
    return stream, ancillary


def _table_widths(tables: Tables) -> list[int]:
    layout = _entry_format(tables.wide)
    mask = (1 << 4) - 1
    widths = [tables.root_bits]
    for entry in tables.entries:
        if not entry & layout["found"]:
            widths.append(((entry >> layout["count_shift"]) & mask) + 1)
    return widths


def decode(encoded: bytes, ancillary: bytes, count: int, dtype) -> np.ndarray:
    """Python reference of TFLM's Huffman decoder: ``count`` symbols from stream and tables."""
    dtype = np.dtype(dtype)
    byte5 = ancillary[5]
    wide, root = bool(byte5 & 1), (byte5 >> 4) + 1
    layout = _entry_format(wide)
    tables = np.frombuffer(ancillary[_tflm.DCM_BYTES :], dtype="<u4" if wide else "<u2")
    tables = tables.astype(np.int64).tolist()
    bits = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8)).tolist()
    bits += [0] * (MAX_TABLE_BITS + 1)  # past the buffer: never part of a code
    out, position = [], 0
    count_mask, shift = 0xF, layout["count_shift"]
    for _ in range(count):
        width, index = root, 0
        entry = None
        while True:
            chunk = int("".join(map(str, bits[position : position + width])), 2)
            position += width
            index = chunk if entry is None else index + (entry & layout["value_mask"]) + chunk
            entry = tables[index]
            if entry & layout["found"]:
                break
            width = ((entry >> shift) & count_mask) + 1
        position -= width - ((entry >> shift) & count_mask)
        out.append(entry & layout["value_mask"])
    raw = np.asarray(out, dtype=np.int64) & (0xFF if dtype.itemsize == 1 else 0xFFFF)
    return raw.astype(np.uint8 if dtype.itemsize == 1 else np.uint16).view(dtype)


def decode_checked(encoded: bytes, ancillary: bytes, output) -> np.ndarray:
    """The tensor TFLM's Huffman decoder gives for this layout, or :class:`_tflm.BadLayout`.

    Every table lookup must stay within the tables, every symbol entry consume 1 to its table
    width bits, every read stay within the code stream (whole 32-bit words; at most one word
    beyond the last read), as in ``decode_state_huffman.cc``.
    """
    type_name = _tflm.dtype_name(output)
    _tflm.require(type_name in ("INT8", "INT16"), f"{type_name} output, the decoder takes "
                  "INT8 or INT16")  # fmt: skip
    _tflm.require(
        ancillary[4] == FORMAT_VERSION,
        f"Huffman format version {ancillary[4]}, TFLM reads {FORMAT_VERSION}",
    )
    wide, root = bool(ancillary[5] & 1), (ancillary[5] >> 4) + 1
    _tflm.require(wide or type_name == "INT8", "16-bit tables for an INT16 output")
    entry_bytes = 4 if wide else 2
    table_bytes = len(ancillary) - _tflm.DCM_BYTES
    _tflm.require(
        table_bytes % entry_bytes == 0 and table_bytes // entry_bytes >= 1 << root,
        f"{table_bytes} B of tables, a {root}-bit root table of {entry_bytes}-byte entries "
        f"needs {(1 << root) * entry_bytes} B",
    )
    _tflm.require(len(encoded) % 4 == 0, f"{len(encoded)} B of codes, not whole 32-bit words")
    tables = np.frombuffer(ancillary[_tflm.DCM_BYTES :], dtype="<u4" if wide else "<u2")
    count = int(np.prod([int(n) for n in output.shape], dtype=np.int64))
    symbols, furthest = _walk(encoded, tables.astype(np.int64).tolist(), root, wide, count)
    words = -(-furthest // 32)
    _tflm.require(
        len(encoded) <= 4 * (words + 1),
        f"{len(encoded)} B of codes, the {count} elements read {4 * words} B",
    )
    dtype = _tflm.output_dtype(output)
    raw = np.asarray(symbols, dtype=np.int64) & (0xFF if dtype.itemsize == 1 else 0xFFFF)
    values = raw.astype(np.uint8 if dtype.itemsize == 1 else np.uint16).view(dtype)
    return values.reshape(tuple(int(n) for n in output.shape))


def _walk(encoded: bytes, tables: list[int], root: int, wide: bool, count: int):
    """``(symbols, furthest bit read)``; :class:`_tflm.BadLayout` on any lookup out of range."""
    layout = _entry_format(wide)
    found, shift, value_mask = layout["found"], layout["count_shift"], layout["value_mask"]
    bits = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8)).tolist()
    out, position, furthest = [], 0, 0
    for n in range(count):
        width, index, entry = root, 0, None
        while True:
            end = position + width
            _tflm.require(end <= len(bits), f"code stream ends within element {n} of {count}")
            chunk = 0
            for bit in bits[position:end]:
                chunk = chunk << 1 | bit
            furthest, position = max(furthest, end), end
            index = chunk if entry is None else index + (entry & value_mask) + chunk
            _tflm.require(index < len(tables), f"table index {index} beyond {len(tables)} entries")
            entry = tables[index]
            if entry & found:
                break
            width = ((entry >> shift) & 0xF) + 1
        used = (entry >> shift) & 0xF
        _tflm.require(1 <= used <= width, f"symbol entry uses {used} bits of a {width}-bit table")
        position -= width - used
        out.append(entry & value_mask)
    return out, furthest


# ---------------------------------------------------------------------------------- codec


class HuffmanCodec(Codec):
    """Huffman codes + multi-level decode tables
    (:class:`~edge_prune.measurement.codecs.protocol.Codec`)."""

    name = "huffman"
    decode_type = DECODE_TYPE
    decoder_source = "huffman"

    @property
    def method_type(self):
        from tflite_micro.tensorflow.lite.micro.compression import spec

        return spec.HuffmanCompression

    def methods(self, tensor) -> list:
        from tflite_micro.tensorflow.lite.micro.compression import spec

        type_name = _tflm.dtype_name(tensor)
        if type_name not in ("INT8", "INT16"):
            raise _tflm.Unsuitable(f"{type_name} tensor, the Huffman decoder takes INT8 or INT16")
        return [spec.HuffmanCompression()]

    def describe(self, method) -> str:
        return "Huffman codes + decode tables"

    def compress(self, tensor, method):
        from tflite_micro.tensorflow.lite.micro.compression.compressor import (
            CompressionError,
            CompressionResult,
        )

        try:
            encoded, ancillary = encode(tensor.array)
        except _tflm.Unsuitable as e:
            raise CompressionError(f"huffman: tensor {tensor.name!r}: {e}") from e
        return CompressionResult(encoded_data=encoded, ancillary_data=ancillary)

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        shape = tuple(int(n) for n in output.shape)
        count = int(np.prod(shape, dtype=np.int64))
        return decode(encoded, ancillary, count, output.numpy_dtype).reshape(shape)

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_checked(encoded, ancillary, output)
