"""Deployable artifacts: ``build/<target>/`` with the model to flash, its C array and reports.

The directory is staged and swapped in whole (see :mod:`edge_prune.artifacts`): a run that is
interrupted or fails leaves the previous ``build/<target>/`` untouched.

Files written:
  model.tflite            the deployable artifact (runs on TFLM; chosen by size and accuracy)
  model_tensor_names.json tensor names of model.tflite (the flatbuffer diet drops them)
  model_float32.tflite    the dense model before pruning, float32: the accuracy baseline
  model_int8.tflite       pruned int8 model, dense storage
  model_sparse.tflite     pruned int8 model, TFLM sparse encoding (DECODE pruning / Huffman)
  model_densify_tflite_only.tflite  TFLite's sparse encoding: needs DENSIFY, not for TFLM
  model_clustered*.tflite, model_compressed*.tflite  pruned + clustered int8, dense storage
                          and TFLM-compressed (per-tensor quantized Dense: *_per_tensor)
  model_data.cc/.h        model.tflite as a 16-byte-aligned C array, the tensor arena size the
                          verdict uses and the input/output shapes, types and quantization
  model_ops.h             an op resolver registering exactly the ops model.tflite uses
  FIRMWARE.md             the lines of C++ that set up the TFLM interpreter with these files
  report.md, report.json  what was measured, for people and for CI
  heldout.npz             the first held-out samples (x_test, y_test), float32 as the model
                          takes them: what `edge-prune device` runs on the device
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_prune.artifacts import staged_directory
from edge_prune.config import PipelineConfig
from edge_prune.measurement.build_report import BuildReport
from edge_prune.measurement.firmware import verdict_arena_note, write_firmware
from edge_prune.pipeline import run_pipeline
from edge_prune.runner import Progress, stderr_progress
from edge_prune.stages import BuildState, prepare_inputs


@dataclass(frozen=True)
class BuildOutcome:
    """Where the artifacts went and whether the deployable model fits the target."""

    out_dir: Path
    fits: bool
    report: dict[str, Any]


def build_model(
    target: str | Path,
    config: PipelineConfig,
    *,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    out_dir: str | Path = "build",
    allow_lambda: bool = False,
    progress: Progress = stderr_progress,
) -> BuildOutcome:
    """Run the pipeline and write ``out_dir/<target name>/``; see the module docstring."""
    inputs = prepare_inputs(
        target, config, model_path=model_path, data_path=data_path, allow_lambda=allow_lambda
    )
    result = run_pipeline(inputs, progress)
    report = BuildReport.from_state(result)
    destination = Path(out_dir) / inputs.target.name
    with staged_directory(destination) as staging:
        write_artifacts(staging, result, report)
    progress("")
    progress(report.text(result.footprint))
    progress(f"artifacts: {destination}/")
    return BuildOutcome(destination, report.fits, report.to_dict())


def write_artifacts(directory: Path, result: BuildState, report: BuildReport) -> None:
    """Write every artifact into ``directory`` (a staging directory: plain writes suffice)."""
    deployable = result.deployable
    (directory / "model.tflite").write_bytes(deployable.tflite_bytes)
    for artifact in result.artifacts:
        (directory / artifact.file_name).write_bytes(artifact.tflite_bytes)
    names = [
        {"subgraph": sg, "tensor": index, "name": name}
        for (sg, index), name in sorted(deployable.tensor_names.items())
    ]
    (directory / "model_tensor_names.json").write_text(json.dumps(names, indent=1) + "\n")
    write_firmware(
        directory,
        deployable.tflite_bytes,
        result.model_name,
        arena_bytes=deployable.verdict.arena_bytes,
        arena_note=verdict_arena_note(deployable.verdict),
    )
    _write_heldout(directory / HELDOUT_FILE, result)
    (directory / "report.md").write_text(report.markdown(result.footprint))
    report_json = json.dumps(report.to_dict(), indent=2, sort_keys=True)
    (directory / "report.json").write_text(report_json + "\n")


HELDOUT_FILE = "heldout.npz"
HELDOUT_SAMPLES = 64  # small: a few KB for the default model, enough for a device check


def _write_heldout(path: Path, result: BuildState) -> None:
    """The first held-out samples the build scored, for ``edge-prune device``."""
    import zipfile

    import numpy as np

    data = result.inputs.data
    arrays = {
        "x_test": np.asarray(data.x_test[:HELDOUT_SAMPLES], dtype=np.float32),
        "y_test": np.asarray(data.y_test[:HELDOUT_SAMPLES]),
    }
    # An .npz (np.load reads it) with fixed entry dates: the same run gives the same bytes.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
