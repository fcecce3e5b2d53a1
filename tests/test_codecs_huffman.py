"""Huffman codec (DECODE type 1): the upstream test vector, round trips, outputs on TFLM.

The vector is the one in tflite-micro's
``tensorflow/lite/micro/kernels/decode_state_huffman_test.cc``: 64 letters, a 16-symbol code
with a root table of 8 entries, and its 16-bit and 32-bit tables.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA_DIR
from test_codecs_pruning import MODELS, compress_every_constant, model_inputs

from edge_prune.measurement import tflm
from edge_prune.measurement.codecs import _tflm, huffman

UPSTREAM_STREAM = bytes.fromhex("f00d79fc9c1a6e4c32af29b35df6360250158ca795db29683fbab7edb119e2e0")
UPSTREAM_TEXT = "nmmacnanefdacopjomeckifookhbdbdmjjdmjgojfecpbiibmanbbjbnlgjafejp"
UPSTREAM_CODES = {
    "m": "000", "a": "001", "j": "010", "o": "0110", "h": "0111", "d": "1000",
    "i": "10010", "f": "10011", "c": "1010", "g": "101100", "l": "101101", "k": "10111",
    "e": "1100", "b": "1101", "p": "1110", "n": "1111",
}  # fmt: skip
UPSTREAM_TABLE_16 = [
    0x986D, 0x9861, 0x986A, 0x0005, 0x0806, 0x0809, 0x000E, 0x000F,  # root, 3 bits
    0x886F, 0x8868, 0x8864, 0x8864, 0x9069, 0x9066, 0x8863, 0x8863,
    0x0002, 0x906B, 0x8867, 0x886C, 0x8865, 0x8862, 0x8870, 0x886E,
]  # fmt: skip


def _upstream_32() -> list[int]:
    """The 32-bit table of the upstream test: same fields, moved to bits 31, 30..27, 26..0."""
    out = []
    for e in UPSTREAM_TABLE_16:
        found, count, value = e >> 15, (e >> 11) & 0xF, e & 0x7FF
        out.append(found << 31 | count << 27 | value)
    return out


def _ancillary(table: list[int], wide: bool) -> bytes:
    byte5 = (3 - 1) << 4 | int(wide)
    return _tflm.dcm(1, 1, byte5) + np.asarray(table, "<u4" if wide else "<u2").tobytes()


@pytest.mark.parametrize("wide", [False, True])
def test_reference_decoder_decodes_the_upstream_vector(wide):
    table = _upstream_32() if wide else UPSTREAM_TABLE_16
    for dtype in (np.int8, np.int16) if wide else (np.int8,):
        decoded = huffman.decode(UPSTREAM_STREAM, _ancillary(table, wide), 64, dtype)
        assert "".join(map(chr, decoded.tolist())) == UPSTREAM_TEXT


@pytest.mark.parametrize("wide", [False, True])
def test_tables_built_from_the_upstream_code_equal_the_upstream_tables(wide):
    codes = {ord(k): v for k, v in UPSTREAM_CODES.items()}

    tables = huffman.build_tables(codes, wide=wide, root_bits=3)

    assert list(tables.entries) == (_upstream_32() if wide else UPSTREAM_TABLE_16)
    assert tables.dcm_byte5 == (2 << 4 | int(wide))


def test_stream_of_the_upstream_symbols_equals_the_upstream_stream():
    codes = {ord(k): v for k, v in UPSTREAM_CODES.items()}
    symbols = np.frombuffer(UPSTREAM_TEXT.encode(), dtype=np.uint8).astype(np.int64)

    assert huffman.pack_stream(symbols, codes, max_table_bits=3) == UPSTREAM_STREAM


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_encode_decode_round_trip_on_skewed_and_uniform_data(dtype):
    rng = np.random.default_rng(3)
    for trial in range(12):
        n = int(rng.integers(1, 4000))
        if trial % 2:
            values = (rng.geometric(0.25, n) * rng.choice([-1, 1], n)).astype(dtype)
        else:
            high = 128 if dtype == np.int8 else 3000
            values = rng.integers(-high, high, n).astype(dtype)

        encoded, ancillary = huffman.encode(values)

        assert ancillary[:2] == bytes([1, 1]) and ancillary[4] == 1
        assert bool(ancillary[5] & 1) == (dtype == np.int16)  # int16 needs 32-bit entries
        assert len(encoded) % 4 == 0
        np.testing.assert_array_equal(huffman.decode(encoded, ancillary, n, dtype), values)


def test_single_symbol_costs_one_bit_per_element():
    values = np.full(640, -3, dtype=np.int8)

    encoded, ancillary = huffman.encode(values)

    assert len(encoded) == 640 // 8  # 20 words; a 1-bit table never reads past the end
    np.testing.assert_array_equal(huffman.decode(encoded, ancillary, 640, np.int8), values)


def test_code_lengths_are_limited():
    counts = {s: 2**s for s in range(40)}  # an unlimited Huffman code would be 39 bits deep

    lengths = huffman.code_lengths(counts, max_bits=12)

    assert max(lengths.values()) <= 12
    assert sum(2.0**-n for n in lengths.values()) <= 1.0  # still a prefix code


def test_int32_tensor_is_unsuitable():
    with pytest.raises(_tflm.Unsuitable, match="int32"):
        huffman.encode(np.zeros(8, dtype=np.int32))


@pytest.mark.parametrize("name", MODELS)
def test_every_int8_constant_huffman_coded_runs_on_tflm_with_identical_outputs(name):
    from tflite_micro.tensorflow.lite.micro.compression import spec

    plain = (DATA_DIR / name).read_bytes()
    x = model_inputs(plain)

    compressed = compress_every_constant(plain, spec.HuffmanCompression(), ("INT8",))

    decoded = list(_tflm.decoded_tensors(compressed))
    assert len(decoded) == 4 and {d.decode_type for d in decoded} == {1}
    for d in decoded:
        values = huffman.HuffmanCodec().decode(d.encoded, d.ancillary, d.output)
        assert values.shape == tuple(d.output.shape)
    assert len(compressed) < len(plain)
    np.testing.assert_array_equal(tflm.run(compressed, x), tflm.run(plain, x))
