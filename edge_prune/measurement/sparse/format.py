"""The sparse weight format of the ``EDGE_PRUNE_SPARSE_FC`` / ``EDGE_PRUNE_SPARSE_CONV`` kernels.

A TFLite int8 filter is ``[out, in]`` (FULLY_CONNECTED) or ``[out, kh, kw, in]`` (CONV_2D), input
channels innermost. Each output channel is one *row* of ``kh * kw * in / k`` *blocks* of ``k``
consecutive input channels (``k = 1``: unstructured; ``k = 4``: tfmot's ``block_size=(1, 4)``).
A block is stored when any of its weights is nonzero; the others are neither stored nor
multiplied. Two constant tensors hold a filter, read in place from flash:

- ``values`` (int8): the ``k`` weights of every stored block, rows one after the other;
- ``index`` (uint8): ``out`` little-endian uint16 entry counts, then one uint8 *delta* per
  stored block: the first is the block's position in its row, each next one the distance from
  the previous (>= 1). A gap longer than 255 blocks is bridged by *filler* entries (delta 255,
  ``k`` zero values), so the kernel's loop has no branch; fillers appear only after 255
  consecutive zero blocks (probability 0.95**255 ~ 2e-6 per position at 95% zeros).

Why deltas (measured on a 784x300 int8 layer in QEMU, Cortex-M4, gcc 12.2 -O2, against CMSIS-NN's
``arm_fully_connected_per_channel_s8``, 1.95 instructions per MAC): per stored weight an
unstructured kernel costs 4.5 instructions with uint8 deltas (4 deltas and 4 values per word
load) against 8-9 with a per-row bitmask (CLZ walk), hence 0.27x CMSIS-NN's instructions at 90%
zeros vs 0.54x; with blocks of 4 (SMLAD) deltas or block indices cost 2.3-2.75 instructions per
weight against 3.0-3.5 for a block bitmask (0.17x at 90% zeros). Weight bytes at 90% zeros:
0.20x the dense int8 bytes with deltas, 0.23x with a bitmask (a bitmask is smaller only below
87.5% zeros, where the unstructured kernel does not beat CMSIS-NN anyway). Deltas rather than
block indices because one uint8 delta covers rows of any length (a 3x3x128 convolution has 288
blocks per row) with the same loop (``p += delta * k``) and the same bytes.

Measured with these kernels in TFLM (bench/sparse.py, LeNet-300-100, QEMU, TFLM default build
-Os): at 90% zeros a Cortex-M4 runs 0.27x CMSIS-NN's dense instructions unstructured and 0.19x
in 1x4 blocks; the portable C path on a Cortex-M3 (no DSP extension, the M0+ class of code)
0.26x / 0.22x CMSIS-NN's C path and 0.14x / 0.12x TFLM's reference kernels. The flatbuffer is
0.23x / 0.16x the int8 one.

The input zero point is folded into the bias: ``bias[o] - input_zero_point * sum(row o)`` is what
the custom op's bias tensor holds, so the kernel adds no offset per weight (exact in int32: TFLM
computes ``sum(w * (x - zp)) + bias``). Convolution borders are handled by filling the patch's
padded positions with the input zero point, whose contribution is then zero, as TFLM's reference
kernel skips them.

INT4 weights (``EDGE_PRUNE_SPARSE_FC_INT4`` / ``EDGE_PRUNE_SPARSE_CONV_INT4``, for filters TFLite
stores as INT4): the same index, options (same version) and folded bias; ``values`` holds the
4-bit weights of the stored blocks packed two per byte, low nibble first (TFLite's INT4 packing,
TFLM's ``UnpackDenseInt4IntoInt8``), row after row, and every row starts on a byte boundary: a
row with an odd number of stored weights (unstructured, odd count) ends with a zero nibble. So
``values`` is exactly ``sum(ceil(count[r] * k / 2))`` bytes, which ``validate`` and the kernels'
``CheckIndexInt4`` require. In the model it is an int8 constant tensor of that many bytes
carrying the filter's scales. Separate ops so that a firmware whose model has no int4 layer
compiles no int4 code, and the int8 ops' measured code sizes stay as they are.
Measured (bench/sparse.py --int4, LeNet-300-100 with INT4 weights, QEMU, TFLM default build
-Os): at 90% zeros a Cortex-M4 runs 0.14x CMSIS-NN's dense INT4 instructions unstructured and
0.11x in 1x4 blocks, in a flatbuffer 0.33x / 0.18x the dense INT4 one.

In the model the custom op's ``index`` tensor holds the folded bias (one little-endian int32 per
output channel) followed by the counts and deltas above (rewrite.py), so that a sparse layer
has as many tensors as the dense one with its bias.

The custom options are a fixed 24-byte little-endian struct (``Options``) that starts with the
format version; the per-channel (or per-tensor) filter scales stay in the ``values`` tensor's
quantization, as TFLite filters carry them. ``validate`` checks every count and offset; the
kernels' Prepare repeats the same checks, so a malformed tensor fails to prepare, never reads out
of bounds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from edge_prune.errors import ModelFileError

FORMAT_VERSION = 1
CUSTOM_OPS = {"FULLY_CONNECTED": "EDGE_PRUNE_SPARSE_FC", "CONV_2D": "EDGE_PRUNE_SPARSE_CONV"}
CUSTOM_OPS_INT4 = {
    "FULLY_CONNECTED": "EDGE_PRUNE_SPARSE_FC_INT4",
    "CONV_2D": "EDGE_PRUNE_SPARSE_CONV_INT4",
}
OP_FC = 1
OP_CONV = 2
BLOCKS = (1, 4)
MAX_DELTA = 255
MAX_ROW_ENTRIES = 0xFFFF
PADDING_SAME = 1
PADDING_VALID = 2
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
FLAG_KEEP_NUM_DIMS = 1
_OPTIONS = struct.Struct("<BBBBIIBBBBBBBBi")
OPTIONS_SIZE = _OPTIONS.size  # 24


class SparseFormatError(ModelFileError):
    """A sparse tensor, its index or its custom options are malformed."""


@dataclass(frozen=True)
class Options:
    """What the kernel needs beyond its tensors (the op's custom options)."""

    op: int
    block: int
    out_channels: int
    in_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: int = 0
    activation: int = 0
    input_zero_point: int = 0
    flags: int = 0
    version: int = FORMAT_VERSION

    @property
    def row_blocks(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.in_channels // self.block

    @property
    def filter_shape(self) -> tuple[int, ...]:
        if self.op == OP_FC:
            return (self.out_channels, self.in_channels)
        return (self.out_channels, *self.kernel, self.in_channels)

    def pack(self) -> bytes:
        return _OPTIONS.pack(
            self.version,
            self.op,
            self.block,
            self.activation,
            self.out_channels,
            self.in_channels,
            *self.kernel,
            *self.stride,
            *self.dilation,
            self.padding,
            self.flags,
            self.input_zero_point,
        )

    @classmethod
    def unpack(cls, data: bytes, where: str = "custom options") -> Options:
        if len(data) != OPTIONS_SIZE:
            raise SparseFormatError(f"{where}: {len(data)} bytes, expected {OPTIONS_SIZE}")
        (version, op, block, act, out, inp, kh, kw, sh, sw, dh, dw, pad, flags, zp) = (
            _OPTIONS.unpack(data)
        )
        options = cls(
            op, block, out, inp, (kh, kw), (sh, sw), (dh, dw), pad, act, zp, flags, version
        )
        options.check(where)
        return options

    def check(self, where: str = "custom options") -> None:
        """Refuse values the kernels do not implement (same checks as their Prepare)."""
        problems = []
        if self.version != FORMAT_VERSION:
            problems.append(f"format version {self.version}, expected {FORMAT_VERSION}")
        if self.op not in (OP_FC, OP_CONV):
            problems.append(f"op {self.op}, expected {OP_FC} (FC) or {OP_CONV} (CONV)")
        if self.block not in BLOCKS:
            problems.append(f"block {self.block}, expected one of {BLOCKS}")
        elif self.in_channels % self.block:
            problems.append(f"{self.in_channels} input channels are not a multiple of the block")
        if self.out_channels < 1 or self.in_channels < 1:
            problems.append("out and in channels must be >= 1")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation}, expected one of {sorted(ACTIVATIONS)}")
        if not -128 <= self.input_zero_point <= 127:
            problems.append(f"input zero point {self.input_zero_point} is not int8")
        if self.op == OP_FC:
            problems += _fc_problems(self)
        elif self.op == OP_CONV:
            problems += _conv_problems(self)
        if problems:
            raise SparseFormatError(f"{where}: {'; '.join(problems)}")


def _fc_problems(o: Options) -> list[str]:
    flat = (o.kernel, o.stride, o.dilation, o.padding)
    if flat != ((1, 1), (1, 1), (1, 1), 0):
        return ["a FULLY_CONNECTED has kernel, stride, dilation 1x1 and no padding"]
    if o.flags & ~FLAG_KEEP_NUM_DIMS:
        return [f"unknown flags {o.flags:#x}"]
    return []


def _conv_problems(o: Options) -> list[str]:
    problems = []
    if min(*o.kernel, *o.stride, *o.dilation) < 1:
        problems.append("kernel, stride and dilation must be >= 1")
    if o.padding not in (PADDING_SAME, PADDING_VALID):
        problems.append(f"padding {o.padding}, expected {PADDING_SAME} (SAME) or 2 (VALID)")
    if o.flags:
        problems.append(f"unknown flags {o.flags:#x}")
    return problems


@dataclass(frozen=True)
class SparseFilter:
    """One encoded filter: ``values`` (int8; with ``int4``, the packed nibbles as int8 bytes)
    and ``index`` (uint8) as stored in the model."""

    shape: tuple[int, ...]
    block: int
    values: np.ndarray
    index: np.ndarray
    int4: bool = False

    @property
    def entries(self) -> int:
        return int(self.counts().sum())

    def weights(self) -> np.ndarray:
        """The stored blocks' weights as int8, entry after entry (int4 unpacked, padding
        dropped)."""
        if not self.int4:
            return self.values
        raw = self.values.view(np.uint8)
        rows, start = [], 0
        for count in self.counts().tolist():
            n = count * self.block
            size = (n + 1) // 2
            rows.append(unpack_int4(raw[start : start + size], n))
            start += size
        return np.concatenate(rows) if rows else np.zeros(0, np.int8)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.index.nbytes)

    def counts(self) -> np.ndarray:
        rows = self.shape[0]
        return self.index[: 2 * rows].view("<u2").astype(np.int64)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, block position) of every stored entry, fillers included."""
        counts = self.counts()
        deltas = self.index[2 * len(counts) :].astype(np.int64)
        rows = np.repeat(np.arange(len(counts)), counts)
        starts = np.cumsum(counts) - counts
        cum = np.cumsum(deltas)
        base = np.concatenate(([0], cum))[starts]
        return rows, cum - np.repeat(base, counts)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """``count`` signed 4-bit values of uint8 ``packed`` (low nibble first) as int8."""
    nibbles = np.empty(2 * len(packed), np.int16)
    nibbles[0::2] = packed & 0x0F
    nibbles[1::2] = packed >> 4
    return np.where(nibbles > 7, nibbles - 16, nibbles)[:count].astype(np.int8)


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Values in [-8, 7] packed two per byte, low nibble first (a zero nibble pads an odd
    count), as uint8."""
    flat = np.asarray(values, np.int16).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, 0)
    nibbles = (flat & 0x0F).astype(np.uint8)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def int4_values_bytes(counts: np.ndarray, block: int) -> int:
    """Bytes of an int4 filter's ``values``: each row's nibbles rounded up to a byte."""
    return int(((np.asarray(counts, np.int64) * block + 1) // 2).sum())


def _as_rows(weights: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    weights = np.asarray(weights)
    if weights.dtype != np.int8:
        raise ValueError(f"weights must be int8, got {weights.dtype}")
    if weights.ndim not in (2, 4):
        raise ValueError(f"weights must be [out, in] or [out, kh, kw, in], got {weights.shape}")
    return weights.reshape(weights.shape[0], -1), tuple(weights.shape)


def encode(weights: np.ndarray, block: int, int4: bool = False) -> SparseFilter:
    """Encode an int8 filter (input channels innermost) in blocks of ``block`` input channels;
    with ``int4`` (weights in [-8, 7]) the values are packed two per byte, rows byte-aligned."""
    rows, shape = _as_rows(weights)
    if block not in BLOCKS or shape[-1] % block:
        raise ValueError(f"block {block} must be one of {BLOCKS} and divide {shape[-1]} channels")
    if int4 and rows.size and (rows.min() < -8 or rows.max() > 7):
        raise ValueError("int4 weights must lie in [-8, 7]")
    blocks = rows.reshape(rows.shape[0], -1, block)
    kept = np.any(blocks != 0, axis=2)
    counts, deltas, values = [], [], []
    for r in range(rows.shape[0]):
        row_deltas, row_values = _encode_row(np.flatnonzero(kept[r]), blocks[r], block)
        if len(row_deltas) > MAX_ROW_ENTRIES:
            raise ValueError(f"row {r} has {len(row_deltas)} entries, at most {MAX_ROW_ENTRIES}")
        counts.append(len(row_deltas))
        deltas += row_deltas
        if int4:
            row = np.concatenate(row_values) if row_values else np.zeros(0, np.int8)
            values.append(pack_int4(row).view(np.int8))
        else:
            values += row_values
    index = np.concatenate([np.asarray(counts, "<u2").view(np.uint8), np.asarray(deltas, np.uint8)])
    flat = np.concatenate(values) if values else np.zeros(0, np.int8)
    return SparseFilter(shape, block, flat.astype(np.int8), index.astype(np.uint8), int4)


def _encode_row(positions: np.ndarray, blocks: np.ndarray, block: int):
    deltas, values, previous = [], [], 0
    zero = np.zeros(block, np.int8)
    for pos in positions.tolist():
        while pos - previous > MAX_DELTA:
            previous += MAX_DELTA
            deltas.append(MAX_DELTA)
            values.append(zero)
        deltas.append(pos - previous)
        values.append(blocks[pos])
        previous = pos
    return deltas, values


def decode(sparse: SparseFilter) -> np.ndarray:
    """The dense int8 filter a (valid) sparse filter stands for."""
    out = sparse.shape[0]
    row_len = int(np.prod(sparse.shape[1:]))
    dense = np.zeros((out, row_len // sparse.block, sparse.block), np.int8)
    rows, pos = sparse.positions()
    dense[rows, pos] = sparse.weights().reshape(-1, sparse.block)
    return dense.reshape(sparse.shape)


def validate(
    options: Options, values_len: int, index: bytes | np.ndarray, where: str, int4: bool = False
) -> None:
    """Check every count and delta of ``index`` against the options and the values' length
    (bytes of packed nibbles, each row byte-aligned, with ``int4``).

    Raises ``SparseFormatError`` (exit 2) naming ``where``; the kernels' Prepare makes the same
    checks with TF_LITE_ENSURE.
    """
    options.check(where)
    index = np.frombuffer(bytes(index), np.uint8)
    rows = options.out_channels
    if len(index) < 2 * rows:
        raise SparseFormatError(f"{where}: index of {len(index)} B is shorter than {rows} counts")
    counts = index[: 2 * rows].view("<u2").astype(np.int64)
    entries = int(counts.sum())
    if len(index) != 2 * rows + entries:
        raise SparseFormatError(
            f"{where}: index of {len(index)} B, expected {2 * rows} B of counts + {entries} deltas"
        )
    if int4:
        expected = int4_values_bytes(counts, options.block)
        if values_len != expected:
            raise SparseFormatError(
                f"{where}: {values_len} B of int4 values, expected {expected} B (each row's "
                f"{options.block}-weight entries packed two per byte, rows byte-aligned)"
            )
    elif values_len != entries * options.block:
        raise SparseFormatError(
            f"{where}: {values_len} values, expected {entries} entries x block {options.block}"
        )
    _check_rows(counts, index[2 * rows :].astype(np.int64), options.row_blocks, where)


def _check_rows(counts: np.ndarray, deltas: np.ndarray, row_blocks: int, where: str) -> None:
    starts = np.cumsum(counts) - counts
    later = np.ones(len(deltas), bool)
    later[starts[counts > 0]] = False
    if np.any(deltas[later] == 0):
        raise SparseFormatError(f"{where}: a delta after a row's first entry is 0")
    cum = np.concatenate(([0], np.cumsum(deltas)))
    last = cum[starts + counts] - cum[starts]
    bad = np.flatnonzero((counts > 0) & (last >= row_blocks))
    if len(bad):
        r = int(bad[0])
        raise SparseFormatError(
            f"{where}: row {r} reaches block {int(last[r])}, beyond its {row_blocks} blocks"
        )
