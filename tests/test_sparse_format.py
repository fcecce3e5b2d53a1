"""The sparse weight format and its numpy reference (no toolchain, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.errors import EdgePruneError
from edge_prune.measurement.sparse import format as fmt
from edge_prune.measurement.sparse import reference as ref
from edge_prune.measurement.sparse.format import Options, SparseFormatError


def _pruned(rng, shape, sparsity, block):
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    rows = w.reshape(shape[0], -1, block)
    drop = rng.random(rows.shape[:2]) < sparsity
    rows[drop] = 0
    return rows.reshape(shape)


@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_round_trip(block, sparsity):
    rng = np.random.default_rng(int(sparsity * 100) + block)
    for shape in [(7, 16), (3, 3, 3, 8), (5, 1, 5, 4)]:
        w = _pruned(rng, shape, sparsity, block)
        sparse = fmt.encode(w, block)
        np.testing.assert_array_equal(fmt.decode(sparse), w)
        options = _options(shape, block)
        fmt.validate(options, len(sparse.values), sparse.index, "t")
        stored = np.count_nonzero(np.any(w.reshape(shape[0], -1, block) != 0, axis=2))
        assert sparse.entries == stored


def test_long_gaps_use_fillers_and_stay_exact():
    w = np.zeros((2, 1200), np.int8)
    w[0, 1100] = 5
    w[1, 0] = -3
    w[1, 1199] = 7
    sparse = fmt.encode(w, 1)
    np.testing.assert_array_equal(fmt.decode(sparse), w)
    assert sparse.counts().tolist() == [1 + 1100 // 255, 2 + 1199 // 255]  # fillers at 255, 510...
    fmt.validate(_options(w.shape, 1), len(sparse.values), sparse.index, "t")


def test_bytes_at_ninety_percent():
    rng = np.random.default_rng(0)
    w = _pruned(rng, (300, 784), 0.9, 1)
    sparse = fmt.encode(w, 1)
    assert sparse.nbytes < 0.21 * w.size
    w4 = _pruned(rng, (300, 784), 0.9, 4)
    assert fmt.encode(w4, 4).nbytes < 0.13 * w4.size


def _options(shape, block, **kw):
    if len(shape) == 2:
        return Options(fmt.OP_FC, block, shape[0], shape[1], **kw)
    defaults = {"padding": fmt.PADDING_SAME} | kw
    return Options(fmt.OP_CONV, block, shape[0], shape[3], kernel=shape[1:3], **defaults)


def _mutations(sparse: fmt.SparseFilter):
    index = sparse.index
    rows = sparse.shape[0]
    yield "count too large", _set(index, 0, index[0] + 1), len(sparse.values)
    yield "value missing", index, len(sparse.values) - sparse.block
    yield "index truncated", index[:-1], len(sparse.values)
    yield "index too short for counts", index[: 2 * rows - 1], 0
    last = len(index) - 1
    yield "delta past the row", _set(index, last, 255), len(sparse.values)
    yield "repeated position", _set(index, 2 * rows + 1, 0), len(sparse.values)


def _set(index, i, value):
    out = index.copy()
    out[i] = int(value) % 256
    return out


def test_validation_refuses_mutations():
    w = np.zeros((3, 40), np.int8)
    w[:, ::7] = 3
    sparse = fmt.encode(w, 1)
    options = _options(w.shape, 1)
    fmt.validate(options, len(sparse.values), sparse.index, "t")
    for name, index, n_values in _mutations(sparse):
        with pytest.raises(SparseFormatError, match="^t: ") as err:
            fmt.validate(options, n_values, index, "t")
        assert isinstance(err.value, EdgePruneError), name


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"block": 2},
        {"block": 4, "in_channels": 6},
        {"activation": 7},
        {"input_zero_point": 200},
        {"padding": 1},
        {"stride": (2, 1)},
        {"flags": 4},
    ],
)
def test_options_refused(change):
    fields = {"op": fmt.OP_FC, "block": 1, "out_channels": 4, "in_channels": 8} | change
    with pytest.raises(SparseFormatError):
        Options.unpack(Options(**fields).pack())


def test_options_round_trip():
    o = Options(fmt.OP_CONV, 4, 16, 8, (3, 1), (2, 1), (1, 2), fmt.PADDING_VALID, 3, -5)
    packed = o.pack()
    assert len(packed) == fmt.OPTIONS_SIZE == 24
    assert Options.unpack(packed) == o


# Dense computation written the way TFLM's reference loops read (skipping padded positions).


def _dense_acc_fc(x, w, bias, zp):
    acc = (x.astype(np.int64) - zp) @ w.astype(np.int64).T
    return acc + bias


def _dense_acc_conv(x, w, bias, zp, options):
    batch, height, width, _ = x.shape
    oh, ow, ph, pw = ref.conv_geometry(options, height, width)
    (sh, sw), (dh, dw) = options.stride, options.dilation
    acc = np.zeros((batch, oh, ow, w.shape[0]), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(w.shape[1]):
                for kx in range(w.shape[2]):
                    iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                    if 0 <= iy < height and 0 <= ix < width:
                        xv = x[:, iy, ix, :].astype(np.int64) - zp
                        acc[:, oy, ox] += xv @ w[:, ky, kx, :].astype(np.int64).T
    return acc + bias


def _quant(rng, out, per_channel):
    n = out if per_channel else 1
    return ref.Quant(
        float(rng.uniform(0.005, 0.05)),
        int(rng.integers(-128, 128)),
        tuple(float(s) for s in rng.uniform(0.001, 0.02, n)),
        float(rng.uniform(0.02, 0.2)),
        int(rng.integers(-128, 128)),
    )


def _dense_out(acc, options, quant):
    mult, shift = ref.multipliers(options.op, quant, options.out_channels)
    y = ref.multiply_by_quantized_multiplier(acc, mult, shift) + quant.output_zero_point
    lo, hi = ref.activation_range(options.activation, quant.output_scale, quant.output_zero_point)
    return np.clip(y, lo, hi).astype(np.int8)


@pytest.mark.parametrize("seed", range(12))
def test_fully_connected_equals_dense(seed):
    rng = np.random.default_rng(seed)
    block = [1, 4][seed % 2]
    out, inp = int(rng.integers(1, 20)), 4 * int(rng.integers(1, 40))
    w = _pruned(rng, (out, inp), rng.uniform(0, 0.99), block)
    bias = rng.integers(-5000, 5000, out).astype(np.int32)
    quant = _quant(rng, out, per_channel=seed % 3 != 0)
    options = _options((out, inp), block, activation=int(rng.integers(0, 4)))
    options = Options(**{**options.__dict__, "input_zero_point": quant.input_zero_point})
    x = rng.integers(-128, 128, (3, inp)).astype(np.int8)
    sparse = fmt.encode(w, block)
    folded = ref.fold_bias(bias, w, quant.input_zero_point)
    got = ref.fully_connected(x, sparse, folded, options, quant)
    want = _dense_out(_dense_acc_fc(x, w, bias, quant.input_zero_point), options, quant)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(12))
def test_conv_2d_equals_dense(seed):
    rng = np.random.default_rng(100 + seed)
    block = [1, 4][seed % 2]
    kh, kw = [(1, 1), (3, 3), (1, 5), (2, 3)][seed % 4]
    out, cin = int(rng.integers(1, 9)), 4 * int(rng.integers(1, 4))
    w = _pruned(rng, (out, kh, kw, cin), rng.uniform(0, 0.99), block)
    bias = rng.integers(-5000, 5000, out).astype(np.int32)
    quant = _quant(rng, out, per_channel=True)
    options = Options(
        fmt.OP_CONV,
        block,
        out,
        cin,
        (kh, kw),
        (int(rng.integers(1, 3)), int(rng.integers(1, 3))),
        (int(rng.integers(1, 3)), 1),
        [fmt.PADDING_SAME, fmt.PADDING_VALID][seed % 3 == 0],
        int(rng.integers(0, 4)),
        quant.input_zero_point,
    )
    height, width = (1, 11) if kh == 1 and seed % 4 == 2 else (7, 6)
    x = rng.integers(-128, 128, (2, height, width, cin)).astype(np.int8)
    sparse = fmt.encode(w, block)
    folded = ref.fold_bias(bias, w, quant.input_zero_point)
    got = ref.conv_2d(x, sparse, folded, options, quant)
    acc = _dense_acc_conv(x, w, bias, quant.input_zero_point, options)
    np.testing.assert_array_equal(got, _dense_out(acc, options, quant))


def test_requantization_matches_known_values():
    # QuantizeMultiplier(0.5) = (2^30, 0); (0.75) = (0.75 * 2^31, 0); (2^-40) flushes to 0.
    assert ref.quantize_multiplier(0.5) == (1 << 30, 0)
    assert ref.quantize_multiplier(0.75) == (3 << 29, 0)
    assert ref.quantize_multiplier(2.0**-40) == (0, 0)
    # x * 0.25 as (2^30, -1): the halving step rounds half away from zero (RoundingDivideByPOT).
    m, s = ref.quantize_multiplier(0.25)
    assert (m, s) == (1 << 30, -1)
    assert ref.multiply_by_quantized_multiplier([100, 6, -6], m, s).tolist() == [25, 2, -2]
    assert ref.activation_range(1, 0.1, -10) == (-10, 127)
    assert ref.activation_range(3, 0.05, -128) == (-128, -8)


# INT4 values (EDGE_PRUNE_SPARSE_FC_INT4 / _CONV_INT4): packed two per byte, rows byte-aligned.


def _pruned_int4(rng, shape, sparsity, block):
    w = rng.integers(-8, 8, size=shape).astype(np.int8)
    rows = w.reshape(shape[0], -1, block)
    rows[rng.random(rows.shape[:2]) < sparsity] = 0
    return rows.reshape(shape)


@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_int4_round_trip_and_exact_values_size(block, sparsity):
    rng = np.random.default_rng(int(sparsity * 100) + 10 * block)
    for shape in [(7, 16), (3, 3, 3, 8), (5, 1, 5, 4)]:
        w = _pruned_int4(rng, shape, sparsity, block)
        sparse = fmt.encode(w, block, int4=True)
        np.testing.assert_array_equal(fmt.decode(sparse), w)
        counts = sparse.counts()
        assert len(sparse.values) == int(((counts * block + 1) // 2).sum())
        options = _options(shape, block)
        fmt.validate(options, len(sparse.values), sparse.index, "t", int4=True)
        for wrong in (len(sparse.values) + 1, len(sparse.values) - 1):
            if wrong >= 0:
                with pytest.raises(SparseFormatError, match="int4 values"):
                    fmt.validate(options, wrong, sparse.index, "t", int4=True)


def test_int4_rows_start_on_a_byte_and_odd_rows_end_with_a_zero_nibble():
    w = np.zeros((2, 8), np.int8)
    w[0, [1, 3, 6]] = [-8, 7, -1]  # 3 weights: 2 bytes, high nibble of the second is 0
    w[1, 2] = 5
    sparse = fmt.encode(w, 1, int4=True)
    assert sparse.values.view(np.uint8).tolist() == [0x78, 0x0F, 0x05]
    assert sparse.weights().tolist() == [-8, 7, -1, 5]


def test_int4_refuses_values_outside_four_bits():
    with pytest.raises(ValueError, match="int4"):
        fmt.encode(np.full((1, 4), 8, np.int8), 1, int4=True)


@pytest.mark.parametrize("seed", range(8))
def test_int4_fully_connected_and_conv_equal_dense(seed):
    rng = np.random.default_rng(300 + seed)
    block = [1, 4][seed % 2]
    out, inp = int(rng.integers(1, 20)), 4 * int(rng.integers(1, 40))
    w = _pruned_int4(rng, (out, inp), rng.uniform(0, 0.99), block)
    bias = rng.integers(-5000, 5000, out).astype(np.int32)
    quant = _quant(rng, out, per_channel=False)
    options = _options((out, inp), block, activation=int(rng.integers(0, 4)))
    options = Options(**{**options.__dict__, "input_zero_point": quant.input_zero_point})
    x = rng.integers(-128, 128, (3, inp)).astype(np.int8)
    folded = ref.fold_bias(bias, w, quant.input_zero_point)
    got = ref.fully_connected(x, fmt.encode(w, block, int4=True), folded, options, quant)
    want = _dense_out(_dense_acc_fc(x, w, bias, quant.input_zero_point), options, quant)
    np.testing.assert_array_equal(got, want)

    wc = _pruned_int4(rng, (out, 3, 3, 8), rng.uniform(0, 0.99), block)
    quant = _quant(rng, out, per_channel=True)
    options = Options(fmt.OP_CONV, block, out, 8, (3, 3), (1, 2), (1, 1), fmt.PADDING_SAME,
                      int(rng.integers(0, 4)), quant.input_zero_point)  # fmt: skip
    xc = rng.integers(-128, 128, (2, 6, 5, 8)).astype(np.int8)
    folded = ref.fold_bias(bias, wc, quant.input_zero_point)
    got = ref.conv_2d(xc, fmt.encode(wc, block, int4=True), folded, options, quant)
    acc = _dense_acc_conv(xc, wc, bias, quant.input_zero_point, options)
    np.testing.assert_array_equal(got, _dense_out(acc, options, quant))
