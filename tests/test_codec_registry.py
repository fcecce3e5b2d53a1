"""The codec registry: one table the driver, the decode check and the cost keys read; a codec
that lacks a protocol member is refused when it is registered; measured costs per codec."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.errors import ConfigError, ConversionError
from edge_prune.measurement import instructions, runtime_tables
from edge_prune.measurement.codecs import (
    CODECS,
    DEFAULT_CODECS,
    Codec,
    _tflm,
    compress_for_mcu,
    register,
)
from edge_prune.measurement.codecs.lut import LutCodec
from edge_prune.measurement.codecs.protocol import check_codec
from edge_prune.measurement.codecs.verify import check_decode
from edge_prune.measurement.targets import load_target, parse_target

HIDDEN = "dense_hidden/MatMul"  # 32x256 int8, 80% zeros
ZLIB_DECODE_TYPE = 200  # an application decode type (128-255): TFLM itself has no decoder


def _model() -> bytes:
    return (DATA_DIR / "codecs_cnn_per_tensor.tflite").read_bytes()


class ZlibCodec(Codec):
    """A toy codec: the tensor's bytes through zlib. Decoded in Python only."""

    name = "zlib"
    decode_type = ZLIB_DECODE_TYPE
    decoder_source = "zlib"  # no TFLM decoder: no measured figures

    def __init__(self, corrupt: bool = False):
        self.corrupt = corrupt

    @property
    def method_type(self):
        return ZlibCompression

    def methods(self, tensor) -> list:
        if _tflm.dtype_name(tensor) != "INT8":
            raise _tflm.Unsuitable("INT8 only")
        return [ZlibCompression()]

    def describe(self, method) -> str:
        return "zlib level 9"

    def compress(self, tensor, method):
        from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionResult

        encoded = zlib.compress(bytes(tensor.buffer.data), 9)
        return CompressionResult(
            encoded_data=encoded, ancillary_data=_tflm.dcm(ZLIB_DECODE_TYPE, 1)
        )

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        raw = bytearray(zlib.decompress(encoded))
        if self.corrupt:
            raw[0] ^= 1
        shape = tuple(int(n) for n in output.shape)
        return np.frombuffer(bytes(raw), dtype=np.int8).reshape(shape)

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return self.decode(encoded, ancillary, output)


def _zlib_method_type():
    from tflite_micro.tensorflow.lite.micro.compression import spec

    class Zlib(spec.CompressionMethod):
        pass

    return Zlib


ZlibCompression = _zlib_method_type()


@pytest.fixture
def zlib_codec():
    codec = register(ZlibCodec())
    yield codec
    del CODECS[codec.name]


def _tensor(result, name_part: str):
    (tensor,) = [t for t in result.tensors if t.name.endswith(name_part)]
    return tensor


def test_defaults_are_the_registry_built_ins_and_follow_the_protocol():
    assert DEFAULT_CODECS == tuple(CODECS) == ("lut", "pruning", "huffman")
    assert {c.decode_type for c in CODECS.values()} == {0, 1, 2}
    for codec in CODECS.values():
        check_codec(codec)
        assert codec.method_type.__name__.endswith("Compression")


def test_a_registered_codec_is_chosen_built_and_decoded_through_the_registry(zlib_codec):
    alone = compress_for_mcu(_model(), codecs=("zlib",))
    hidden = _tensor(alone, HIDDEN)
    assert hidden.codec == "zlib" and hidden.detail == "zlib level 9"
    assert hidden.bytes_after < hidden.bytes_before
    assert alone.decoded_elements["zlib"] >= 32 * 256
    assert alone.size_bytes < alone.original_size_bytes

    # The decode check of a model from elsewhere reads it too; the instruction estimate counts
    # its DECODE as one no calibration covers (``DECODE``) until a device run calibrates it.
    check = check_decode(alone.tflite_bytes)
    assert ("zlib" in {codec for _, codec in check.tensors}) and check.reference is None
    keys = {w.key for op in instructions.operator_work(alone.tflite_bytes) for w in op}
    assert "DECODE" in keys and "DECODE:zlib" not in keys

    with_defaults = compress_for_mcu(_model(), codecs=(*DEFAULT_CODECS, "zlib"))
    tried = [name.split(":")[0] for name, _ in _tensor(with_defaults, HIDDEN).candidates]
    assert set(tried) == {*DEFAULT_CODECS, "zlib"}


def test_a_registered_codec_whose_decoder_disagrees_gives_no_model(zlib_codec):
    with pytest.raises(ConversionError, match="does not decode to the original weights"):
        compress_for_mcu(_model(), codecs=(ZlibCodec(corrupt=True),))


def test_codec_objects_with_options_stand_in_for_their_name():
    with pytest.raises(ConfigError, match="bitwidth"):
        LutCodec(bitwidth=5)
    with pytest.raises(ConfigError, match="two codecs named 'lut'"):
        compress_for_mcu(_model(), codecs=("lut", LutCodec(bitwidth=4)))
    result = compress_for_mcu(_model(), codecs=(LutCodec(bitwidth=4),))
    reasons = dict(_tensor(result, HIDDEN).candidates)
    assert re.search(r"distinct values (per channel|in the tensor) > 16", reasons["lut"])


class _NoDecoder:
    name = "nodecode"
    decode_type = 201
    decoder_source = "none"
    method_type = object

    def methods(self, tensor):
        return []

    def describe(self, method):
        return ""

    def compress(self, tensor, method):
        raise NotImplementedError

    def decode_checked(self, encoded, ancillary, output):
        raise NotImplementedError


class _StubsOnly(Codec):
    """Subclasses the protocol but defines none of the members it must define itself."""

    name = "stubs"
    decode_type = 202
    decoder_source = "none"


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        (_NoDecoder(), r"'nodecode' cannot be registered: it lacks facts, decoded_bytes, decode,"),
        (_StubsOnly(), r"'stubs' cannot be registered: it lacks method_type, methods, describe,"),
        (type("Nameless", (ZlibCodec,), {"name": ""})(), "non-empty str"),
        (type("Wide", (ZlibCodec,), {"decode_type": 256})(), "decode_type 256"),
        (type("Taken", (ZlibCodec,), {"name": "lut"})(), "the name is taken"),
        (type("Clash", (ZlibCodec,), {"decode_type": 1})(), "decode type 1 is 'huffman'"),
    ],
)
def test_a_codec_that_breaks_the_protocol_is_refused_at_registration(codec, message):
    before = dict(CODECS)
    with pytest.raises(ConfigError, match=message):
        register(codec)
    assert dict(CODECS) == before


def test_measured_costs_are_read_from_the_shipped_tables_or_none():
    m4 = load_target("cortex-m4")
    table = runtime_tables.load_table(m4.tflm_arch, m4.tflm_kernels, m4.tflm_build_type)
    decode = table.ops["CUSTOM:TFLM_DECODE"] - table.framework
    costs = json.loads(instructions.COSTS_PATH.read_text())["configs"][
        runtime_tables.config_key(m4.tflm_arch, m4.tflm_kernels, m4.tflm_build_type)
    ]["costs"]
    for codec in CODECS.values():
        obj = f"decode_state_{codec.decoder_source}.o)"
        expected = sum(
            table.section_bytes[i]
            for i in decode
            if table.objects[table.section_object[i]].endswith(obj)
        )
        assert codec.code_bytes(m4) == expected > 0
        assert codec.instructions_per_element(m4) == costs[f"DECODE:{codec.name}"][1]

    no_tflm_build = load_target("esp32-s3")  # a core TFLM's Cortex-M build does not cover
    m0plus = load_target("cortex-m0plus")  # reference kernels: its own table and costs
    m0plus_costs = json.loads(instructions.COSTS_PATH.read_text())["configs"][
        "cortex-m0plus_reference_default"
    ]["costs"]
    # a Cortex-M3 part: TFLM builds for it, but no table was linked nor costs calibrated
    uncalibrated = parse_target(
        {"part": "x", "board": "x", "core": "Cortex-M3", "clock_hz": 1, "flash_bytes": 1 << 20,
         "ram_bytes": 1 << 16, "reserved_flash_bytes": 0, "reserved_ram_bytes": 0},
        name="m3",
    )  # fmt: skip
    for codec in CODECS.values():
        assert codec.code_bytes(no_tflm_build) is None
        assert codec.instructions_per_element(no_tflm_build) is None
        assert codec.code_bytes(m0plus) is not None
        assert codec.instructions_per_element(m0plus) == m0plus_costs[f"DECODE:{codec.name}"][1]
        assert codec.instructions_per_element(uncalibrated) is None
    assert ZlibCodec().code_bytes(m4) is None and ZlibCodec().instructions_per_element(m4) is None
