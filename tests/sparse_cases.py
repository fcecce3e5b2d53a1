"""Seeded random cases for the sparse kernels' exactness test (tests/native/sparse_kernel_test.cc).

Each case: an int8 FULLY_CONNECTED or CONV_2D (pointwise 1x1, KxK, or Conv1D as the converter
emits it: height 1) with random shapes, sparsity 0-0.99 (and 1.0), blocks of 1 or 4 input
channels, per-channel or per-tensor scales (multipliers below and above 1), zero points,
activations, strides, paddings and dilations; the dense weights for TFLM's reference kernels, the
encoded ones for the sparse kernel, and the numpy reference's output. With ``int4`` the weights
lie in [-8, 7], the dense filter is written packed as TFLite stores an INT4 filter (the driver
unpacks it with TFLM's ``UnpackDenseInt4IntoInt8``, as TFLM's kernels do) and the sparse values
packed as the int4 ops store them; FULLY_CONNECTED is per tensor, as TFLM's reference kernel
computes an INT4 filter (``reference_integer_ops::FullyConnected``).
"""

from __future__ import annotations

import struct

import numpy as np

from edge_prune.measurement.int4 import pack as pack_int4
from edge_prune.measurement.sparse import format as fmt
from edge_prune.measurement.sparse import reference as ref

MAGIC = 0x4B535045  # "EPSK"


def _pruned(rng, shape, sparsity, block, int4=False):
    low, high = (-8, 8) if int4 else (-127, 128)
    w = rng.integers(low, high, size=shape).astype(np.int8)
    blocks = w.reshape(shape[0], -1, block)
    blocks[rng.random(blocks.shape[:2]) < sparsity] = 0
    if blocks.shape[1] > 300 and rng.random() < 0.5:  # gaps > 255 blocks: filler entries
        start = int(rng.integers(0, blocks.shape[1] - 290))
        blocks[:, start : start + 290] = 0
    return blocks.reshape(shape)


def _sparsity(rng) -> float:
    pick = rng.random()
    if pick < 0.05:
        return 0.0
    if pick < 0.08:
        return 1.0
    return float(rng.uniform(0.0, 0.99))


def _quant(rng, out: int, per_channel: bool) -> ref.Quant:
    n = out if per_channel else 1
    output_scale = float(rng.choice([rng.uniform(0.01, 0.5), rng.uniform(1e-4, 2e-3)]))
    return ref.Quant(
        float(np.float32(rng.uniform(0.002, 0.1))),
        int(rng.integers(-128, 128)),
        tuple(float(np.float32(s)) for s in rng.uniform(1e-4, 0.05, n)),
        float(np.float32(output_scale)),
        int(rng.integers(-128, 128)),
    )


def _fc_case(rng, block):
    out = int(rng.integers(1, 40))
    inp = block * int(rng.integers(1, 64) if rng.random() < 0.85 else rng.integers(300, 700))
    options = fmt.Options(fmt.OP_FC, block, out, inp, activation=int(rng.integers(0, 4)))
    return options, (int(rng.integers(1, 4)), 1, 1), (out, inp)


def _conv_case(rng, block):
    kind = rng.integers(0, 3)  # 0 pointwise, 1 KxK, 2 Conv1D (height 1)
    out = int(rng.integers(1, 17))
    cin = block * int(rng.integers(1, 9) if rng.random() < 0.9 else rng.integers(20, 40))
    if kind == 0:
        kernel, height, width = (1, 1), int(rng.integers(1, 8)), int(rng.integers(1, 8))
    elif kind == 1:
        kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        height, width = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    else:
        kernel, height, width = (1, int(rng.integers(2, 8))), 1, int(rng.integers(1, 20))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = [fmt.PADDING_SAME, fmt.PADDING_VALID][int(rng.integers(0, 2))]
    for axis, size in ((0, height), (1, width)):
        if padding == fmt.PADDING_VALID and (kernel[axis] - 1) * dilation[axis] + 1 > size:
            padding = fmt.PADDING_SAME
    options = fmt.Options(
        fmt.OP_CONV, block, out, cin, kernel, stride, dilation, padding, int(rng.integers(0, 4))
    )
    return options, (int(rng.integers(1, 3)), height, width), (out, *kernel, cin)


def make_case(rng, int4: bool = False) -> dict:
    block = int(rng.choice([1, 4]))
    make = _fc_case if rng.random() < 0.5 else _conv_case
    options, (batches, height, width), shape = make(rng, block)
    if int4:  # FC per tensor (as TFLM computes INT4); CONV either way
        per_channel = options.op == fmt.OP_CONV and rng.random() < 0.7
    else:
        per_channel = options.op == fmt.OP_CONV or rng.random() < 0.5
    quant = _quant(rng, options.out_channels, per_channel)
    options = fmt.Options(**{**options.__dict__, "input_zero_point": quant.input_zero_point})
    dense = _pruned(rng, shape, _sparsity(rng), block, int4)
    bias = rng.integers(-20000, 20000, options.out_channels).astype(np.int32)
    sparse = fmt.encode(dense, block, int4=int4)
    folded = ref.fold_bias(bias, dense, quant.input_zero_point)
    if options.op == fmt.OP_FC:
        x = rng.integers(-128, 128, (batches, options.in_channels)).astype(np.int8)
        expected = ref.fully_connected(x, sparse, folded, options, quant)
    else:
        x = rng.integers(-128, 128, (batches, height, width, options.in_channels)).astype(np.int8)
        expected = ref.conv_2d(x, sparse, folded, options, quant)
    act = ref.activation_range(options.activation, quant.output_scale, quant.output_zero_point)
    return {
        "options": options,
        "int4": int4,
        "batches": batches,
        "height": height,
        "width": width,
        "quant": quant,
        "act": act,
        "dense": dense,
        "bias": bias,
        "folded": folded,
        "sparse": sparse,
        "input": x,
        "expected": expected,
    }


def _array(values: np.ndarray, dtype: str) -> bytes:
    flat = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
    return struct.pack("<I", flat.size) + flat.tobytes()


def serialize(case: dict) -> bytes:
    q: ref.Quant = case["quant"]
    dense = case["dense"]
    if case["int4"]:  # as TFLite stores an INT4 filter: packed, low nibble first
        dense = np.frombuffer(pack_int4(dense), np.int8)
    head = struct.pack(
        "<iiiififiii",
        int(case["int4"]),
        case["batches"],
        case["height"],
        case["width"],
        q.input_scale,
        q.input_zero_point,
        q.output_scale,
        q.output_zero_point,
        *case["act"],
    )
    return b"".join(
        [
            _array(np.frombuffer(case["options"].pack(), np.uint8), "<u1"),
            head,
            _array(np.asarray(q.filter_scales), "<f4"),
            _array(dense, "i1"),
            _array(case["bias"], "<i4"),
            _array(case["folded"], "<i4"),
            _array(case["sparse"].values, "i1"),
            _array(case["sparse"].index, "<u1"),
            _array(case["input"], "i1"),
            _array(case["expected"], "i1"),
        ]
    )


def write_cases(path, count: int, seed: int, int4: bool = False) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<II", MAGIC, count))
        for _ in range(count):
            f.write(serialize(make_case(rng, int4)))
