"""Hostile input on the newer surfaces: DECODE models given to ``report``, the growth gate,
``--emit-c``, files that are not regular files or not sane JSON/TOML, name-stripped models
given to the codecs, and the temp directories of a killed conversion.

Refusals are exit 2 with exactly one ``edge-prune: error:`` line naming the file, the tensor or
the argument. The DECODE models are built here without TensorFlow: the committed int8 CNN with
its weights coarsened to a few values, compressed by the codecs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import edge_prune as ep
from edge_prune.cli import main
from edge_prune.measurement.codecs import _tflm


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("edge-prune: error: "), err
    return err


# ------------------------------------------------------------------------ DECODE models


def coarse_int8(path: Path) -> bytes:
    """The model at ``path`` with every large int8 weight tensor reduced to 3 values (0, +-64):
    something every codec compresses."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    for tensor in model.subgraphs[0].tensors:
        buffer = model.buffers[tensor.buffer]
        if tensor.type != schema.TensorType.INT8 or buffer.data is None or len(buffer.data) < 512:
            continue
        values = np.asarray(buffer.data, dtype=np.uint8).view(np.int8)
        coarse = np.where(np.abs(values) < 40, 0, np.sign(values) * 64).astype(np.int8)
        buffer.data = coarse.view(np.uint8)
    return _tflm.pack(model)


@pytest.fixture(scope="module")
def decode_dir(tmp_path_factory, cnn_int8_path) -> Path:
    """A directory like a build's: the uncompressed source and its Huffman and LUT models."""
    root = tmp_path_factory.mktemp("decode")
    source = coarse_int8(cnn_int8_path)
    (root / "source.tflite").write_bytes(source)
    huffman = ep.compress_for_mcu(source, codecs=("huffman",))
    lut = ep.lut_compress(source)
    assert huffman.compressed and lut.compressed
    (root / "huffman.tflite").write_bytes(huffman.tflite_bytes)
    (root / "lut.tflite").write_bytes(lut.tflite_bytes)
    return root


def _vector_start(data: bytes, content: bytes) -> int:
    start = data.find(content)
    while start >= 0 and struct.unpack_from("<I", data, start - 4)[0] != len(content):
        start = data.find(content, start + 1)
    assert start >= 4
    return start


def _mutated(data: bytes, where: str, offset: int, value: int | None = None) -> bytes:
    """``data`` with one byte of the first DECODE output's ancillary or encoded data replaced
    by ``value`` (or XOR 0x5A), or with its length prefix (offset -4) set to ``value``."""
    first = next(_tflm.decoded_tensors(data))
    content = first.ancillary if where == "ancillary" else first.encoded
    start = _vector_start(data, content)
    out = bytearray(data)
    if offset == -4:
        struct.pack_into("<I", out, start - 4, value)
    else:
        out[start + offset] = out[start + offset] ^ 0x5A if value is None else value
    return bytes(out)


def test_well_formed_decode_models_are_decoded_and_compared_with_their_source(capsys, decode_dir):
    for name in ("huffman.tflite", "lut.tflite"):
        code, out, _ = run_cli(capsys, "report", decode_dir / name, "--target", "cortex-m4",
                               "--format", "json")  # fmt: skip
        assert code == 0
        check = json.loads(out)["decode_check"]
        assert check["reference"] == str(decode_dir / "source.tflite")
        assert check["unverified"] is None and len(check["tensors"]) >= 1
        assert check["outputs_compared_on_inputs"] == 32


def test_decode_model_alone_says_in_one_line_what_was_not_verified(capsys, tmp_path, decode_dir):
    alone = tmp_path / "model.tflite"
    alone.write_bytes((decode_dir / "huffman.tflite").read_bytes())
    code, out, _ = run_cli(capsys, "report", alone, "--target", "cortex-m4")
    assert code == 0
    notes = [line for line in out.splitlines() if "were not compared" in line]
    assert len(notes) == 1 and notes[0].startswith("- DECODE: the values of")


@pytest.mark.parametrize(
    ("model", "where", "offset", "value", "expected"),
    [
        ("huffman", "ancillary", 0, 0, "LUT index width 0 bits"),  # type 1 -> LUT
        ("huffman", "ancillary", 0, 9, "unknown decode type 9"),
        ("lut", "ancillary", 1, 0, "DECODE header version 0"),
        ("huffman", "ancillary", 4, 0, "Huffman format version 0"),
        ("lut", "ancillary", 4, 2, "LUT format version 2"),
        ("lut", "ancillary", 6, 0, "LUT table stride 0"),
        ("huffman", "ancillary", -4, 1, "shorter than the 16-byte DECODE header"),
        ("lut", "ancillary", -4, 16, "B of value tables"),
        ("huffman", "encoded", -4, 1, "B of codes"),
        ("lut", "encoded", -4, 1, "B of indices"),
        ("lut", "ancillary", 16, None, "decodes to weights that differ"),
        ("huffman", "encoded", 0, None, "huffman"),
    ],
)
def test_corrupted_decode_data_is_a_one_line_error_naming_the_tensor(
    capsys, tmp_path, decode_dir, model, where, offset, value, expected
):
    (tmp_path / "source.tflite").write_bytes((decode_dir / "source.tflite").read_bytes())
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_mutated((decode_dir / f"{model}.tflite").read_bytes(), where, offset, value))
    err = one_line_error(capsys, "report", bad, "--target", "cortex-m4")
    assert err.startswith(f"edge-prune: error: {bad}: DECODE ") and "tensor #" in err
    assert expected in err


def _fuzz_decode():
    """bench/fuzz_decode.py: its graph mutations."""
    import importlib.util

    if "fuzz_decode" in sys.modules:
        return sys.modules["fuzz_decode"]
    path = Path(__file__).resolve().parent.parent / "bench" / "fuzz_decode.py"
    spec = importlib.util.spec_from_file_location("fuzz_decode", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decode"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


GRAPH_MUTANTS = [(c, k) for c in _fuzz_decode().GRAPH_CLASSES for k in range(3)]


@pytest.mark.parametrize(("mutation", "k"), GRAPH_MUTANTS)
def test_decode_models_changed_around_their_decode_ops_are_refused_beside_their_source(
    capsys, tmp_path, decode_dir, mutation, k
):
    """Operators moved or rewired, scales changed, raw constants flipped (also together): the
    decoded weights still equal the source's, the outputs do not; none may pass as "equal"."""
    import random

    fuzz = _fuzz_decode()
    (tmp_path / "source.tflite").write_bytes((decode_dir / "source.tflite").read_bytes())
    data = (decode_dir / "huffman.tflite").read_bytes()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(fuzz.graph_mutate(data, mutation, random.Random(f"t:{mutation}:{k}")))
    code, out, err = run_cli(capsys, "report", bad, "--target", "cortex-m4", "--format", "json")
    if code == 0:  # the mutation happened to change nothing TFLM computes: outputs compared
        assert json.loads(out)["decode_check"]["outputs_compared_on_inputs"] == 32
        assert _outputs(bad.read_bytes()) == _outputs(data)
        return
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"edge-prune: error: {bad}: ")


def _outputs(model: bytes) -> bytes:
    """TFLM outputs on 64 random inputs other than the ones the check uses."""
    from edge_prune.measurement import tflm

    x = np.random.default_rng(1).integers(-128, 128, size=(64, 1, 12, 12, 1), dtype=np.int8)
    return tflm.run(model, x).tobytes()


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("decode_after_reader", "which runs before it"),
        ("reader_first", "which runs before it"),
        ("no_quantization", "which has no quantization"),
    ],
)
def test_decode_model_alone_is_checked_for_graph_order_and_decoded_quantization(
    capsys, tmp_path, decode_dir, mutation, expected
):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((decode_dir / "huffman.tflite").read_bytes(), 0)
    fuzz = _fuzz_decode()
    decode_at, out = fuzz._decoded_outputs(model)[0]
    reader = fuzz._readers(model, out)[0]
    ops, tensors = model.subgraphs[0].operators, model.subgraphs[0].tensors
    if mutation == "decode_after_reader":
        ops.insert(reader, ops.pop(decode_at))
    elif mutation == "reader_first":
        ops.insert(0, ops.pop(reader))
    else:
        tensors[out].quantization = None
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(_tflm.pack(model))
    err = one_line_error(capsys, "report", alone, "--target", "cortex-m4")
    assert err.startswith(f"edge-prune: error: {alone}: ") and expected in err


def test_an_operator_reading_the_encoded_bytes_instead_of_the_decoded_tensor_is_refused(
    capsys, tmp_path, decode_dir
):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    (tmp_path / "source.tflite").write_bytes((decode_dir / "source.tflite").read_bytes())
    model = schema.ModelT.InitFromPackedBuf((decode_dir / "huffman.tflite").read_bytes(), 0)
    fuzz = _fuzz_decode()
    decode_at, out = fuzz._decoded_outputs(model)[0]
    ops = model.subgraphs[0].operators
    encoded = int(ops[decode_at].inputs[0])
    reader = ops[fuzz._readers(model, out)[0]]
    reader.inputs = [encoded if int(t) == out else int(t) for t in reader.inputs]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_tflm.pack(model))
    err = one_line_error(capsys, "report", bad, "--target", "cortex-m4")
    assert "has other tensors or another place" in err and "source.tflite" in err


def test_decode_model_alone_with_a_doubled_filter_scale_but_no_bias_says_so(
    capsys, tmp_path, decode_dir
):
    """A FULLY_CONNECTED without bias: nothing in the file contradicts a doubled scale. The
    report passes it, and says in one line that scales were not compared."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((decode_dir / "huffman.tflite").read_bytes(), 0)
    _, out = _fuzz_decode()._decoded_outputs(model)[0]
    q = model.subgraphs[0].tensors[out].quantization
    q.scale = [2 * float(v) for v in q.scale]
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(_tflm.pack(model))
    code, out, _ = run_cli(capsys, "report", alone, "--target", "cortex-m4", "--format", "json")
    check = json.loads(out)["decode_check"]
    assert code == 0 and check["reference"] is None and check["outputs_compared_on_inputs"] == 0
    assert "filter scales without a bias to check them against" in check["unverified"]


@pytest.mark.parametrize("shape", [[17, 3, 3, 1], [33, 256], [0, 3, 3, 1], [-1, 3, 3, 1], []])
def test_decoded_tensor_of_an_impossible_shape_is_a_one_line_error(
    capsys, tmp_path, decode_dir, shape
):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((decode_dir / "lut.tflite").read_bytes(), 0)
    _, out = _fuzz_decode()._decoded_outputs(model)[0]
    model.subgraphs[0].tensors[out].shape = shape
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_tflm.pack(model))
    err = one_line_error(capsys, "report", bad, "--target", "cortex-m4")
    assert err.startswith(f"edge-prune: error: {bad}: DECODE operator ") and "tensor #" in err


def test_name_stripped_clustered_model_is_accepted_by_both_codec_entry_points(decode_dir):
    stripped, names = ep.strip_for_mcu((decode_dir / "source.tflite").read_bytes())
    assert names  # the names were there and are gone
    assert ep.lut_compress(stripped).compressed
    assert ep.compress_for_mcu(stripped).compressed


# ---------------------------------------------------------------------------- growth gate


def _baseline(capsys, tmp_path, model, *targets, change=None) -> Path:
    argv = ["report", model, *[a for t in targets for a in ("--target", t)], "--format", "json"]
    code, out, _ = run_cli(capsys, *argv)
    data = json.loads(out)
    if change:
        change(data)
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))
    return path


def test_growth_gate_compares_what_the_model_adds_not_flash_needed(capsys, tmp_path, cnn_int8_path):
    def smaller_model(data):  # as if the baseline model were 57% smaller in flatbuffer bytes
        data["footprint"]["flatbuffer_bytes"] = round(3_880 / 1.57)

    base = _baseline(capsys, tmp_path, cnn_int8_path, "cortex-m4", change=smaller_model)
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m4", "--baseline",
                           base, "--fail-on-growth", "10", "--format", "json")  # fmt: skip
    report = json.loads(out)
    assert code == 1 and not report["passes"]
    assert [c["figure"] for c in report["delta"]["grown_beyond_limit"]] == ["flatbuffer"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["targets"][0].update(target="cortex-m7"), "no entry for target cortex-m4"),
        (lambda d: d["targets"][0]["flash"].update(needed_bytes=0), "flash.needed_bytes is 0"),
        (lambda d: d["targets"][0]["flash"].pop("runtime_bytes"), "runtime_bytes is missing"),
        (lambda d: d["footprint"].update(flatbuffer_bytes=0), "flatbuffer_bytes is 0"),
    ],
)
def test_growth_gate_with_nothing_to_compare_is_bad_input_unless_allowed(
    capsys, tmp_path, cnn_int8_path, change, message
):
    base = _baseline(capsys, tmp_path, cnn_int8_path, "cortex-m4", change=change)
    argv = ("report", cnn_int8_path, "--target", "cortex-m4", "--baseline", base,
            "--fail-on-growth", "10")  # fmt: skip
    err = one_line_error(capsys, *argv)
    assert f"--baseline {base}: " in err and message in err and "--allow-missing-baseline" in err
    code, _, _ = run_cli(capsys, *argv, "--allow-missing-baseline")
    assert code == 0


# ------------------------------------------------------------------------------- --emit-c


def test_emit_c_empty_path_is_bad_input(capsys, cnn_int8_path):
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4", "--emit-c", "")
    assert "--emit-c: empty directory name" in err


def test_emit_c_swaps_in_the_whole_set_and_keeps_other_files(
    capsys, tmp_path, cnn_int8_path, mlp_float_path, monkeypatch
):
    out_dir = tmp_path / "fw"
    out_dir.mkdir()
    (out_dir / "main.cc").write_text("int main() {}\n")
    code, _, _ = run_cli(capsys, "report", mlp_float_path, "--target", "cortex-m4",
                         "--emit-c", out_dir)  # fmt: skip
    assert code == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert {"main.cc", "model_data.cc", "model_data.h", "model_ops.h", "FIRMWARE.md"} <= set(before)

    calls = []

    def disk_full(fd):  # the third file of the new set hits a full disk
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("edge_prune.artifacts.os.fsync", disk_full)
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                         "--emit-c", out_dir)  # fmt: skip
    assert "No space left on device" in err and str(out_dir) in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert not list(tmp_path.glob(".fw.staging-*"))


def test_disk_full_names_the_path(capsys, tmp_path, monkeypatch):
    from edge_prune.artifacts import write_atomic

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("edge_prune.artifacts.os.fsync", disk_full)
    with pytest.raises(OSError) as caught:
        write_atomic(tmp_path / "out" / "report.json", "{}")
    assert caught.value.filename == str(tmp_path / "out" / "report.json")
    assert not list((tmp_path / "out").iterdir())


def test_os_error_with_a_path_is_one_line_naming_it(capsys, monkeypatch, cnn_int8_path):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/build/report.json")

    monkeypatch.setattr("edge_prune.commands.report.run", full)
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4")
    assert err == "edge-prune: error: /out/build/report.json: No space left on device\n"


# ------------------------------------------------------------- files that are not sane input


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        ('{"footprint": {"flatbuffer_bytes": ' + "9" * 5000 + "}}", "4300 digits"),
    ],
)
def test_baseline_json_that_python_cannot_hold_is_a_named_error(
    capsys, tmp_path, cnn_int8_path, content, message
):
    path = tmp_path / "base.json"
    path.write_text(content)
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                         "--baseline", path)  # fmt: skip
    assert f"--baseline {path}: " in err and message in err


def test_device_or_fifo_is_refused_without_reading_it(capsys, tmp_path, cnn_int8_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        ("--baseline", "/dev/zero", "a character device"),
        ("--baseline", fifo, "a FIFO"),
        ("--accuracy-from", fifo, "a FIFO"),
    ]
    for option, path, kind in cases:
        err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                             option, path)  # fmt: skip
        assert f"{option} {path}: not a regular file ({kind})" in err
    err = one_line_error(capsys, "report", fifo, "--target", "cortex-m4")
    assert f"{fifo}: not a regular file (a FIFO)" in err
    err = one_line_error(capsys, "model", "--target", "cortex-m4", "--config", fifo)
    assert f"{fifo}: not a regular file (a FIFO)" in err


def test_toml_integers_python_cannot_convert_are_named_errors(
    capsys, tmp_path, target_file, cnn_int8_path
):
    config = tmp_path / "big.toml"
    config.write_text("[train]\nepochs = " + "9" * 5000 + "\n")
    err = one_line_error(capsys, "model", "--target", "cortex-m4", "--config", config)
    assert f"{config}: unreadable TOML value" in err
    target = target_file()
    target.write_text(target.read_text() + "notes = " + "9" * 5000 + "\n")
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", target)
    assert f"{target}: unreadable TOML value" in err


@pytest.mark.parametrize("value", [5.0, -0.1, True, "0.9"])
def test_accuracy_outside_0_to_1_is_bad_input(capsys, tmp_path, cnn_int8_path, value):
    code, out, _ = run_cli(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                           "--format", "json")  # fmt: skip
    path = tmp_path / "report.json"
    report = {"deployable": {"artifact": "int8"}, "accuracy": {"int8_tflm": value},
              "footprint": json.loads(out)}  # fmt: skip
    path.write_text(json.dumps(report))
    err = one_line_error(capsys, "report", cnn_int8_path, "--target", "cortex-m4",
                         "--accuracy-from", path)  # fmt: skip
    assert "expected a fraction in [0, 1]" in err


def test_final_sparsity_beyond_099_is_refused_at_the_door(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[prune]\nfinal_sparsity = 0.999\n")
    err = one_line_error(capsys, "model", "--target", "cortex-m4", "--config", config)
    assert "'prune.final_sparsity' = 0.999 is outside [0, 0.99]" in err


# ------------------------------------------------------------ temp dirs of a killed converter


def test_converter_scratch_dirs_of_dead_processes_are_swept():
    from edge_prune.artifacts import scratch_tempdir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    orphan = Path(tempfile.gettempdir()) / f"edge-prune-convert-{dead}-abc"
    (orphan / "saved_model").mkdir(parents=True)
    with scratch_tempdir("convert") as scratch:
        assert not orphan.exists()
        inner = Path(tempfile.mkdtemp())  # what the TFLite converter does for its SavedModel
        assert inner.parent == scratch
        assert re.fullmatch(rf"edge-prune-convert-{os.getpid()}-.*", scratch.name)
    assert not scratch.exists() and tempfile.gettempdir() == str(orphan.parent)


# ------------------------------------------------------------------- --bitwidth through the CLI

FAST = """
[train]
epochs = 2
[prune]
final_sparsity = 0.5
end_epoch = 1
epochs = 2
[structured]
ratio = 0.5
epochs = 1
[compress]
clusters = 8
epochs = 1
[select]
tolerance_points = 100.0
"""


def test_model_with_a_fixed_lut_bitwidth_writes_its_build(capsys, tmp_path):
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    code, _, err = run_cli(capsys, "model", "--target", "cortex-m4", "--config", config,
                           "--bitwidth", "4", "--out", tmp_path / "build")  # fmt: skip
    assert code == 0, err
    out = tmp_path / "build" / "cortex-m4"
    report = json.loads((out / "report.json").read_text())
    compressed = [a for a in report["artifacts"] if a["name"] == "int8-clustered-compressed"][0]
    luts = [t for t in compressed["compression"]["tensors"] if t["codec"] == "lut"]
    assert luts and all(t["bitwidth"] == 4 for t in luts)
    assert "lut (4-bit indices" in (out / "report.md").read_text()
