"""The firmware files compile, hold the model's bytes and register exactly the model's ops.

The generated C++ is compiled and run with the host compiler against minimal stand-in TFLM
headers (tests/data/tflm_stub/, see its README): their ``Add...()`` methods record the op each
registers in TFLM, so the program prints the ops the resolver really registers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.cli import main
from edge_prune.errors import ConfigError
from edge_prune.measurement.codecs import lut_compress
from edge_prune.measurement.firmware import (
    _CXX_KEYWORDS,
    DECODE_OP,
    TFLM_ADD_METHODS,
    c_array_sources,
    c_identifier,
    camel_prefix,
    firmware_sources,
    guide_code,
    write_firmware,
)
from edge_prune.measurement.tflite_file import read_model

DATA = Path(__file__).resolve().parent / "data"
STUB = DATA / "tflm_stub"
CXX = shutil.which("g++") or "g++"  # no skip: a missing compiler must fail the test
CXXFLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def lut_compressed_cnn() -> bytes:
    """cnn_int8 with each weight tensor cut to 8 values, LUT-compressed: it holds DECODE ops."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    data = (DATA / "cnn_int8.tflite").read_bytes()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            buffer = model.buffers[tensor.buffer]
            data_bytes = 0 if buffer.data is None else len(buffer.data)
            if tensor.type == schema.TensorType.INT8 and data_bytes >= 64:
                values = np.asarray(buffer.data, dtype=np.uint8).view(np.int8)
                buffer.data = ((values >> 5) << 5).astype(np.int8).view(np.uint8)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return lut_compress(bytes(builder.Output()), min_tensor_bytes=0).tflite_bytes


# name -> (model bytes, arena bytes or None); names chosen to need every naming rule
def _models() -> dict[str, tuple[bytes, int | None]]:
    return {
        "digits-cnn": ((DATA / "cnn_int8.tflite").read_bytes(), 2_750),
        "lenet 300-100": ((DATA / "mlp_int8_lenet.tflite").read_bytes(), 6_001),
        "mlp.float": ((DATA / "mlp_float.tflite").read_bytes(), 3_000),
        "cnn_lut": (lut_compressed_cnn(), 5_000),
        "sparse": ((DATA / "sparse_float.tflite").read_bytes(), None),
    }


def compile_and_run(directory: Path, sources: list[Path], *args: str) -> str:
    exe = directory / "program"
    build = subprocess.run(
        [CXX, *CXXFLAGS, f"-I{STUB}", f"-I{directory}", *map(str, sources), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _main_for(models: dict[str, object], with_guide: set[str]) -> str:
    """A program that registers each model's ops, dumps its array, runs its FIRMWARE.md code."""
    includes, declarations, body = ["#include <cstdio>"], [], []
    for name, sources in models.items():
        camel, prefix = camel_prefix(sources.prefix), sources.prefix
        includes += [f'#include "{prefix}/model_data.h"', f'#include "{prefix}/model_ops.h"']
        body += [
            "  {",
            f"    {camel}OpResolver resolver;",
            f"    if ({camel}RegisterOps(resolver) != kTfLiteOk) return 1;",
            f'    std::printf("ops {prefix} %u", {camel}OpResolver::kCapacity);',
            "    for (unsigned int i = 0; i < resolver.GetRegistrationLength(); ++i)",
            '      std::printf(" %s", resolver.GetRegisteredOp(i));',
            '    std::printf("\\n");',
            f'    if (!Dump(argv[1], "{prefix}", g_{prefix}_model_data, '
            f"g_{prefix}_model_data_len)) return 2;",
            f'    std::printf("io {prefix} %d %d\\n", k{camel}InputCount, k{camel}OutputCount);',
            f'    std::printf("input {prefix} %d %d %.9g %d\\n", (int)k{camel}Input0Type, '
            f"k{camel}Input0ElementCount, (double)k{camel}Input0Scale, k{camel}Input0ZeroPoint);",
        ]
        if name in with_guide:
            declarations += [
                f"tflite::MicroInterpreter* SetUp{camel}();",
                f"TfLiteStatus Run{camel}(tflite::MicroInterpreter*, const float*);",
            ]
            body += [
                f'    std::printf("arena {prefix} %u\\n", k{camel}TensorArenaSize);',
                f"    static float zeros[k{camel}Input0ElementCount] = {{}};",
                f"    tflite::MicroInterpreter* interpreter = SetUp{camel}();",
                "    if (interpreter == nullptr) return 3;",
                f"    if (Run{camel}(interpreter, zeros) != kTfLiteOk) return 4;",
                f'    std::printf("ran {prefix}\\n");',
            ]
        body.append("  }")
    return "\n".join(
        [
            *includes,
            '#include "tensorflow/lite/micro/micro_interpreter.h"',
            "",
            *declarations,
            "",
            "static bool Dump(const char* dir, const char* name, const unsigned char* data,",
            "                 unsigned int len) {",
            "  char path[512];",
            '  std::snprintf(path, sizeof path, "%s/%s.bin", dir, name);',
            '  std::FILE* f = std::fopen(path, "wb");',
            "  if (f == nullptr) return false;",
            "  bool ok = std::fwrite(data, 1, len, f) == len;",
            "  return std::fclose(f) == 0 && ok;",
            "}",
            "",
            "int main(int argc, char** argv) {",
            "  if (argc != 2) return 9;",
            *body,
            "  return 0;",
            "}",
            "",
        ]
    )


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """Every fixture model's files, compiled into one program and run once."""
    root = tmp_path_factory.mktemp("firmware")
    models = _models()
    generated, sources, with_guide = {}, [], set()
    for name, (data, arena) in models.items():
        generated[name] = firmware_sources(data, name, arena_bytes=arena)
        directory = root / generated[name].prefix
        write_firmware(directory, data, name, arena_bytes=arena)
        sources.append(directory / "model_data.cc")
        if arena is not None:
            guide = directory / "guide.cc"
            guide.write_text(_code_block((directory / "FIRMWARE.md").read_text()))
            sources.append(guide)
            with_guide.add(name)
    main_cc = root / "main.cc"
    main_cc.write_text(_main_for(generated, with_guide))
    dumps = root / "dumps"
    dumps.mkdir()
    output = compile_and_run(root, [main_cc, *sources], str(dumps))
    return {"models": models, "sources": generated, "output": output, "dumps": dumps}


def _code_block(markdown: str) -> str:
    match = re.search(r"```cpp\n(.*?)```", markdown, re.S)
    assert match, "FIRMWARE.md has no C++ block"
    return match.group(1)


def _lines(output: str, kind: str) -> dict[str, list[str]]:
    return {
        fields[1]: fields[2:]
        for fields in (line.split() for line in output.splitlines())
        if fields[0] == kind
    }


def test_c_array_compiled_and_dumped_equals_the_tflite_file(program):
    for name, (data, _) in program["models"].items():
        prefix = program["sources"][name].prefix
        assert (program["dumps"] / f"{prefix}.bin").read_bytes() == data, name


def test_resolver_registers_exactly_the_models_op_types(program):
    registered = _lines(program["output"], "ops")
    for name, (data, _) in program["models"].items():
        capacity, *ops = registered[program["sources"][name].prefix]
        expected = [op for op in read_model(data).op_types if op != "DENSIFY"]
        assert sorted(ops) == expected, name
        assert int(capacity) == len(expected), name


def test_decode_is_registered_exactly_when_the_model_holds_decode_ops(program):
    registered = _lines(program["output"], "ops")
    for name, (data, _) in program["models"].items():
        has_decode = DECODE_OP in read_model(data).operators
        assert (DECODE_OP in registered[program["sources"][name].prefix]) == has_decode, name
        ops_header = program["sources"][name].files["model_ops.h"]
        assert ("resolver.AddDecode()" in ops_header) == has_decode, name
        assert ("PR 3673" in program["sources"][name].files["FIRMWARE.md"]) == has_decode
    assert DECODE_OP in registered["cnn_lut"]


def test_op_without_tflm_kernel_is_named_in_the_header_and_returned(program):
    sparse = program["sources"]["sparse"]
    assert sparse.unsupported_ops == ("DENSIFY",)
    assert sparse.registered_ops == ("FULLY_CONNECTED",)
    assert "NOT REGISTERED, TFLM has no kernel method for: DENSIFY." in sparse.files["model_ops.h"]
    assert "TensorArenaSize" not in sparse.files["model_data.h"]


def test_input_quantization_constants_match_the_flatbuffer(program):
    inputs = _lines(program["output"], "input")
    for name, (data, _) in program["models"].items():
        tensor = read_model(data).input_tensors[0]
        type_code, elements, scale, zero_point = inputs[program["sources"][name].prefix]
        assert int(type_code) == {"INT8": 9, "FLOAT32": 1}[tensor.dtype]
        assert int(elements) == int(np.prod(tensor.shape))
        expected_scale = np.float32(tensor.scale[0]) if tensor.scale else np.float32(0)
        assert np.float32(float(scale)) == expected_scale, name
        assert int(zero_point) == (tensor.zero_point[0] if tensor.zero_point else 0)


def test_arena_size_is_the_figure_rounded_up_to_16_and_the_guide_code_runs(program):
    arenas = _lines(program["output"], "arena")
    ran = _lines(program["output"], "ran")
    prefix = {name: c_identifier(name) for name in program["models"]}
    assert arenas[prefix["digits-cnn"]] == ["2752"]
    assert arenas[prefix["lenet 300-100"]] == ["6016"]
    assert arenas[prefix["mlp.float"]] == ["3008"]
    assert set(ran) == {prefix[n] for n in ("digits-cnn", "lenet 300-100", "mlp.float", "cnn_lut")}
    assert prefix["cnn_lut"] == "cnn_lut" and prefix["digits-cnn"].startswith("digits_cnn_")


def test_every_table_method_exists_in_the_stub_and_registers_its_op(tmp_path):
    calls = "\n".join(
        f'  if (r.{method}() != kTfLiteOk || std::strcmp(r.GetRegisteredOp({i}), "{op}") != 0)'
        f" return {i + 1};"
        for i, (op, method) in enumerate(TFLM_ADD_METHODS.items())
    )
    main_cc = tmp_path / "all_ops.cc"
    main_cc.write_text(
        "#include <cstring>\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
        f"int main() {{\n  tflite::MicroMutableOpResolver<{len(TFLM_ADD_METHODS)}> r;\n"
        f"{calls}\n  return r.AddAbs() == kTfLiteOk ? 100 : 0;  // full: must fail\n}}\n"
    )
    compile_and_run(tmp_path, [main_cc])


ODD_NAMES = [
    "digits-cnn v2", "3d", "", "int", "class", "return", "模型", "网络", "modèle.v1",
    "a__b", "_x_", "Model Data", "net_5x", "net5x", "kws-ds-cnn.int8", "\u00e9t\u00e9", "ete!",
]  # fmt: skip


def test_odd_model_names_give_valid_distinct_c_identifiers():
    prefixes = [c_identifier(name) for name in ODD_NAMES]
    assert len(set(prefixes)) == len(prefixes)
    for prefix in prefixes:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", prefix), prefix
        assert "__" not in prefix and not prefix.endswith("_")
        assert prefix not in _CXX_KEYWORDS
    camels = {camel_prefix(p) for p in set(prefixes)}
    assert len(camels) == len(set(prefixes))


def test_models_with_odd_names_compile_and_link_into_one_program(tmp_path):
    data = (DATA / "mlp_float.tflite").read_bytes()
    names = [*ODD_NAMES, "digits_cnn", "digits-cnn"]
    includes, uses, sources = [], [], []
    for name in names:
        generated = firmware_sources(data, name, arena_bytes=1000)
        directory = tmp_path / generated.prefix
        write_firmware(directory, data, name, arena_bytes=1000)
        sources.append(directory / "model_data.cc")
        camel = camel_prefix(generated.prefix)
        includes += [f'#include "{generated.prefix}/{f}"' for f in ("model_data.h", "model_ops.h")]
        uses += [
            f"  {{ {camel}OpResolver r; if ({camel}RegisterOps(r) != kTfLiteOk) return 1; }}",
            f"  total += g_{generated.prefix}_model_data_len + k{camel}TensorArenaSize;",
        ]
    main_cc = tmp_path / "main.cc"
    main_cc.write_text(
        "\n".join(["#include <cstdio>", *includes, "int main() {", "  unsigned long total = 0;",
                   *uses, '  std::printf("%lu\\n", total);', "  return 0;", "}", ""])
    )  # fmt: skip
    output = compile_and_run(tmp_path, [main_cc, *sources])
    assert int(output) == len(names) * (len(data) + 1008)


def test_every_input_and_output_gets_its_constants(tmp_path):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((DATA / "cnn_int8.tflite").read_bytes(), 0)
    graph = model.subgraphs[0]
    graph.inputs, graph.outputs = [graph.inputs[0], graph.outputs[0]], [graph.outputs[0], 1]
    builder = flatbuffers.Builder(8192)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    info = read_model(data)
    write_firmware(tmp_path / "two", data, "two", arena_bytes=64)
    main_cc = tmp_path / "main.cc"
    main_cc.write_text(
        '#include <cstdio>\n#include "two/model_data.h"\n'
        "int main() {\n"
        '  std::printf("%d %d %d %d %d %d\\n", kTwoInputCount, kTwoOutputCount,\n'
        "              kTwoInput1ElementCount, kTwoInput1Dims[1], kTwoOutput1DimsCount,\n"
        "              kTwoOutput1ZeroPoint);\n"
        "}\n"
    )
    output = compile_and_run(tmp_path, [main_cc, tmp_path / "two" / "model_data.cc"])
    second_in, second_out = info.input_tensors[1], info.output_tensors[1]
    expected = [2, 2, int(np.prod(second_in.shape)), second_in.shape[1], len(second_out.shape),
                second_out.zero_point[0] if second_out.zero_point else 0]  # fmt: skip
    assert [int(v) for v in output.split()] == expected


def test_include_guards_and_symbols_differ_between_models():
    data = (DATA / "mlp_float.tflite").read_bytes()
    a = firmware_sources(data, "kws", arena_bytes=100).files
    b = firmware_sources(data, "vww", arena_bytes=100).files
    for name in ("model_data.h", "model_ops.h"):
        guard_a = re.search(r"#ifndef (\w+)", a[name]).group(1)
        guard_b = re.search(r"#ifndef (\w+)", b[name]).group(1)
        assert guard_a != guard_b
    assert "g_kws_model_data" in a["model_data.cc"] and "g_vww_model_data" in b["model_data.cc"]


def test_guide_code_is_what_firmware_md_shows():
    data = (DATA / "cnn_int8.tflite").read_bytes()
    files = firmware_sources(data, "digits", arena_bytes=4096).files
    assert "\n".join(guide_code("digits", read_model(data))) + "\n" == _code_block(
        files["FIRMWARE.md"]
    )
    assert "4,096 bytes" in files["FIRMWARE.md"] and "arena_used_bytes()" in files["FIRMWARE.md"]


@pytest.mark.parametrize("arena", [-1, 1.5, True])
def test_bad_arena_figure_is_a_config_error(arena):
    with pytest.raises(ConfigError, match="arena_bytes"):
        firmware_sources((DATA / "mlp_float.tflite").read_bytes(), "m", arena_bytes=arena)


def test_generation_is_deterministic():
    data = (DATA / "cnn_int8.tflite").read_bytes()
    first = firmware_sources(data, "digits", arena_bytes=2752).files
    assert firmware_sources(data, "digits", arena_bytes=2752).files == first


def test_report_emit_c_writes_the_files_with_the_measured_arena(tmp_path, capsys):
    model = tmp_path / "digits cnn.tflite"
    model.write_bytes(lut_compressed_cnn())
    out_dir = tmp_path / "fw"
    code = main(["report", str(model), "--target", "cortex-m7", "--format", "json",
                 "--emit-c", str(out_dir)])  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == 0
    arena = json.loads(stdout)["targets"][0]["ram"]["arena_bytes"]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "FIRMWARE.md", "model.tflite", "model_data.cc", "model_data.h", "model_ops.h",
    ]  # fmt: skip
    assert (out_dir / "model.tflite").read_bytes() == model.read_bytes()  # for edge-prune device
    header = (out_dir / "model_data.h").read_text()
    expected = -(-arena // 16) * 16
    camel = camel_prefix(c_identifier("digits cnn"))  # DigitsCnn<hash>
    assert f"constexpr unsigned int k{camel}TensorArenaSize = {expected};" in header
    assert "resolver.AddDecode()" in (out_dir / "model_ops.h").read_text()
    assert f"firmware files for '{c_identifier('digits cnn')}' written" in stderr


def test_report_emit_c_into_a_file_is_a_config_error(tmp_path, capsys):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    code = main(["report", str(DATA / "mlp_float.tflite"), "--target", "cortex-m7",
                 "--emit-c", str(blocker)])  # fmt: skip
    assert code == 2
    assert "--emit-c" in capsys.readouterr().err


# Moved from test_artifacts.py with the C array.


def test_c_array_is_aligned_sized_and_holds_every_byte():
    model = bytes(range(256)) * 3 + b"\x07"
    sources = c_array_sources(model, "digits_cnn")
    source, header = sources["model_data.cc"], sources["model_data.h"]
    assert "alignas(16) const unsigned char g_digits_cnn_model_data[]" in source
    assert f"const unsigned int g_digits_cnn_model_data_len = {len(model)};" in source
    values = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", source)]
    assert bytes(values) == model
    assert "extern const unsigned char g_digits_cnn_model_data[];" in header
    assert header.count("#ifndef EDGE_PRUNE_DIGITS_CNN_MODEL_DATA_H_") == 1


@pytest.mark.parametrize(
    ("name", "ident"),
    [("digits_cnn", "digits_cnn"), ("digits-cnn v2", "digits_cnn_v2_"), ("3d", "m_3d_"),
     ("", "model_")],
)  # fmt: skip
def test_c_identifier_is_valid_c(name, ident):
    got = c_identifier(name)
    assert got == ident if not ident.endswith("_") else re.fullmatch(ident + "[0-9a-f]{8}", got)


def test_names_that_fold_alike_give_different_c_identifiers():
    assert c_identifier("digits-cnn") != c_identifier("digits_cnn") == "digits_cnn"
    assert c_identifier("été") != c_identifier("ete!") != c_identifier("ete")


def test_run_starts_a_stateful_model_from_zero_state_and_a_stateless_one_as_before():
    """A converted LSTM keeps state in variable tensors across Invoke(); the host resets it
    before each sample, so FIRMWARE.md's Run must too (else the device differs from sample 2)."""
    import dataclasses

    from edge_prune.measurement.firmware import guide_code
    from edge_prune.measurement.tflite_file import read_model

    info = read_model(DATA_DIR / "cnn_int8.tflite")
    assert "Reset()" not in "\n".join(guide_code("cnn", info))
    state = dataclasses.replace(info.tensors[0], is_variable=True)
    stateful = dataclasses.replace(info, tensors=(state, *info.tensors[1:]))
    assert stateful.has_state
    code = "\n".join(guide_code("cnn", stateful))
    assert "if (interpreter->Reset() != kTfLiteOk) return kTfLiteError;" in code
    assert code.index("interpreter->Reset()") < code.index("return interpreter->Invoke();")
