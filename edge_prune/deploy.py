"""Deployable artifacts: ``build/<target>/`` with the model to flash, its C array and reports.

The directory is staged and swapped in whole (see :mod:`edge_prune.artifacts`): a run that is
interrupted or fails leaves the previous ``build/<target>/`` untouched.

Files written:
  model.tflite            the deployable artifact (runs on TFLM; chosen by size and accuracy)
  model_float32.tflite    the dense model before pruning, float32: the accuracy baseline
  model_int8.tflite       pruned int8 model, dense storage
  model_sparse.tflite     pruned int8 model, sparse-tensor encoding (does not run on TFLM)
  model_int8_lut.tflite   pruned + clustered int8 model, TFLM LUT compression (when enabled)
  model_data.cc/.h        model.tflite as a 16-byte-aligned C array
  report.md, report.json  what was measured, for people and for CI
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_prune.artifacts import c_array_sources, staged_directory
from edge_prune.config import PipelineConfig
from edge_prune.pipeline import PipelineResult, prepare_inputs, run_pipeline, stderr_progress
from edge_prune.tables import table_lines


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
    progress=stderr_progress,
) -> BuildOutcome:
    """Run the pipeline and write ``out_dir/<target name>/``; see the module docstring."""
    inputs = prepare_inputs(
        target, config, model_path=model_path, data_path=data_path, allow_lambda=allow_lambda
    )
    result = run_pipeline(inputs, progress)
    report = report_dict(result)
    destination = Path(out_dir) / inputs.target.name
    with staged_directory(destination) as staging:
        write_artifacts(staging, result, report)
    progress("")
    progress(report_text(report, result.footprint))
    progress(f"artifacts: {destination}/")
    return BuildOutcome(destination, report["fits"], report)


def write_artifacts(directory: Path, result: PipelineResult, report: dict[str, Any]) -> None:
    """Write every artifact into ``directory`` (a staging directory: plain writes suffice)."""
    deployable = result.deployable
    (directory / "model.tflite").write_bytes(deployable.tflite_bytes)
    for candidate in result.candidates:
        (directory / candidate.file_name).write_bytes(candidate.tflite_bytes)
    for name, text in c_array_sources(deployable.tflite_bytes, result.model_name).items():
        (directory / name).write_text(text)
    (directory / "report.md").write_text(report_markdown(report, result.footprint))
    (directory / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = (
        "edge-prune",
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "tflite-micro",
        "numpy",
    )
    found = {name: version(name) for name in names}
    found["python"] = platform.python_version()
    found["platform"] = f"{sys.platform}-{platform.machine()}"
    return found


def report_dict(result: PipelineResult) -> dict[str, Any]:
    """The machine-readable report of one run (``report.json``)."""
    inputs = result.inputs
    data = inputs.data
    footprint = result.footprint
    return {
        "target": inputs.target.name,
        "fits": bool(footprint.fits),
        "model": result.model_name,
        "deployable": {
            "file": "model.tflite",
            "artifact": result.deployable.name,
            "reason": result.choice.reason,
        },
        "data": {
            "source": data.source,
            "train_samples": int(len(data.x_train)),
            "test_samples": int(len(data.x_test)),
            "input_shape": list(data.input_shape),
            "classes": data.num_classes,
        },
        "accuracy": {
            "note": "top-1 on the held-out test set; *_keras by tf_keras, *_tflm by the TFLM "
            "interpreter on the int8 flatbuffer",
            **{k: round(v, 6) for k, v in result.accuracy.items()},
        },
        "artifacts": [
            {
                "name": c.name,
                "file": c.file_name,
                "description": c.description,
                **c.check.to_dict(),
            }
            for c in result.candidates
        ],
        "sizes": result.sizes,
        "choice": result.choice.to_dict(),
        "sparsity": result.sparsity.to_dict(),
        "structured": result.structured.to_dict() if result.structured else None,
        "macs": {k: v.to_dict() for k, v in result.macs.items()},
        "footprint": footprint.to_dict(),
        "config": inputs.config.to_dict(),
        "versions": versions(),
        "timings_s": result.timings_s,
    }


def _accuracy_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    labels = {
        "dense_keras": "dense model (Keras)",
        "structured_keras": "after structured pruning (Keras)",
        "pruned_keras": "pruned + stripped (Keras)",
        "clustered_keras": "pruned + clustered (Keras)",
    }
    rows = []
    for key, value in report["accuracy"].items():
        if key == "note":
            continue
        label = labels.get(key, f"{key.removesuffix('_tflm')} on TFLM")
        rows.append((label, f"{value:.2%}"))
    return rows


def _artifact_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for a in report["artifacts"]:
        runs = "yes" if a["runs_on_tflm"] else f"no ({a.get('missing_op') or 'failed'})"
        arena = f"{a['arena_bytes']:,}" if a.get("arena_bytes") else "-"
        accuracy = f"{a['accuracy']:.2%}" if a.get("accuracy") is not None else "-"
        chosen = (
            " (deployed as model.tflite)" if a["name"] == report["deployable"]["artifact"] else ""
        )
        rows.append((a["file"] + chosen, f"{a['flash_bytes']:,}", runs, arena, accuracy))
    return rows


def _cost_lines(report: dict[str, Any], heading: str, markdown: bool) -> list[str]:
    """Parameters, MACs and the latency estimate of the dense and channel-pruned models."""
    rows = []
    for stage, cost in report["macs"].items():
        latency = cost.get("latency")
        estimate = f"{latency['total_us'] / 1000:.2f} ms" if latency else "no figures"
        rows.append((stage, f"{cost['total_params']:,}", f"{cost['total_macs']:,}", estimate))
    lines = [f"{heading}Cost per inference", ""]
    lines += table_lines(("model", "params", "MACs", "latency (estimate)"), rows, markdown=markdown)
    latency = next((c["latency"] for c in report["macs"].values() if c.get("latency")), None)
    if latency:
        lines += [
            "",
            f"Latency is an estimate: MACs per op / measured MACs per cycle at "
            f"{latency['clock_hz'] / 1e6:g} MHz ({latency['source']}); not estimated: "
            f"{', '.join(latency['not_estimated']) or 'none'}.",
        ]
    structured = report.get("structured")
    if structured:
        lines += [
            "",
            f"Channels kept ({structured['criterion'].upper()} norm): "
            + ", ".join(
                f"{layer['name']} {layer['kept']}/{layer['total']}"
                for layer in structured["layers"]
            )
            + ".",
        ]
    return [*lines, ""]


def _render(report: dict[str, Any], footprint, markdown: bool) -> str:
    from edge_prune.report import render

    heading = "## " if markdown else ""
    lines = [
        f"{'# ' if markdown else ''}edge-prune build: {report['model']} for {report['target']}",
        "",
        f"Verdict: {'FITS' if report['fits'] else 'DOES NOT FIT'} {report['target']}. "
        f"Deployable: model.tflite = {report['deployable']['artifact']}: "
        f"{report['deployable']['reason']}.",
        "",
        f"{heading}Accuracy (held-out, {report['data']['test_samples']} samples of "
        f"{report['data']['source']})",
        "",
        *table_lines(("model", "top-1"), _accuracy_rows(report), markdown=markdown),
        "",
        f"{heading}Artifacts",
        "",
        *table_lines(
            (
                "file",
                "flatbuffer bytes",
                "runs on TFLM",
                "arena bytes (64-bit host)",
                "TFLM accuracy",
            ),
            _artifact_rows(report),
            markdown=markdown,
        ),
        "",
        *_cost_lines(report, heading, markdown),
        f"{heading}Sparsity of the pruned model",
        "",
        *table_lines(
            ("layer", "weight", "shape", "sparsity"),
            [
                (
                    r["layer"],
                    r["weight"],
                    "x".join(map(str, r["shape"])),
                    f"{r['zeros']}/{r['total']} ({r['sparsity']:.1%})",
                )
                for r in report["sparsity"]["layers"]
            ]
            + [
                (
                    "total",
                    "",
                    "",
                    f"{report['sparsity']['zeros']}/{report['sparsity']['total']} "
                    f"({report['sparsity']['sparsity']:.1%})",
                )
            ],
            markdown=markdown,
        ),
        "",
        f"{heading}Footprint of model.tflite",
        "",
        render(footprint, "markdown" if markdown else "text"),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    return "\n".join(lines) + "\n"


def report_markdown(report: dict[str, Any], footprint) -> str:
    """``report.md``: ``report`` from :func:`report_dict`, ``footprint`` a ``report.Report``."""
    return _render(report, footprint, markdown=True)


def report_text(report: dict[str, Any], footprint) -> str:
    return _render(report, footprint, markdown=False)
