"""Per-tensor codec choice: smallest encoding wins, fallbacks say why, arena limit is honoured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA_DIR
from test_codecs_pruning import MODELS, model_inputs

from edge_prune.errors import ConfigError, ConversionError
from edge_prune.measurement import tflm
from edge_prune.measurement.codecs import DEFAULT_CODECS, compress_for_mcu, pruning

HIDDEN = "dense_hidden/MatMul"  # 32x256 int8, 80% zeros: the tensor worth compressing


def _model(name: str = MODELS[0]) -> bytes:
    return (DATA_DIR / name).read_bytes()


def _tensor(result, name_part: str):
    (tensor,) = [t for t in result.tensors if t.name.endswith(name_part)]
    return tensor


@pytest.mark.parametrize("name", MODELS)
def test_chosen_model_runs_on_tflm_with_identical_outputs(name):
    plain = _model(name)
    x = model_inputs(plain)

    result = compress_for_mcu(plain, min_tensor_bytes=0)

    assert result.compressed and result.size_bytes < len(plain)
    np.testing.assert_array_equal(tflm.run(result.tflite_bytes, x), tflm.run(plain, x))


def test_the_smallest_candidate_wins_and_beats_every_codec_alone():
    plain = _model()

    chosen = compress_for_mcu(plain)
    alone = {c: compress_for_mcu(plain, codecs=(c,)) for c in DEFAULT_CODECS}

    hidden = _tensor(chosen, HIDDEN)
    sizes = [int(size.removesuffix(" B")) for _, size in hidden.candidates if size.endswith(" B")]
    assert hidden.bytes_after == min(sizes) < hidden.bytes_before
    assert chosen.size_bytes <= min(r.size_bytes for r in alone.values())
    assert hidden.codec in ("pruning", "huffman")


def test_a_codec_that_cannot_encode_records_why_and_another_is_used():
    result = compress_for_mcu(_model(), codecs=("lut", "pruning"))

    hidden = _tensor(result, HIDDEN)
    assert hidden.codec == "pruning"
    reasons = dict(hidden.candidates)
    assert (
        "cannot encode" in reasons["lut"] and "distinct values per channel > 16" in reasons["lut"]
    )


def test_only_the_selected_tensors_are_compressed():
    plain = _model()
    every = compress_for_mcu(plain, min_tensor_bytes=0)
    (hidden,) = every.compressed
    others = frozenset((0, t.index) for t in every.tensors if t.index != hidden.index)

    without = compress_for_mcu(plain, min_tensor_bytes=0, only=others)
    alone = compress_for_mcu(plain, min_tensor_bytes=0, only=frozenset({(0, hidden.index)}))

    assert not without.compressed and without.tflite_bytes == plain
    assert _tensor(without, HIDDEN).reason == "not selected"
    assert alone.tflite_bytes == every.tflite_bytes


def test_small_tensors_stay_raw_with_the_reason():
    conv = _tensor(compress_for_mcu(_model()), "conv2d/Conv2D")

    assert conv.codec == "raw"
    assert conv.reason == f"below min_tensor_bytes ({conv.bytes_before} B < 512 B)"
    assert conv.bytes_after == conv.bytes_before and conv.decoded_arena_bytes == 0


def test_a_tensor_that_does_not_decode_back_raises_without_a_model(monkeypatch):
    real_encode = pruning.encode

    def corrupt(values, zero_points):
        encoded, ancillary = real_encode(values, zero_points)
        return encoded, ancillary[:-1] + bytes([(ancillary[-1] + 1) % 256])

    monkeypatch.setattr(pruning, "encode", corrupt)
    with pytest.raises(ConversionError, match="does not decode to the original weights"):
        compress_for_mcu(_model(), codecs=("pruning",))


def test_arena_limit_leaves_the_largest_decoded_tensor_raw():
    plain = _model()
    raw_arena = tflm.measure_arena(plain).verdict_bytes
    unlimited = compress_for_mcu(plain, min_tensor_bytes=0)
    unlimited_arena = tflm.measure_arena(unlimited.tflite_bytes).verdict_bytes
    assert unlimited_arena > raw_arena  # decoded tensors cost arena

    limit = unlimited_arena - 1
    result = compress_for_mcu(plain, min_tensor_bytes=0, arena_limit_bytes=limit)

    assert result.arena_bytes <= limit
    assert result.arena_bytes == tflm.measure_arena(result.tflite_bytes).verdict_bytes
    hidden = _tensor(result, HIDDEN)  # the largest decoded tensor
    assert hidden.codec == "raw"
    assert hidden.reason == (
        f"left raw: decoding would push the arena to {unlimited_arena} B > limit {limit} B"
    )
    assert len(result.compressed) == len(unlimited.compressed) - 1


def test_result_reports_totals_and_decoded_elements_as_json():
    result = compress_for_mcu(_model())
    data = json.loads(json.dumps(result.to_dict()))

    assert data["size_bytes"] == result.size_bytes < data["original_size_bytes"]
    hidden = next(t for t in data["tensors"] if t["name"].endswith(HIDDEN))
    assert hidden["decoded_arena_bytes"] == hidden["bytes_before"] == 32 * 256
    bits = 8 * hidden["bytes_after"] / (32 * 256)
    assert hidden["bits_per_weight"] == pytest.approx(bits, abs=1e-3)
    assert data["decoded_elements"] == {hidden["codec"]: 32 * 256}
    assert f"{result.original_size_bytes:,} B -> {result.size_bytes:,} B" in str(result)


def test_choice_is_deterministic():
    assert compress_for_mcu(_model()).tflite_bytes == compress_for_mcu(_model()).tflite_bytes


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"codecs": ("zip",)}, "codecs"),
        ({"codecs": "lut"}, "codecs"),
        ({"arena_limit_bytes": 0}, "arena_limit_bytes"),
        ({"min_tensor_bytes": -1}, "min_tensor_bytes"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        compress_for_mcu(_model(), **kwargs)


def test_lstm_gate_weights_stay_constant_for_the_cmsis_nn_kernel():
    """CMSIS-NN's LSTM reads its gate weights and biases in Prepare (IsConstantTensor, TFLM
    kernels/cmsis_nn/unidirectional_sequence_lstm.cc): encoded, SetUp stops there."""
    import os
    from pathlib import Path

    tree = os.environ.get("EDGE_PRUNE_TFLM")
    model = Path(tree or "-") / "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite"
    if not model.is_file():
        pytest.skip("needs a TFLM tree (EDGE_PRUNE_TFLM) for its int8 LSTM example")
    result = compress_for_mcu(model.read_bytes(), min_tensor_bytes=0)
    kept = [t for t in result.tensors if "must stay constant" in t.reason]
    assert kept and all("cmsis_nn/unidirectional_sequence_lstm.cc" in t.reason for t in kept)
    assert {t.reason.split("reads '")[1].split("'")[0] for t in kept} >= {
        "input_to_forget_weights",
        "recurrent_to_output_weights",
        "output_gate_bias",
    }
