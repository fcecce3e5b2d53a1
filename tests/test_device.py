"""``edge-prune device`` and the edge_prune.measurement.device library.

The parsing tests (map file, make output, resolver header, harness output) and the argument
errors run everywhere. The device tests build TFLM and run QEMU: they need the Arm GNU
toolchain, qemu-system-arm and a TFLM tree named by $EDGE_PRUNE_TFLM, and are skipped, with the
reason, otherwise. Their objects go to the device cache (~/.cache/edge-prune or
$EDGE_PRUNE_DEVICE_CACHE): a cold cache costs a few minutes (cortex-m4 CMSIS-NN and
cortex-m0plus reference, default build type), a warm one seconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.cli import main
from edge_prune.errors import ConfigError, ModelFileError, TflmTreeError, ToolchainError
from edge_prune.measurement.device import build
from edge_prune.measurement.device.config import DeviceConfig, core_from_target
from edge_prune.measurement.device.link import split_sections
from edge_prune.measurement.device.mapfile import Section, parse_map
from edge_prune.measurement.device.measure import parse_harness, quantize_like_firmware
from edge_prune.measurement.device.toolchain import APT_COMMAND, TflmTree, resolve_toolchain

# --------------------------------------------------------------------------- map files

MAP = """\
Archive member included to satisfy reference by file (symbol)

Discarded input sections

 .text.unused   0x00000000       0x40 main.o

Memory Configuration

Linker script and memory map

.text           0x00000000     0x1000
 *(.isr_vector)
 .isr_vector    0x00000000       0x40 startup.o
                0x00000000                g_vectors
 .text.main     0x00000040       0x20 main.o
 .text._ZN6tflite23MicroMutableOpResolverILj2EE9AddConv2DERK16TFLMRegistration
                0x00000060       0x30 main.o
 .text.arm_convolve_s8
                0x00000090      0x100 /c/tflm-x/cfg/gen/obj/third_party_kernels/a/arm_convolve_s8.o
 .text          0x00000190       0x80 /usr/lib/gcc/arm-none-eabi/12.2.1/libc.a(lib_a-memcpy.o)
 *fill*         0x00000210        0x2
 .rodata.g_model_data
                0x00000220      0x200 model_data.o
.data           0x20000000        0x8 load address 0x00001000
 .data.impure   0x20000000        0x8 /usr/lib/libc.a(lib_a-impure.o)
.bss            0x20000008       0x10
 .bss.arena     0x20000008       0x10 main.o
 COMMON         0x20000018        0x4 /usr/lib/libc.a(lib_a-reent.o)
.debug_info     0x00000000     0x5000
 .debug_info    0x00000000     0x5000 main.o
"""


def test_map_parser_keeps_every_placed_section_with_its_region():
    sections = parse_map(MAP)
    by_name = {s.name: s for s in sections}
    assert by_name[".isr_vector"] == Section("startup.o", ".isr_vector", 0x40, "flash")
    wrapped = ".text._ZN6tflite23MicroMutableOpResolverILj2EE9AddConv2DERK16TFLMRegistration"
    assert by_name[wrapped].size == 0x30 and by_name[wrapped].object == "main.o"
    assert by_name[".text"].object == "libc.a(lib_a-memcpy.o)"
    assert by_name[".data.impure"].region == "data"
    assert by_name[".data.impure"].flash_bytes == 8 and by_name[".data.impure"].ram_bytes == 8
    assert by_name["COMMON"].region == "ram" and by_name["COMMON"].flash_bytes == 0
    assert ".text.unused" not in by_name  # discarded by --gc-sections
    assert ".debug_info" not in by_name  # not in the image
    assert "*fill*" not in by_name


def test_map_split_puts_tflm_template_code_and_toolchain_code_only_tflm_needs_in_runtime():
    sections = [
        Section("libtflm.a(kernels/conv.o)", ".text.Eval", 100, "flash"),
        Section("main.o", ".text._ZN6tflite23MicroMutableOpResolverILj2EE3AddEv", 30, "flash"),
        Section("main.o", ".text.main", 20, "flash"),
        Section("model_data.o", ".rodata.g_m_model_data", 500, "flash"),
        Section("libc.a(lib_a-memcpy.o)", ".text", 40, "flash"),
        Section("libm.a(lib_a-sf_exp.o)", ".text", 60, "flash"),
    ]
    baseline = [Section("libc.a(lib_a-memcpy.o)", ".text", 40, "flash")]
    groups = split_sections(sections, baseline, ["model_data.o"])
    assert [s.size for s in groups["model"]] == [500]
    assert sorted(s.size for s in groups["runtime"]) == [30, 60, 100]
    assert sorted(s.size for s in groups["harness"]) == [20, 40]


def test_map_parser_refuses_a_file_that_is_not_a_map():
    with pytest.raises(ValueError, match="not a GNU ld map"):
        parse_map("hello")


# --------------------------------------------------------------------------- TFLM's commands

MAKE_N = """\
mkdir -p /c/gen/obj/core/tensorflow/lite/micro/
/usr/bin/arm-none-eabi-g++ -std=c++17 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -MD \
-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE=\\""ARMCM4".h\\" -Os -I. \
-c tensorflow/lite/micro/micro_interpreter.cc \
-o /c/gen/obj/core/tensorflow/lite/micro/micro_interpreter.o
/usr/bin/arm-none-eabi-gcc -std=c17 -mcpu=cortex-m4 -c x/arm_convolve_s8.c \
-o /c/gen/obj/third_party_kernels/x/arm_convolve_s8.o
/usr/bin/arm-none-eabi-ar rcs /c/gen/lib/libtensorflow-microlite.a
"""


def test_make_output_gives_one_command_per_object_with_its_group(tmp_path):
    from pathlib import Path

    commands = build.parse_make_output(MAKE_N, Path("/c/gen"))
    assert set(commands) == {"tensorflow/lite/micro/micro_interpreter.cc", "x/arm_convolve_s8.c"}
    interpreter = commands["tensorflow/lite/micro/micro_interpreter.cc"]
    assert interpreter.group == "core"
    assert '-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="ARMCM4.h"' in interpreter.argv
    assert commands["x/arm_convolve_s8.c"].group == "third_party_kernels"
    flags = build.harness_flags(commands)
    assert "-c" not in flags.cxx and "-MD" not in flags.cxx and "-Os" in flags.cxx
    assert flags.arch == ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard")


RESOLVER = """\
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddConv2D(
      const TFLMRegistration& registration = Register_CONV_2D()) {
    return AddBuiltin(BuiltinOperator_CONV_2D, registration, ParseConv2D);
  }

  TfLiteStatus AddDecode() {
    const TFLMRegistration& registration = tflite::Register_DECODE();
    return AddCustom("TFLM_DECODE", &registration);
  }

  TfLiteStatus AddWindow() {
    return AddCustom("SignalWindow", tflite::tflm_signal::Register_WINDOW());
  }

  TfLiteStatus AddBuiltin(tflite::BuiltinOperator op, const TFLMRegistration& registration,
                          TfLiteBridgeBuiltinParseFunction parser) {
    return kTfLiteOk;
  }
"""


def test_resolver_header_maps_builtin_and_custom_ops_to_methods_and_registrations(tmp_path):
    header = tmp_path / build.RESOLVER_HEADER
    header.parent.mkdir(parents=True)
    header.write_text(RESOLVER)
    methods = build.resolver_methods(TflmTree(tmp_path, None))
    assert methods == {
        "CONV_2D": ("AddConv2D", "Register_CONV_2D"),
        "TFLM_DECODE": ("AddDecode", "Register_DECODE"),
        "SignalWindow": ("AddWindow", "Register_WINDOW"),
    }
    assert build.op_key("CUSTOM:TFLM_DECODE") == build.op_key("DECODE") == "TFLM_DECODE"


# --------------------------------------------------------------------------- configurations


@pytest.mark.parametrize(
    ("core", "arch"),
    [("Cortex-M4F", "cortex-m4+fp"), ("Cortex-M0+", "cortex-m0plus"), ("Cortex-M33", "cortex-m33"),
     ("Cortex-M7", "cortex-m7"), ("cortex-m55", "cortex-m55")],
)  # fmt: skip
def test_target_core_names_map_to_tflm_arch(core, arch):
    assert core_from_target(core) == arch


def test_xtensa_core_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="Xtensa LX7.*no Arm Cortex-M toolchain"):
        core_from_target("Xtensa LX7")


def test_device_config_checks_its_fields():
    assert DeviceConfig("cortex-m4+fp", "cmsis-nn", "release").name == (
        "cortex-m4+fp_cmsis-nn_release"
    )
    assert DeviceConfig("cortex-m0plus").machine.name == "mps2-an385"  # an M3 machine
    assert "counted on an M3" in DeviceConfig("cortex-m0plus").machine_note
    assert DeviceConfig("cortex-m7").machine.name == "mps2-an500"
    with pytest.raises(ConfigError, match="kernels"):
        DeviceConfig("cortex-m4", "cmsis_nn")
    with pytest.raises(ConfigError, match="build_type"):
        DeviceConfig("cortex-m4", "reference", "debug")


def test_tflm_tree_commit_comes_from_git_or_a_commit_file(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_PRUNE_TFLM_COMMIT", raising=False)
    make = tmp_path / "tensorflow/lite/micro/tools/make"
    for name in ("flatbuffers", "gemmlowp", "ruy"):
        (make / "downloads" / name).mkdir(parents=True)
    (tmp_path / "tensorflow/lite/micro/tools/make/Makefile").write_text("")
    assert TflmTree.from_path(tmp_path).commit is None
    (tmp_path / "TFLM_COMMIT").write_text("90b983c2b3f1480642e040bbd2ddb37b998f3424\n")
    assert TflmTree.from_path(tmp_path).commit.startswith("90b983c2")
    git = tmp_path / ".git"
    (git / "refs/heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs/heads/main").write_text("a" * 40 + "\n")
    assert TflmTree.from_path(tmp_path).commit == "a" * 40


def test_missing_tflm_tree_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_PRUNE_TFLM", raising=False)
    with pytest.raises(TflmTreeError, match="git clone https://github.com/tensorflow/tflite-micro"):
        TflmTree.from_path(None)
    with pytest.raises(TflmTreeError, match="not a TFLM tree"):
        TflmTree.from_path(tmp_path)


def test_missing_toolchain_gives_the_apt_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="apt-get install -y gcc-arm-none-eabi"):
        resolve_toolchain()


# --------------------------------------------------------------------------- CLI errors


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_cli_without_toolchain_exits_2_with_the_apt_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["device", str(DATA_DIR / "cnn_int8.tflite"), "--target", "cortex-m4"])
    assert code == 2
    assert APT_COMMAND in _one_line_error(capsys)


def test_cli_without_tflm_tree_exits_2_saying_how_to_get_it(monkeypatch, tmp_path, capsys):
    import edge_prune.measurement.device.toolchain as toolchain

    monkeypatch.setattr(toolchain, "resolve_toolchain", lambda: None)
    monkeypatch.delenv("EDGE_PRUNE_TFLM", raising=False)
    code = main(["device", str(DATA_DIR / "cnn_int8.tflite"), "--target", "cortex-m4"])
    assert code == 2
    assert "git clone" in _one_line_error(capsys)


def test_cli_refuses_an_xtensa_target_and_bad_sample_counts(capsys):
    model = str(DATA_DIR / "cnn_int8.tflite")
    assert main(["device", model, "--target", "esp32-s3"]) == 2
    assert "esp32-s3" in _one_line_error(capsys)
    assert main(["device", model, "--target", "cortex-m4", "--samples", "0"]) == 2
    assert "--samples" in _one_line_error(capsys)


# --------------------------------------------------------------------------- the harness

HARNESS_OUTPUT = """\
calibration 50000
arena_used_bytes 1812
sample 0 status 0 ticks 12444 out 80ff7f 0102
sample 1 status 0 ticks 12446 out 807f00 0304
probe arena_min 1816 used 1812
DONE
"""


def test_harness_output_is_parsed_into_samples_arena_and_ticks():
    run = parse_harness(HARNESS_OUTPUT)
    assert run.calibration_ticks == 50000 and run.arena_used_bytes == 1812
    assert run.samples[0] == (0, 12444, [bytes([0x80, 0xFF, 0x7F]), bytes([1, 2])])
    assert run.arena_min_bytes == 1816 and run.done and run.problem is None


def test_harness_output_without_done_is_a_problem():
    run = parse_harness(
        "calibration 50000\nFailed to get registration from op code CUSTOM\nsetup failed\n"
    )
    assert run.problem.startswith("SetUp failed") and "SetUp returned nullptr" in run.problem
    assert "TFLM said: Failed to get registration from op code CUSTOM" in run.problem
    assert parse_harness("calibration 1\n", "QEMU did not finish within 5 s").problem.startswith(
        "QEMU did not finish"
    )


def test_a_tflm_halt_ends_the_run_with_what_tflm_logged():
    run = parse_harness(
        "calibration 1\nNode X failed\nTFLM halted: a TFLITE_DCHECK failed (TFLITE_ABORT)\n"
    )
    assert run.problem.startswith("TFLM halted: a TFLITE_DCHECK failed")
    faulted = parse_harness("calibration 1\nAll temp buffers must be freed\n", "QEMU exited")
    assert faulted.problem == "QEMU exited; TFLM said: All temp buffers must be freed"


def _result(**changes):
    from edge_prune.measurement.device.config import DeviceConfig
    from edge_prune.measurement.device.measure import DeviceResult
    from edge_prune.measurement.host_tflm import HostTflm

    values = dict(
        model="m.tflite", target="cortex-m4", config=DeviceConfig("cortex-m4+fp", "cmsis-nn",
        "default"), machine="mps2-an386", size_only_reason=None, samples=1,
        samples_source="x", outputs_equal_host=False, max_abs_score_diff=None,
        model_flash_bytes=1, runtime_flash_bytes=1, runtime_ram_bytes=1, harness_flash_bytes=1,
        groups={}, configured_arena_bytes=1, arena_min_bytes=None, arena_used_bytes=None,
        instructions_per_inference=None, tflm_commit="90b983c2b3f1480642e040bbd2ddb37b998f3424",
        host_tflm=HostTflm("0.dev20260820164721-g90b983c", "90b983c"),
    )  # fmt: skip
    return DeviceResult(**(values | changes))


def test_the_device_report_says_setup_failed_not_no_timer():
    from edge_prune.measurement.device.report import render

    result = _result(
        problem="SetUp failed: FIRMWARE.md's SetUp returned nullptr, no inference ran",
        instructions_missing="no inference ran (SetUp failed)",
    )
    text = render(result, "text")
    assert "no timer" not in text and "n/a (no inference ran (SetUp failed))" in text
    assert "FAIL: SetUp failed" in text
    data = json.loads(render(result, "json"))
    assert data["instructions_missing"] == "no inference ran (SetUp failed)"


def test_the_device_report_names_both_tflm_commits_and_says_when_they_differ():
    from edge_prune.measurement.device.report import render
    from edge_prune.measurement.host_tflm import HostTflm

    same = _result()
    assert same.tflm_commits_differ is False
    assert "the device tree's commit" in render(same, "text")
    other = _result(host_tflm=HostTflm("0.dev20261023182759-g8f6596d", "8f6596d"))
    assert other.tflm_commits_differ is True
    assert "NOT the device tree's commit" in render(other, "text")
    assert json.loads(render(other, "json"))["host_tflm_commit"] == "8f6596d"


def test_a_machine_without_timer_says_why_instructions_are_missing(monkeypatch):
    from dataclasses import replace

    from edge_prune.measurement.device import config
    from edge_prune.measurement.device.config import DeviceConfig
    from edge_prune.measurement.device.measure import _instructions_missing

    an547 = config.MACHINES["mps3-an547"]
    monkeypatch.setitem(config.MACHINES, "mps3-an547", replace(an547, timer_base=None))
    m55 = DeviceConfig("cortex-m55", "reference", "default")
    run = parse_harness("calibration 0\nsample 0 status 0 ticks 0 out 00\nDONE\n")
    assert "mps3-an547" in _instructions_missing(run, m55)
    assert "no timer" in _instructions_missing(run, m55)


def test_host_quantization_rounds_half_away_from_zero_like_lround():
    values = np.array([0.5, -0.5, 1.5, 0.49999997, 1000.0, -1000.0], dtype=np.float32)
    assert quantize_like_firmware(values, 1.0, 0).tolist() == [1, -1, 2, 0, 127, -128]
    assert quantize_like_firmware(np.array([0.0], np.float32), 0.5, -128).tolist() == [-128]


# --------------------------------------------------------------------------- on the device


def _device_reason() -> str | None:
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed ({APT_COMMAND})"
    if not os.environ.get("EDGE_PRUNE_TFLM"):
        return "EDGE_PRUNE_TFLM does not name a TFLM source tree (README 'On the device')"
    try:
        TflmTree.from_path(os.environ["EDGE_PRUNE_TFLM"])
    except TflmTreeError as e:
        return str(e)
    return None


REASON = _device_reason()
needs_device = pytest.mark.skipif(REASON is not None, reason=f"device tests: {REASON}")


def _device_json(capsys, *args) -> tuple[int, dict]:
    code = main(["device", *map(str, args), "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@needs_device
def test_int8_cnn_on_cortex_m4_cmsis_nn_equals_host_and_its_smallest_arena_works(capsys):
    code, result = _device_json(capsys, DATA_DIR / "cnn_int8.tflite", "--target", "cortex-m4")
    assert code == 0
    assert result["machine"] == "mps2-an386" and result["kernels"] == "cmsis-nn"
    assert result["outputs_equal_host"] is True and result["max_abs_score_diff"] == 0
    assert result["samples"] == 8
    # The probe found an arena that allocates and gives the same outputs, no larger than the
    # one FIRMWARE.md's code ran with; arena_used_bytes() is at most that.
    assert 0 < result["arena_used_bytes"] <= result["arena_min_bytes"]
    assert result["arena_min_bytes"] <= result["configured_arena_bytes"]
    assert result["instructions_per_inference"] > 0
    assert result["instructions_per_tick"] == pytest.approx(40, rel=0.01)  # 25 MHz timer
    assert result["model_flash_bytes"] >= (DATA_DIR / "cnn_int8.tflite").stat().st_size
    assert result["runtime_flash_bytes"] > 10_000
    assert set(result["groups"]) == {"model", "runtime", "harness"}


@needs_device
def test_lenet_mlp_equals_host_and_a_second_run_compiles_nothing(capsys):
    model = DATA_DIR / "mlp_int8_lenet_trained.tflite"
    code, first = _device_json(capsys, model, "--target", "cortex-m4", "--samples", "4")
    assert code == 0 and first["outputs_equal_host"] is True
    code, again = _device_json(capsys, model, "--target", "cortex-m4", "--samples", "4")
    assert code == 0
    assert again["compiled_objects"] == 0  # every TFLM object came from the cache
    assert again["runtime_flash_bytes"] == first["runtime_flash_bytes"]


# The cortex-m0plus tests share one small op set (FULLY_CONNECTED, SOFTMAX): fewer objects to
# compile on a cold cache.
M0PLUS_MODEL = DATA_DIR / "mlp_int8_lenet_trained.tflite"


@needs_device
def test_cortex_m0plus_build_is_counted_on_the_m3_machine_and_says_so(capsys):
    code, result = _device_json(capsys, M0PLUS_MODEL, "--target", "cortex-m0plus")
    assert code == 0
    assert result["machine"] == "mps2-an385" and "counted on an M3" in result["machine_note"]
    assert result["outputs_equal_host"] is True
    assert result["instructions_per_inference"] > 10_000
    assert result["runtime_flash_bytes"] > 10_000


@needs_device
def test_a_model_that_does_not_fit_a_tiny_target_exits_1(capsys, target_file):
    tiny = target_file("tiny", core="Cortex-M0+", flash_bytes=16_384, reserved_flash_bytes=0)
    code, result = _device_json(capsys, M0PLUS_MODEL, "--target", tiny)
    assert code == 1
    assert result["fits"] is False


@needs_device
def test_runtime_of_one_op_is_part_of_the_runtime_of_an_op_set():
    from edge_prune.measurement.device import runtime_flash_for_ops

    tree = TflmTree.from_path(os.environ["EDGE_PRUNE_TFLM"])
    config = DeviceConfig("cortex-m0plus")
    framework = runtime_flash_for_ops(tree, config, [])
    dense = runtime_flash_for_ops(tree, config, ["FULLY_CONNECTED"])
    both = runtime_flash_for_ops(tree, config, ["FULLY_CONNECTED", "SOFTMAX"])
    assert 0 < framework.runtime_flash_bytes < dense.runtime_flash_bytes < both.runtime_flash_bytes
    assert any("fully_connected" in s.object for s in dense.sections)
    assert dense.compiler_version.startswith("arm-none-eabi-gcc")


@needs_device
def test_a_runtime_link_of_a_sparse_op_counts_its_kernel_objects_with_the_runtime():
    from edge_prune.measurement.device import runtime_flash_for_ops

    tree = TflmTree.from_path(os.environ["EDGE_PRUNE_TFLM"])
    config = DeviceConfig("cortex-m0plus")
    dense = runtime_flash_for_ops(tree, config, ["FULLY_CONNECTED"])
    both = runtime_flash_for_ops(tree, config, ["FULLY_CONNECTED", "CUSTOM:EDGE_PRUNE_SPARSE_FC"])
    objects = {s.object for s in both.sections}
    assert {"edge_prune_sparse.o", "edge_prune_sparse_ops.o"} <= objects  # stable names
    assert not any(s.object.endswith("sparse_ops.o") for s in dense.sections)
    kernel = sum(s.flash_bytes for s in both.sections if s.object.startswith("edge_prune_sparse"))
    # the sparse FC shares QuantizeMultiplier and the rest with FULLY_CONNECTED: what it adds
    # beside it is its own objects and at most a little TFLM/libgcc code
    assert kernel <= both.runtime_flash_bytes - dense.runtime_flash_bytes < kernel + 2_000


def _compared(model_file: str, host_values: np.ndarray, device_bytes: bytes):
    import importlib
    from pathlib import Path

    from edge_prune.measurement.tflite_file import read_model

    m = importlib.import_module(
        "edge_prune.measurement.device.measure"
    )  # the module, not measure()

    info = read_model(DATA_DIR / model_file)
    tensor = info.output_tensors[0]
    model = m._Model(Path(model_file), b"", info, "x", {}, None)
    host = m._Host([[host_values.tobytes()]], [[m._dequantize(host_values, tensor)]], 0)
    run = parse_harness(
        f"calibration 1\nsample 0 status 0 ticks 1 out {device_bytes.hex()}\nDONE\n"
    )
    return m._compare(run, host, model)


def test_float_outputs_within_tolerance_pass_but_are_not_called_equal():
    host = np.array([0.25, 0.5, 0.125, 0.125], dtype="<f4")
    assert _compared("mlp_float.tflite", host, host.tobytes()) == (True, True, 0.0)
    ulp = np.nextafter(host, np.float32(1)).astype("<f4")
    equal, close, diff = _compared("mlp_float.tflite", host, ulp.tobytes())
    assert (equal, close) == (False, True) and 0 < diff < 1e-6
    far = (host + np.float32(0.01)).astype("<f4")
    assert _compared("mlp_float.tflite", host, far.tobytes())[:2] == (False, False)


def test_int8_outputs_must_be_equal_byte_for_byte():
    host = np.array([-128, 0, 5, 127, -1, 3, 2, 1], dtype=np.int8)
    assert _compared("cnn_int8.tflite", host, host.tobytes())[:2] == (True, True)
    off = host.copy()
    off[2] += 1
    equal, close, diff = _compared("cnn_int8.tflite", host, off.tobytes())
    assert (equal, close) == (False, False) and diff == pytest.approx(0.00390625)


def test_an_emit_c_folder_is_a_model_the_device_command_reads(tmp_path):
    """`edge-prune report MODEL --emit-c DIR` writes no .tflite: the model is model_data.cc's
    array."""
    from edge_prune.measurement.device.measure import _load_folder
    from edge_prune.measurement.firmware import firmware_sources

    data = (DATA_DIR / "cnn_int8.tflite").read_bytes()
    for name, text in firmware_sources(data, "cnn", arena_bytes=4096).files.items():
        (tmp_path / name).write_text(text)
    model = _load_folder(tmp_path, *_reference_m4())
    assert model.data == data and model.name == "cnn"
    (tmp_path / "model_data.cc").write_text(
        (tmp_path / "model_data.cc").read_text().replace("0x", "0x0, 0x", 1)
    )
    with pytest.raises(ModelFileError, match="the array holds .* its _len says"):
        _load_folder(tmp_path, *_reference_m4())


def test_a_folder_without_model_or_firmware_files_is_refused_naming_both(tmp_path):
    from edge_prune.measurement.device.measure import _load_folder

    with pytest.raises(ModelFileError, match="model.tflite .* or model_data.cc"):
        _load_folder(tmp_path, *_reference_m4())


def _reference_m4():
    from edge_prune.measurement.targets import load_target

    target = load_target("cortex-m4")
    return target, DeviceConfig(core_from_target(target.core), "reference", "default")


def _processes_naming(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(argv)
    return found


@needs_device
def test_sigkill_of_device_during_a_cold_build_leaves_no_compiler_and_no_trusted_object(
    tmp_path, monkeypatch
):
    """A cold build in a cache of its own: SIGKILL as soon as a compiler runs; within a second
    no process writes into the cache, and every object left is either recorded or rebuilt."""
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "cache"
    env = dict(os.environ, EDGE_PRUNE_DEVICE_CACHE=str(cache))
    argv = [sys.executable, "-m", "edge_prune.cli", "device", str(M0PLUS_MODEL), "--target",
            "cortex-m0plus"]  # fmt: skip
    cli = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(
        "arm-none-eabi" in p for p in _processes_naming(str(cache / "tflm-"))
    ):
        time.sleep(0.05)
    assert cli.poll() is None, "the build ended before a compiler was seen"
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    time.sleep(1.0)
    assert _processes_naming(str(cache)) == []
    for obj in cache.rglob("*.o"):  # a temporary (.tmp-<pid>-...) is never taken for one
        if ".tmp-" not in obj.name:
            assert obj.with_suffix(".cmd").is_file(), f"{obj} kept without its record"
