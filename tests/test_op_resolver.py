"""The op resolver table: generated from TFLM's micro_mutable_op_resolver.h, one method per op.

Everywhere: the shipped table's entries regenerate from a fixture header in TFLM's method
shapes (tests/data/tflm_resolver_excerpt/, written for the test), and its counts and custom
ops are what the pinned header has. With a TFLM tree (``EDGE_PRUNE_TFLM=DIR``, tflite-micro
90b983c2 with its third-party downloads): the whole table
regenerates byte for byte, every method compiles against the real header, and TFLM's own
example models get a model_ops.h that compiles and registers exactly the ops of the model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_prune.measurement import op_resolver
from edge_prune.measurement.firmware import TFLM_ADD_METHODS, firmware_sources, write_sources

DATA = Path(__file__).resolve().parent / "data"
EXCERPT = DATA / "tflm_resolver_excerpt"
TREE_ENV = "EDGE_PRUNE_TFLM"
EXAMPLES = "tensorflow/lite/micro/examples"
# TFLM's own models (paths in the tree): examples, benchmarks' models, Ethos-U and Signal ops.
EXAMPLE_MODELS = (
    f"{EXAMPLES}/hello_world/models/hello_world_int8.tflite",
    f"{EXAMPLES}/hello_world/models/hello_world_float.tflite",
    f"{EXAMPLES}/micro_speech/models/micro_speech_quantized.tflite",
    f"{EXAMPLES}/micro_speech/models/audio_preprocessor_int8.tflite",
    f"{EXAMPLES}/micro_speech/models/audio_preprocessor_float.tflite",
    f"{EXAMPLES}/mnist_lstm/trained_lstm_int8.tflite",
    f"{EXAMPLES}/dtln/dtln_noise_suppression.tflite",
    f"{EXAMPLES}/memory_footprint/models/simple_add_model.tflite",
    "tensorflow/lite/micro/models/person_detect.tflite",
    "tensorflow/lite/micro/models/person_detect_vela.tflite",
    "tensorflow/lite/micro/models/keyword_scrambled_8bit.tflite",
)


def tflm_tree() -> Path:
    tree = os.environ.get(TREE_ENV)
    if not tree:
        pytest.skip(f"needs a TFLM source tree: set {TREE_ENV}=DIR (tflite-micro 90b983c2)")
    tree = Path(tree)
    if not (tree / op_resolver.HEADER).is_file():
        pytest.skip(f"{TREE_ENV}={tree} has no {op_resolver.HEADER}")
    return tree


def pinned_tree() -> Path:
    tree = tflm_tree()
    table = op_resolver.load()
    if op_resolver.generate(tree).header_sha256 != table.header_sha256:
        pytest.skip(f"{tree}: its resolver header is not the one of TFLM {table.tflm_commit}")
    return tree


def include_flags(tree: Path) -> list[str]:
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    return [
        f"-I{tree}",
        f"-I{downloads / 'flatbuffers/include'}",
        f"-I{downloads / 'gemmlowp'}",
        f"-I{downloads / 'ruy'}",
    ]


def syntax_check(tree: Path, source: Path, include: Path) -> None:
    compiler = shutil.which("g++") or "g++"  # no skip: a missing compiler must fail the test
    cmd = [compiler, "-std=c++17", "-fsyntax-only", "-DTF_LITE_STATIC_MEMORY", f"-I{include}"]
    done = subprocess.run([*cmd, *include_flags(tree), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


# --------------------------------------------------------------------------- everywhere


def test_shipped_entries_regenerate_from_an_excerpt_of_the_header():
    excerpt = op_resolver.generate(EXCERPT, commit="90b983c2")
    shipped = {m.method: m for m in op_resolver.load().methods}
    assert [m.method for m in excerpt.methods] == [
        "AddAbs",
        "AddAveragePool2D",
        "AddCircularBuffer",
        "AddDecode",
        "AddDelay",
        "AddEthosU",
        "AddResizeNearestNeighbor",
        "AddRfft",
        "AddSum",
    ]  # fmt: skip  (AddCustom and the private AddBuiltin register no op of their own)
    for method in excerpt.methods:
        assert method == shipped[method.method]


def test_excerpt_entries_say_what_each_method_registers_and_needs():
    by_method = {m.method: m for m in op_resolver.generate(EXCERPT).methods}
    assert by_method["AddSum"].op == "SUM" and by_method["AddSum"].kind == "builtin"
    assert by_method["AddDecode"].op == "CUSTOM:TFLM_DECODE"
    assert by_method["AddDelay"].op == "CUSTOM:SignalDelay"
    assert by_method["AddRfft"].params == (
        "const TFLMRegistration* registration = tflite::tflm_signal::Register_RFFT()",
    )
    ethos = by_method["AddEthosU"]
    assert ethos.op == "CUSTOM:ethos-u"  # the kernel's name, not the empty stub's
    assert ethos.custom_name_from.endswith("kernels/ethos_u/ethosu.cc")
    assert ethos.registers_only_if
    assert all(m.required_params == 0 for m in by_method.values())


def test_a_method_whose_op_cannot_be_read_is_an_error(tmp_path):
    header = tmp_path / op_resolver.HEADER
    header.parent.mkdir(parents=True)
    header.write_text("  TfLiteStatus AddMystery() {\n    return Register(mystery);\n  }\n")
    with pytest.raises(op_resolver.ConfigError, match="AddMystery"):
        op_resolver.generate(tmp_path)


def test_table_has_every_method_of_the_pinned_header_and_one_op_each():
    table = op_resolver.load()
    assert table.tflm_commit == "90b983c2" and table.header == op_resolver.HEADER
    assert len(table.methods) == 118
    assert sum(m.kind == "builtin" for m in table.methods) == 100
    customs = sorted(m.op for m in table.methods if m.kind == "custom")
    assert len(customs) == 18
    assert "CUSTOM:TFLM_DECODE" in customs and "CUSTOM:ethos-u" in customs
    assert sum(op.startswith("CUSTOM:Signal") for op in customs) == 14
    for op in ("DIV", "SUM", "BATCH_MATMUL", "LOG_SOFTMAX", "SELECT_V2"):
        assert op in TFLM_ADD_METHODS
    ops = [m.op for m in table.methods]
    assert len(set(ops)) == len(ops)
    assert {m.op: m.method for m in table.methods} == TFLM_ADD_METHODS


def test_table_text_is_what_render_writes():
    assert op_resolver.render(op_resolver.load()) == op_resolver.TABLE_PATH.read_text()


def test_signal_ops_of_tflms_audio_preprocessor_are_registered_not_left_out():
    # The audio preprocessor's custom op codes, as edge_prune.measurement.tflite_file names them.
    ops = ["CUSTOM:SignalEnergy", "CUSTOM:SignalFftAutoScale", "CUSTOM:SignalFilterBank",
           "CUSTOM:SignalFilterBankLog", "CUSTOM:SignalFilterBankSpectralSubtraction",
           "CUSTOM:SignalFilterBankSquareRoot", "CUSTOM:SignalPCAN", "CUSTOM:SignalRfft",
           "CUSTOM:SignalWindow", "DIV"]  # fmt: skip
    assert all(op in TFLM_ADD_METHODS for op in ops)


# --------------------------------------------------------------------------- with the tree


def test_table_regenerates_byte_for_byte_from_the_tree():
    tree = pinned_tree()
    table = op_resolver.load()
    text = op_resolver.render(op_resolver.generate(tree, commit=table.tflm_commit))
    assert text == op_resolver.TABLE_PATH.read_text()


def test_every_table_method_compiles_against_the_real_header(tmp_path):
    tree = pinned_tree()
    calls = "\n".join(f"  (void)r.{m}();" for m in TFLM_ADD_METHODS.values())
    source = tmp_path / "all_methods.cc"
    source.write_text(
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
        f"void Register() {{\n  tflite::MicroMutableOpResolver<{len(TFLM_ADD_METHODS)}> r;\n"
        f"{calls}\n}}\n"
    )
    syntax_check(tree, source, tmp_path)


def flatbuffer_ops(data: bytes) -> set[str]:
    """The operator codes the model's operators use, read with TFLM's own schema module (not
    edge-prune's reader): builtin names, CUSTOM:<custom_code> for custom operators. A code no
    operator uses is left out: TFLM looks kernels up per operator (keyword_scrambled_8bit
    lists DEQUANTIZE and never uses it)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    used = {op.opcodeIndex for graph in model.subgraphs for op in graph.operators}
    ops = set()
    for code in (model.operatorCodes[i] for i in used):
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ops.add(f"CUSTOM:{code.customCode.decode()}" if name == "CUSTOM" else name)
    return ops


def test_tflm_example_models_get_a_model_ops_h_that_compiles_and_registers_their_ops(tmp_path):
    tree = pinned_tree()
    method_ops = {method: op for op, method in TFLM_ADD_METHODS.items()}
    includes, calls = [], []
    for relative in EXAMPLE_MODELS:
        path = tree / relative
        data = path.read_bytes()
        sources = firmware_sources(data, path.stem, arena_bytes=None)
        assert sources.unsupported_ops == (), relative
        write_sources(tmp_path / sources.prefix, sources)
        header = sources.files["model_ops.h"]
        registered = {method_ops[m] for m in re.findall(r"resolver\.(Add\w+)\(\)", header)}
        assert registered == flatbuffer_ops(data), relative
        camel = header.split("using ")[1].split("OpResolver")[0]
        includes.append(f'#include "{sources.prefix}/model_ops.h"')
        calls.append(f"  {{ {camel}OpResolver r; status |= {camel}RegisterOps(r); }}")
    source = tmp_path / "examples.cc"
    body = "\n".join(["int RegisterAll() {", "  int status = 0;", *calls, "  return status;", "}"])
    source.write_text("\n".join(includes) + "\n" + body + "\n")
    syntax_check(tree, source, tmp_path)
