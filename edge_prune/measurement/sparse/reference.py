"""numpy reference of the sparse kernels: what TFLM's reference integer kernels compute.

Requantization follows TFLM at commit 90b983c2: ``QuantizeMultiplier`` (quantization_util.cc),
the double-rounding ``MultiplyByQuantizedMultiplier`` (internal/common.cc),
``CalculateActivationRangeQuantized`` (kernels/kernel_util.cc) and the multipliers of
``fully_connected_common.cc`` (per-tensor FC: float product of the scales) and
``PopulateConvolutionQuantizationParams`` (per-channel FC and CONV_2D: double product).
Convolution geometry follows ``reference/integer_ops/conv.h`` and ``kernels/padding.h``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_prune.measurement.sparse.format import (
    OP_FC,
    PADDING_SAME,
    Options,
    SparseFilter,
)


@dataclass(frozen=True)
class Quant:
    """Quantization of one layer's tensors (the filter's scales: one, or one per channel)."""

    input_scale: float
    input_zero_point: int
    filter_scales: tuple[float, ...]
    output_scale: float
    output_zero_point: int


def quantize_multiplier(real: float) -> tuple[int, int]:
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = int(math.floor(abs(q) * 2.0**31 + 0.5)) * (1 if q >= 0 else -1)
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def multipliers(op: int, quant: Quant, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) exactly as TFLM's Prepare computes them."""
    f32 = np.float32
    scales = quant.filter_scales
    if op == OP_FC and len(scales) == 1:
        product = float(f32(quant.input_scale) * f32(scales[0]))
        reals = [product / float(f32(quant.output_scale))] * channels
    else:
        per = scales if len(scales) > 1 else scales * channels
        reals = [
            float(f32(quant.input_scale)) * float(f32(s)) / float(f32(quant.output_scale))
            for s in per
        ]
    pairs = [quantize_multiplier(r) for r in reals]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _round_away(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value)


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized`` for an int8 output."""

    def q(f: float) -> int:
        return zero_point + int(_round_away(float(np.float32(f) / np.float32(scale))))

    lo, hi = -128, 127
    if activation == 1:
        return max(lo, q(0.0)), hi
    if activation == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if activation == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLM's double-rounding MultiplyByQuantizedMultiplier, elementwise, in int64 numpy."""
    x = np.asarray(x, np.int64)
    multiplier = np.asarray(multiplier, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    a = _wrap32(x << left)
    ab = a * multiplier
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    high = np.where((a == -(1 << 31)) & (multiplier == -(1 << 31)), (1 << 31) - 1, high)
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def _requantize(acc, options: Options, quant: Quant) -> np.ndarray:
    mult, shift = multipliers(options.op, quant, options.out_channels)
    out = multiply_by_quantized_multiplier(_wrap32(acc), mult, shift) + quant.output_zero_point
    lo, hi = activation_range(options.activation, quant.output_scale, quant.output_zero_point)
    return np.clip(out, lo, hi).astype(np.int8)


def fold_bias(bias: np.ndarray | None, dense: np.ndarray, input_zero_point: int) -> np.ndarray:
    """The bias the custom op stores: ``bias - input_zero_point * row sums`` (int32)."""
    sums = dense.reshape(dense.shape[0], -1).astype(np.int64).sum(axis=1)
    base = np.zeros(dense.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return _wrap32(base - input_zero_point * sums).astype(np.int32)


def _sparse_products(patches: np.ndarray, sparse: SparseFilter) -> np.ndarray:
    """``patches`` [n, row_len] int -> [n, out] sums over the stored entries only."""
    rows, pos = sparse.positions()
    k = sparse.block
    cols = (pos[:, None] * k + np.arange(k)).reshape(-1)
    weight = sparse.weights().astype(np.int64)
    gathered = patches[:, cols] * weight  # [n, entries * k]
    out = np.zeros((patches.shape[0], sparse.shape[0]), np.int64)
    np.add.at(out.T, np.repeat(rows, k), gathered.T)
    return out


def fully_connected(
    x: np.ndarray, sparse: SparseFilter, bias: np.ndarray, options: Options, quant: Quant
) -> np.ndarray:
    """int8 output [batches, out] of the sparse FC on int8 ``x`` ([..., in]); ``bias`` folded."""
    flat = np.asarray(x, np.int64).reshape(-1, options.in_channels)
    acc = _sparse_products(flat, sparse) + bias.astype(np.int64)
    return _requantize(acc, options, quant)


def conv_geometry(options: Options, height: int, width: int) -> tuple[int, int, int, int]:
    """(out_h, out_w, pad_h, pad_w) as TFLM's ComputePaddingHeightWidth gives them."""
    sizes = []
    for size, k, s, d in zip(
        (height, width), options.kernel, options.stride, options.dilation, strict=True
    ):
        effective = (k - 1) * d + 1
        if options.padding == PADDING_SAME:
            out = (size + s - 1) // s
        else:
            out = (size + s - effective) // s
        pad = max((out - 1) * s + effective - size, 0) // 2
        sizes.append((out, pad))
    return sizes[0][0], sizes[1][0], sizes[0][1], sizes[1][1]


def _patches(x: np.ndarray, options: Options, zero_point: int) -> tuple[np.ndarray, tuple]:
    """[batch*oh*ow, kh*kw*in] patches, padded positions filled with the input zero point."""
    batch, height, width, channels = x.shape
    oh, ow, ph, pw = conv_geometry(options, height, width)
    kh, kw = options.kernel
    (sh, sw), (dh, dw) = options.stride, options.dilation
    ys = (np.arange(oh) * sh - ph)[:, None] + np.arange(kh) * dh  # [oh, kh]
    xs = (np.arange(ow) * sw - pw)[:, None] + np.arange(kw) * dw  # [ow, kw]
    padded = np.full((batch, height + 1, width + 1, channels), zero_point, np.int64)
    padded[:, :height, :width] = x
    yi = np.where((ys >= 0) & (ys < height), ys, height)
    xi = np.where((xs >= 0) & (xs < width), xs, width)
    gathered = padded[:, yi[:, None, :, None], xi[None, :, None, :], :]  # b, oh, ow, kh, kw, c
    return gathered.reshape(batch * oh * ow, -1), (batch, oh, ow)


def conv_2d(
    x: np.ndarray, sparse: SparseFilter, bias: np.ndarray, options: Options, quant: Quant
) -> np.ndarray:
    """int8 output [batch, oh, ow, out] of the sparse CONV_2D on NHWC int8 ``x``."""
    patches, (batch, oh, ow) = _patches(np.asarray(x), options, quant.input_zero_point)
    acc = _sparse_products(patches, sparse) + bias.astype(np.int64)
    return _requantize(acc, options, quant).reshape(batch, oh, ow, options.out_channels)
