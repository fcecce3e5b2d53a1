"""The sparse C++ kernels against TFLM's reference integer kernels, compiled on the host.

tests/native/sparse_kernel_test.cc runs TFLM's reference_integer_ops FullyConnected(PerChannel)
and ConvPerChannel on the dense weights and the sparse kernels on the encoded ones for seeded
random cases from tests/sparse_cases.py, and requires byte-identical outputs (and equal to the
numpy reference). It runs the portable C path and the DSP path (ACLE intrinsics emulated in C),
for int8 weights and for INT4 weights (TFLM's kernels unpack an INT4 filter to int8 first).
Needs g++ and a TFLM tree ($EDGE_PRUNE_TFLM); the cross-compile test needs arm-none-eabi-g++.
Skipped, with the reason, otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sparse_cases import write_cases

from edge_prune.measurement.sparse import native

CASES = 3000
TFLM_SOURCES = (
    "tensorflow/lite/kernels/internal/common.cc",
    "tensorflow/lite/kernels/internal/quantization_util.cc",
    "tensorflow/lite/kernels/internal/runtime_shape.cc",
    "tensorflow/lite/kernels/internal/portable_tensor_utils.cc",
    "tensorflow/lite/micro/micro_log.cc",
    "tensorflow/lite/micro/debug_log.cc",
)
DRIVER = Path(__file__).parent / "native" / "sparse_kernel_test.cc"
CORES = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"],
    "cortex-m55": ["-mcpu=cortex-m55", "-mfloat-abi=hard"],
}


def _tree() -> Path:
    try:
        return native.tflm_tree()
    except Exception as e:  # noqa: BLE001 - any reason to skip is reported
        pytest.skip(f"no TFLM tree: {e}")


def _gxx() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found on PATH")
    return gxx


def _build_driver(tmp_path: Path, tree: Path, extra: list[str]) -> Path:
    exe = tmp_path / ("driver" + "".join(extra).replace("-", "_"))
    kernels = ("edge_prune_sparse.cc", "edge_prune_sparse_int4.cc")
    sources = [str(DRIVER), *(str(native.KERNELS_DIR / k) for k in kernels)]
    sources += [str(tree / s) for s in TFLM_SOURCES if (tree / s).is_file()]
    command = [
        _gxx(),
        "-std=c++17",
        "-O1",
        "-DTF_LITE_STATIC_MEMORY=1",
        *native.WARNINGS,
        *extra,
        *native.include_flags(tree),
        *sources,
        "-o",
        str(exe),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return exe


@pytest.mark.parametrize("weights", ["int8", "int4"])
@pytest.mark.parametrize("path", ["portable", "dsp"])
def test_sparse_kernels_equal_tflm_reference(tmp_path, path, weights):
    tree = _tree()
    extra = ["-DEDGE_PRUNE_SPARSE_EMULATE_DSP"] if path == "dsp" else []
    exe = _build_driver(tmp_path, tree, extra)
    cases = tmp_path / "cases.bin"
    int4 = weights == "int4"
    write_cases(cases, CASES, seed=29 if int4 else 28, int4=int4)
    done = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, check=False)
    assert done.stdout.strip().splitlines()[-1] == f"cases {CASES} compared {CASES} mismatches 0", (
        done.stdout[-3000:] + done.stderr[-2000:]
    )


def test_driver_reports_a_mismatch(tmp_path):
    """The driver is not vacuous: a case whose expected output is altered fails."""
    tree = _tree()
    exe = _build_driver(tmp_path, tree, [])
    cases = tmp_path / "cases.bin"
    write_cases(cases, 1, seed=5)
    data = bytearray(cases.read_bytes())
    data[-1] ^= 0x01  # last byte: the numpy reference's last output value
    cases.write_bytes(bytes(data))
    done = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "mismatches 1" in done.stdout


@pytest.mark.parametrize("core", sorted(CORES))
def test_kernels_cross_compile(tmp_path, core):
    gxx = shutil.which("arm-none-eabi-g++")
    if gxx is None:
        pytest.skip("arm-none-eabi-g++ not found on PATH")
    tree = _tree()
    for source in (*native.SOURCES, *native.INT4_SOURCES):
        obj = tmp_path / (source + ".o")
        command = [
            gxx,
            "-std=c++17",
            "-Os",
            "-mthumb",
            *CORES[core],
            "-fno-exceptions",
            "-fno-rtti",
            "-DTF_LITE_STATIC_MEMORY",
            *native.WARNINGS,
            *native.include_flags(tree),
            "-c",
            str(native.KERNELS_DIR / source),
            "-o",
            str(obj),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{core} {source}: {done.stderr[-3000:]}"
    for kernels in ("edge_prune_sparse.cc.o", "edge_prune_sparse_int4.cc.o"):
        text = subprocess.run(
            ["arm-none-eabi-objdump", "-d", str(tmp_path / kernels)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        uses_dsp = "smlad" in text
        assert uses_dsp == (core != "cortex-m0plus"), f"{core} {kernels}: SMLAD: {uses_dsp}"


def test_sources_are_package_data():
    for name in (*native.HEADERS, *native.INT4_HEADERS, *native.HOST_SOURCES):
        assert (native.KERNELS_DIR / name).is_file(), name
    assert os.path.basename(native.KERNELS_DIR) == "kernels"
