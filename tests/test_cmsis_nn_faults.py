"""Operators the pinned CMSIS-NN computes wrongly are refused by the verdict (exit 1), never
FITS: a Conv1D whose last output column CMSIS-NN's MVE 1xN convolution gets wrong."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR

from edge_prune.cli import main
from edge_prune.measurement.cmsis_nn_faults import wrong_outputs
from edge_prune.measurement.tflite_file import read_model

CONV1D = DATA_DIR / "conv1d_int8.tflite"  # CONV_2D #1: width 64, kernel 3, stride 2, VALID


def test_the_one_row_convolution_with_a_leftover_column_is_flagged_on_mve_only():
    info = read_model(CONV1D)
    (fault,) = wrong_outputs(info, "mve")
    assert fault.startswith("CONV_2D #1: ") and "arm_convolve_1_x_n_s8" in fault
    assert "input width 64 - kernel width 3" in fault and "stride 2" in fault
    assert wrong_outputs(info, "dsp") == wrong_outputs(info, "none") == ()


@pytest.mark.parametrize(
    "name", ["cnn_int8", "ds_cnn_int8", "resnet8_int8", "default_m4_int8", "mlp_int8_lenet"]
)
def test_models_without_such_a_convolution_are_not_flagged(name):
    assert wrong_outputs(read_model(DATA_DIR / f"{name}.tflite"), "mve") == ()


def _m55(tmp_path, kernels: str):
    path = tmp_path / f"m55-{kernels}.toml"
    text = (DATA_DIR.parent.parent / "targets" / "cortex-m55.toml").read_text()
    path.write_text(f'{text}\ntflm_kernels = "{kernels}"\n')
    return path


def test_the_verdict_refuses_it_with_cmsis_nn_on_an_m55_and_exits_1(tmp_path, capsys):
    target = str(_m55(tmp_path, "cmsis-nn"))
    assert main(["report", str(CONV1D), "--target", target, "--format", "json"]) == 1
    (verdict,) = json.loads(capsys.readouterr().out)["targets"]
    assert verdict["runs_on_tflm"] is False and verdict["fits"] is False
    assert "CONV_2D #1" in verdict["status"]
    assert 'build with tflm_kernels = "reference"' in verdict["status"]
    assert main(["report", str(CONV1D), "--target", str(_m55(tmp_path, "reference"))]) == 0
