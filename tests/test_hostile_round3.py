"""Hostile input, round three: FIFOs and devices refused unread on every command, the device
command's sample files and counts, C symbols of look-alike model names, a build directory with
only its model, DENSIFY as a verdict. Refusals are one ``edge-prune: error:`` line, exit 2.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_prune.cli import main
from edge_prune.errors import DataError, ModelFileError, TflmTreeError

measure = importlib.import_module("edge_prune.measurement.device.measure")

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL = DATA_DIR / "cnn_int8.tflite"


@contextlib.contextmanager
def time_limit(seconds: int = 30):
    """Fail instead of hanging when something opens a FIFO."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a FIFO was opened?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_line_error(capsys, *argv) -> str:
    with time_limit():
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("edge-prune: error: "), err
    return err


@pytest.fixture
def no_device(monkeypatch, tmp_path):
    """``edge-prune device`` up to its model and samples: no toolchain or TFLM tree needed."""
    import edge_prune.measurement.device.toolchain as toolchain

    monkeypatch.setattr(toolchain, "resolve_toolchain", lambda: None)
    monkeypatch.setattr(
        toolchain.TflmTree, "from_path", classmethod(lambda cls, p=None: cls(tmp_path, None))
    )


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# ------------------------------------------------------------------------------ FIFOs


def test_a_fifo_given_as_the_model_of_report_is_refused_unread(capsys, tmp_path):
    path = fifo(tmp_path / "model.tflite")
    err = one_line_error(capsys, "report", path, "--target", "cortex-m4")
    assert str(path) in err and "FIFO" in err


def test_a_fifo_given_as_device_data_is_refused_unread(capsys, tmp_path, no_device):
    path = fifo(tmp_path / "x.npz")
    err = one_line_error(capsys, "device", MODEL, "--target", "cortex-m4", "--data", path)
    assert str(path) in err and "FIFO" in err


@pytest.mark.parametrize("name", ["model.tflite", "model_data.cc", "heldout.npz"])
def test_a_fifo_in_a_build_directory_is_refused_unread(capsys, tmp_path, no_device, name):
    from edge_prune.measurement.firmware import write_firmware

    build = tmp_path / "build"
    write_firmware(build, MODEL.read_bytes(), "model", arena_bytes=4096)
    shutil.copy(MODEL, build / "model.tflite")
    (build / name).unlink(missing_ok=True)
    fifo(build / name)
    err = one_line_error(capsys, "device", build, "--target", "cortex-m4")
    assert str(build / name) in err and "FIFO" in err


def test_a_fifo_or_a_device_given_as_a_target_file_is_refused(capsys, tmp_path):
    path = fifo(tmp_path / "board.toml")
    err = one_line_error(capsys, "report", MODEL, "--target", path)
    assert str(path) in err and "FIFO" in err
    err = one_line_error(capsys, "report", MODEL, "--target", "/dev/zero")
    assert "/dev/zero" in err and "character device" in err


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_fifo_given_as_training_data_a_keras_model_or_a_point_record_is_refused(tmp_path, suffix):
    from edge_prune.data import load_npz
    from edge_prune.errors import UnsupportedModelError
    from edge_prune.search.cache import BadCacheEntry, read_point_entry
    from edge_prune.training.model_io import describe_saved_model

    with time_limit():
        with pytest.raises(DataError, match="FIFO"):
            load_npz(fifo(tmp_path / "data.npz"))
        with pytest.raises(UnsupportedModelError, match="FIFO"):
            describe_saved_model(fifo(tmp_path / f"model{suffix}"))
        point = tmp_path / "point"
        point.mkdir()
        fifo(point / "point.json")
        with pytest.raises(BadCacheEntry, match="FIFO"):
            read_point_entry(point, "k", need_files=False)


# ------------------------------------------------------------------------ device --data


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: np.save(p.open("wb"), np.zeros((2, 12, 12, 1))), "a single array (.npy)"),
        (lambda p: _npz(p, x_test=np.float32(3.0)), "shape ()"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not a zip at all"), "not a readable .npz"),
        (lambda p: _npz(p, x_test=np.ones((2, 12, 12, 1), dtype=np.complex64)),
         "finite real numbers"),
        (lambda p: _npz(p, x_test=np.array(["a", "b"])), "finite real numbers"),
        (lambda p: _npz(p, y=np.ones(3)), "expected an array x_test"),
    ],
)  # fmt: skip
def test_bad_device_data_is_a_one_line_error_naming_the_file(
    capsys, tmp_path, no_device, write, expected
):
    path = tmp_path / "x.npz"
    write(path)
    err = one_line_error(capsys, "device", MODEL, "--target", "cortex-m4", "--data", path)
    assert str(path) in err and expected in err


def test_bad_npz_files_never_escape_as_foreign_exceptions(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_test.npy", b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        measure._read_x(path)


@pytest.mark.parametrize("count", ["99999999999999999999", "100000", "1025", "0", "-3", "x"])
def test_sample_counts_beyond_what_the_firmware_holds_are_refused_at_once(capsys, no_device, count):
    err = one_line_error(capsys, "device", MODEL, "--target", "cortex-m4", "--samples", count)
    assert "--samples" in err and "1024" in err or "whole number" in err


def test_a_tflm_tree_on_a_symlink_loop_is_a_one_line_error(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(TflmTreeError, match=str(loop)):
        from edge_prune.measurement.device.toolchain import TflmTree

        TflmTree.from_path(loop)


# ------------------------------------------------------------------- build directories


def _reference_m4():
    from edge_prune.measurement.device.config import DeviceConfig, core_from_target
    from edge_prune.measurement.targets import load_target

    target = load_target("cortex-m4")
    return target, DeviceConfig(core_from_target(target.core), "reference", "default")


def test_a_build_directory_holding_only_its_model_gets_the_files_generated(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(MODEL, build / "model.tflite")
    model = measure._load_model(build, *_reference_m4())
    assert "g_model_model_data" in model.files["model_data.cc"]
    assert model.name == "model"


def test_a_missing_model_in_a_build_directory_names_it(tmp_path):
    with pytest.raises(ModelFileError, match="model.tflite"):
        measure._load_model(tmp_path, *_reference_m4())


def test_look_alike_model_names_get_different_c_symbols():
    from edge_prune.measurement.firmware import c_identifier

    names = ["digits-cnn", "digits_cnn_d6581523", "digits_cnn", "digits cnn"]
    symbols = [c_identifier(n) for n in names]
    assert len(set(symbols)) == len(names), symbols
    assert c_identifier("digits_cnn") == "digits_cnn"


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no Arm toolchain")
def test_densify_does_not_run_on_tflm_as_a_verdict_in_device_as_in_report(
    capsys, tmp_path, sparse_float_path
):
    import edge_prune.measurement.device.toolchain as toolchain

    tree = toolchain.TflmTree(tmp_path, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toolchain.TflmTree, "from_path", classmethod(lambda cls, p=None: tree))
        code = main(["device", str(sparse_float_path), "--target", "cortex-m4"])
    _, err = capsys.readouterr()
    assert code == 1 and "DENSIFY" in err and "does not run on TFLM" in err
    assert main(["report", str(sparse_float_path), "--target", "cortex-m4"]) == 1


# ------------------------------------------------------------------------- target files


def _target(tmp_path: Path, change) -> Path:
    text = (Path(__file__).resolve().parent.parent / "targets" / "cortex-m4.toml").read_text()
    path = tmp_path / "board.toml"
    path.write_text(change(text))
    return path


def _set(key: str, value: str):
    import re

    return lambda text: re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)


def _append(text: str):
    return lambda t: t + "\n" + text + "\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: _set("reserved_flash_bytes", "0")(_set("flash_bytes", "0")(t)),
         "'flash_bytes' is 0"),
        (lambda t: _set("reserved_ram_bytes", "0")(_set("ram_bytes", "0")(t)), "'ram_bytes' is 0"),
        (_set("SOFTMAX", "85\nSOFTMAXX = 1"), "'throughput.us_per_call.SOFTMAXX' is not a TFLite"),
        (_set("CONV_2D", "0.19\nconv2d = 0.1"), "'throughput.macs_per_cycle.conv2d' is not a"),
        (_append("[runtime]\nruntime_flash_bytes = 0"), "'runtime.runtime_flash_bytes' is 0"),
        (_append("[runtime]\nframework_flash_bytes = 0"), "'runtime.framework_flash_bytes' is 0"),
        (_append("[runtime.kernel_flash_bytes]\nCONV = 100"), "'runtime.kernel_flash_bytes.CONV'"),
    ],
)  # fmt: skip
def test_target_files_with_zero_sizes_or_unknown_op_names_are_one_line_errors(
    capsys, tmp_path, change, expected
):
    path = _target(tmp_path, change)
    err = one_line_error(capsys, "report", MODEL, "--target", path)
    assert str(path) in err and expected in err


def test_custom_op_names_in_a_target_file_are_accepted(tmp_path):
    from edge_prune.measurement.targets import load_target

    path = _target(tmp_path, _append('[runtime.kernel_flash_bytes]\n"CUSTOM:TFLM_DECODE" = 8660'))
    assert load_target(path).runtime.kernel_flash_bytes == {"CUSTOM:TFLM_DECODE": 8660}
