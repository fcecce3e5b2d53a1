"""The build report of ``make model``: ``report.json`` (for machines) and ``report.md`` / text
(for people). What a run measured: accuracy of every model and artifact, per-layer sparsity,
channels kept, parameters, MACs and the latency estimate, artifacts with their TFLM checks, the
choice and why, the footprint verdict, config and versions.
"""

from __future__ import annotations

import platform
import sys
from typing import TYPE_CHECKING, Any

from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.metrics import Metric
    from edge_prune.pipeline import BuildState
    from edge_prune.report import Report


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


def report_dict(result: BuildState) -> dict[str, Any]:
    """The machine-readable report of one run (``report.json``)."""
    inputs = result.inputs
    data = inputs.data
    footprint = result.footprint
    metric = result.metric
    fits = bool(footprint.fits) and result.untrustworthy is None
    return {
        "target": inputs.target.name,
        "fits": fits,
        "verdict": _verdict(result),
        "untrustworthy": result.untrustworthy,
        "training": result.training,
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
            "task": data.task,
            "classes" if data.is_classification else "target_values": data.num_classes,
        },
        "metric": {"name": metric.name, "higher_is_better": metric.higher_is_better},
        _scores_key(metric): {
            "note": f"{metric.name} on the held-out test set; *_keras by tf_keras, *_tflm by "
            "the TFLM interpreter on the flatbuffer; dense_keras_train on the training set",
            **{k: round(v, 6) for k, v in result.scores.items()},
        },
        "artifacts": [
            {
                "name": a.name,
                "file": a.file_name,
                "description": a.description,
                "compared_with": a.reference,
                **a.check.to_dict(),
            }
            for a in result.artifacts
        ],
        "sizes": result.sizes,
        "choice": result.choice.to_dict(),
        "sparsity": result.sparsity.to_dict(),
        "structured": result.structured.to_dict() if result.structured else None,
        "macs": {k: v.to_dict() for k, v in result.costs.items()},
        "footprint": footprint.to_dict(),
        "config": inputs.config.to_dict(),
        "versions": versions(),
        "timings_s": result.timings_s,
    }


def _scores_key(metric: Metric) -> str:
    """``accuracy`` for classification; the metric's name for regression."""
    return "accuracy" if metric.higher_is_better else metric.name.replace(" ", "_")


def _verdict(result: BuildState) -> str:
    if result.untrustworthy:
        return "DOES NOT PASS (the model has not learned)"
    return "FITS" if result.footprint.fits else "DOES NOT FIT"


def _format_score(report: dict[str, Any], value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if report["metric"]["higher_is_better"] else f"{value:.4g}"


def _score_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    labels = {
        "dense_keras_train": "dense model on the training set (Keras)",
        "dense_keras": "dense model (Keras)",
        "structured_keras": "after structured pruning (Keras)",
        "pruned_keras": "pruned + stripped (Keras)",
        "clustered_keras": "pruned + clustered (Keras)",
    }
    rows = []
    for key, value in report[_report_scores_key(report)].items():
        if key == "note":
            continue
        label = labels.get(key, f"{key.removesuffix('_tflm')} on TFLM")
        rows.append((label, _format_score(report, value)))
    return rows


def _report_scores_key(report: dict[str, Any]) -> str:
    name = report["metric"]["name"]
    return "accuracy" if report["metric"]["higher_is_better"] else name.replace(" ", "_")


def _artifact_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for a in report["artifacts"]:
        runs = "yes" if a["runs_on_tflm"] else f"no ({a.get('missing_op') or 'failed'})"
        arena = f"{a['arena_bytes']:,}" if a.get("arena_bytes") else "-"
        score = a.get("accuracy") if a.get("accuracy") is not None else a.get("error")
        accuracy = _format_score(report, score)
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


def _render(report: dict[str, Any], footprint: Report, markdown: bool) -> str:
    from edge_prune.report import render

    heading = "## " if markdown else ""
    lines = [
        f"{'# ' if markdown else ''}edge-prune build: {report['model']} for {report['target']}",
        "",
        f"Verdict: {report['verdict']} {report['target']}. "
        f"Deployable: model.tflite = {report['deployable']['artifact']}: "
        f"{report['deployable']['reason']}.",
        *([f"Why it does not pass: {report['untrustworthy']}."] if report["untrustworthy"] else []),
        f"Dense model: {report['training']}.",
        "",
        f"{heading}{report['metric']['name'].capitalize()} (held-out, "
        f"{report['data']['test_samples']} samples of {report['data']['source']})",
        "",
        *table_lines(("model", report["metric"]["name"]), _score_rows(report), markdown=markdown),
        "",
        f"{heading}Artifacts",
        "",
        *table_lines(
            (
                "file",
                "flatbuffer bytes",
                "runs on TFLM",
                "arena bytes (64-bit host)",
                f"TFLM {report['metric']['name']}",
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


def report_markdown(report: dict[str, Any], footprint: Report) -> str:
    """``report.md``: ``report`` from :func:`report_dict`, ``footprint`` a ``report.Report``."""
    return _render(report, footprint, markdown=True)


def report_text(report: dict[str, Any], footprint: Report) -> str:
    return _render(report, footprint, markdown=False)
