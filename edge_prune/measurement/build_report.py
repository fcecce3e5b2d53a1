"""The build report of ``make model``: ``report.json`` (for machines) and ``report.md`` / text
(for people). What a run measured: accuracy of every model and artifact, per-layer sparsity,
channels kept, parameters, MACs and the latency estimate, artifacts with their TFLM checks, the
choice and why, the footprint verdict, config and versions.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_prune.measurement.host_tflm import host_tflm
from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.measurement.report import Report
    from edge_prune.measurement.targets import Target
    from edge_prune.stages import Artifact, BuildState


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
    found["tflite-micro commit"] = host_tflm().commit or "not stated"
    found["python"] = platform.python_version()
    found["platform"] = f"{sys.platform}-{platform.machine()}"
    return found


@dataclass(frozen=True)
class Deployable:
    """The file a firmware flashes, the candidate it is, and why it was chosen."""

    artifact: str
    reason: str
    file: str = "model.tflite"


@dataclass(frozen=True)
class BuildReport:
    """The report of one run; :meth:`to_dict` is ``report.json``, :meth:`markdown` ``report.md``.

    Top-level figures are typed fields; the sections made by other modules' ``to_dict``
    (artifacts, choice, sparsity, costs, footprint, config) are kept as their JSON.
    """

    target: str
    fits: bool  # fits the target and the scores are trustworthy
    verdict: str
    untrustworthy: str | None
    training: str
    model: str
    warnings: tuple[str, ...]  # what the verdict says beside it (software float, thin margins)
    deployable: Deployable
    data: dict[str, Any]
    metric_name: str
    higher_is_better: bool
    scores: dict[str, float]  # keys: stages.state.keras_score_key / tflm_score_key
    artifacts: tuple[dict[str, Any], ...]
    sizes: dict[str, Any]
    choice: dict[str, Any]
    sparsity: dict[str, Any]
    structured: dict[str, Any] | None
    dead_units: dict[str, Any] | None
    macs: dict[str, dict[str, Any]]
    footprint: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str]
    timings_s: dict[str, float]

    @classmethod
    def from_state(cls, result: BuildState) -> BuildReport:
        inputs = result.inputs
        data = inputs.data
        metric = result.metric
        return cls(
            target=inputs.target.name,
            fits=bool(result.footprint.fits) and result.untrustworthy is None,
            verdict=_verdict(result),
            warnings=tuple(w for v in result.footprint.verdicts for w in v.warnings),
            untrustworthy=result.untrustworthy,
            training=result.training,
            model=result.model_name,
            deployable=Deployable(result.deployable.name, result.choice.reason),
            data={
                "source": data.source,
                "train_samples": int(len(data.x_train)),
                "test_samples": int(len(data.x_test)),
                "input_shape": list(data.input_shape),
                "task": data.task,
                "classes" if data.is_classification else "target_values": data.num_classes,
                "labels": data.labels_note,
            },
            metric_name=metric.name,
            higher_is_better=metric.higher_is_better,
            scores={str(k): round(v, 6) for k, v in result.scores.items()},
            artifacts=tuple(_artifact_dict(a, inputs.target) for a in result.artifacts),
            sizes=dict(result.sizes),
            choice=result.choice.to_dict(),
            sparsity=result.sparsity.to_dict(),
            structured=result.structured.to_dict() if result.structured else None,
            dead_units=result.dead_units.to_dict() if result.dead_units else None,
            macs={str(k): v.to_dict() for k, v in result.costs.items()},
            footprint=result.footprint.to_dict(),
            config=inputs.config.to_dict(),
            versions=versions(),
            timings_s=dict(result.timings_s),
        )

    @property
    def scores_key(self) -> str:
        """The JSON key of the scores: ``accuracy`` for classification, else the metric's name."""
        return "accuracy" if self.higher_is_better else self.metric_name.replace(" ", "_")

    def to_dict(self) -> dict[str, Any]:
        """``report.json``."""
        return {
            "target": self.target,
            "fits": self.fits,
            "verdict": self.verdict,
            "warnings": list(self.warnings),
            "untrustworthy": self.untrustworthy,
            "training": self.training,
            "model": self.model,
            "deployable": {
                "file": self.deployable.file,
                "artifact": self.deployable.artifact,
                "reason": self.deployable.reason,
            },
            "data": self.data,
            "metric": {"name": self.metric_name, "higher_is_better": self.higher_is_better},
            self.scores_key: {
                "note": f"{self.metric_name} on the held-out test set; *_keras by tf_keras, "
                "*_tflm by the TFLM interpreter on the flatbuffer; dense_keras_train on the "
                "training set",
                **self.scores,
            },
            "artifacts": list(self.artifacts),
            "sizes": self.sizes,
            "choice": self.choice,
            "sparsity": self.sparsity,
            "structured": self.structured,
            "dead_units": self.dead_units,
            "macs": self.macs,
            "footprint": self.footprint,
            "config": self.config,
            "versions": self.versions,
            "timings_s": self.timings_s,
        }

    def markdown(self, footprint: Report) -> str:
        """``report.md``; ``footprint`` is the deployable's
        :class:`edge_prune.measurement.report.Report`."""
        return _render(self, footprint, markdown=True)

    def text(self, footprint: Report) -> str:
        return _render(self, footprint, markdown=False)


def _artifact_dict(a: Artifact, target: Target) -> dict[str, Any]:
    record = {
        "name": a.name,
        "file": a.file_name,
        "description": a.description,
        "compared_with": a.reference,
        "must_equal_outputs_of": a.source,
        **a.check.to_dict(),
    }
    if a.compression is not None:
        record["compression"] = a.compression.to_dict()
    if a.sparse_plan:
        record["sparse_plan"] = a.sparse_plan
    record["cost"] = candidate_cost(a, target)
    return record


def candidate_cost(a: Artifact, target: Target) -> dict[str, Any]:
    """Flash, RAM and time of one candidate on ``target``, side by side, each saying what it is.

    flash = flatbuffer + TFLM runtime code of the candidate's own op set (a DECODE kernel
    included); RAM = its tensor arena as the verdict counts it; time = instructions per
    inference on the target's TFLM build (an estimate calibrated on device runs; None where no
    calibration covers the build or an op).
    """
    from edge_prune.measurement import instructions

    v = a.verdict
    estimate = instructions.estimate(a.tflite_bytes, target) if a.check.runs_on_tflm else None
    runtime = v.runtime_flash if v else None
    return {
        "flatbuffer_bytes": len(a.tflite_bytes),
        "runtime_code_bytes": runtime.total_bytes if runtime else None,
        "runtime_code_kind": runtime.kind if runtime else None,
        "total_flash_bytes": len(a.tflite_bytes) + runtime.total_bytes if runtime else None,
        "total_flash_what": "flatbuffer + TFLM runtime code of this candidate's op set",
        "arena_bytes": v.arena_bytes if v else None,
        "arena_what": "tensor arena the verdict counts (decoded weights included)",
        "instructions_per_inference": (
            estimate.total if estimate and not estimate.not_estimated else None
        ),
        "instructions": estimate.to_dict() if estimate else None,
        "time": a.time.to_dict() if a.time else None,
    }


def _verdict(result: BuildState) -> str:
    if result.untrustworthy:
        return "DOES NOT PASS (the model has not learned)"
    return "FITS" if result.footprint.fits else "DOES NOT FIT"


def _format_score(report: BuildReport, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if report.higher_is_better else f"{value:.4g}"


def _score_rows(report: BuildReport) -> list[tuple[str, str]]:
    labels = {
        "dense_keras_train": "dense model on the training set (Keras)",
        "dense_keras": "dense model (Keras)",
        "structured_keras": "after structured pruning (Keras)",
        "pruned_keras": "pruned + stripped (Keras)",
        "clustered_keras": "pruned + clustered (Keras)",
    }
    rows = []
    for key, value in report.scores.items():
        label = labels.get(key, f"{key.removesuffix('_tflm')} on TFLM")
        rows.append((label, _format_score(report, value)))
    return rows


def _artifact_rows(report: BuildReport) -> list[tuple[str, ...]]:
    rows = []
    for a in report.artifacts:
        runs = "yes" if a["runs_on_tflm"] else f"no ({a.get('missing_op') or 'failed'})"
        cost = a["cost"]
        score = a.get("accuracy") if a.get("accuracy") is not None else a.get("error")
        chosen = " (deployed)" if a["name"] == report.deployable.artifact else ""
        rows.append(
            (
                a["file"] + chosen,
                f"{cost['flatbuffer_bytes']:,}",
                _bytes_or_dash(cost["runtime_code_bytes"]),
                _bytes_or_dash(cost["total_flash_bytes"]),
                _bytes_or_dash(cost["arena_bytes"]),
                _instructions(cost),
                runs,
                _format_score(report, score),
            )
        )
    return rows


def _bytes_or_dash(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _instructions(cost: dict[str, Any]) -> str:
    estimate = cost.get("instructions")
    if not estimate:
        return "-"
    figure = f"{estimate['instructions_per_inference'] / 1e6:.2f} M"
    time = cost.get("time")
    if time:
        bound = ">= " if time["kind"].startswith("lower bound") else ""
        figure += f" / {bound}{time['ms']:.2f} ms"
    if estimate["not_estimated"]:
        return f">= {figure} (not estimated: {', '.join(estimate['not_estimated'])})"
    return figure


def _time_note(report: BuildReport) -> list[str]:
    """What the candidates' time figures are: the kind, and the board's cycles per instruction
    per op type against QEMU's instructions, with their source."""
    times = [a["cost"].get("time") for a in report.artifacts if a["cost"].get("time")]
    if not times:
        return []
    first = times[0]
    factors = {f["op"]: f for t in times for f in t["cycles_per_instruction"]}
    text = f"Time = instructions per inference at {first['clock_hz'] / 1e6:g} MHz"
    if not factors:
        text += ": one cycle per instruction, a lower bound (no board measurement of these ops)."
    else:
        parts = [
            f"{op} {f['used']:g} (board {f['board_cycles_per_mac']:.2f} cycles/MAC vs QEMU "
            f"{f['instructions_per_mac']:.2f} instructions/MAC"
            + (
                ", held at 1: the board is faster than the count allows"
                if f["used"] > f["cycles_per_instruction"]
                else ""
            )
            + ")"
            for op, f in sorted(factors.items())
        ]
        text += (
            f"; the instructions of {', '.join(sorted(factors))} ops are scaled by the board's "
            "cycles per instruction, the others count one cycle each (a figure with none of "
            "the scaled ops is a lower bound, marked >=)."
        )
        source = next(t["board_source"] for t in times if t["board_source"])
        text += f" Cycles per instruction: {'; '.join(parts)}; board figures: {source}."
        if any("+int4" in k for t in times for k in t["scaled_ops"]):
            text += (
                " The board measured int8 kernels: an op with INT4 weights takes its op "
                "type's int8 factor (its instructions are QEMU's, its cycles per instruction "
                "are not measured)."
            )
        if any(k.startswith("EDGE_PRUNE_SPARSE") for t in times for k in t["scaled_ops"]):
            text += (
                " edge-prune's sparse kernels take the factor of the dense op they replace "
                "(FULLY_CONNECTED, CONV_2D): no board measured them; their receptive-field "
                "copy counts one cycle per instruction."
            )
    return [text, ""]


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _encoded_artifact(report: BuildReport) -> dict[str, Any] | None:
    """The deployable if it has per-tensor encodings, else the compressed candidate with the
    least flash (flatbuffer + runtime code), else None."""
    encoded = [a for a in report.artifacts if "tensors" in (a.get("compression") or {})]
    chosen = report.deployable.artifact
    for a in encoded:
        if a["name"] == chosen:
            return a
    flash = [a for a in encoded if a["cost"]["total_flash_bytes"] is not None]
    return min(flash, key=lambda a: a["cost"]["total_flash_bytes"]) if flash else None


def _tensor_lines(report: BuildReport, heading: str, markdown: bool) -> list[str]:
    """Per weight tensor of the deployable, or when it is not compressed of the compressed
    candidate it was weighed against: codec, bytes, bits per weight, decoded arena bytes."""
    artifact = _encoded_artifact(report)
    if artifact is None:
        return []
    compression = artifact["compression"]
    deployed = artifact["name"] == report.deployable.artifact
    title = "model.tflite" if deployed else f"{artifact['file']} (not deployed)"
    rows = [
        (
            _short(t["name"]) or f"#{t['index']}",
            t["codec"] + (f" ({t['detail']})" if t.get("detail") else ""),
            f"{t['bytes_before']:,}",
            f"{t['bytes_after']:,}",
            f"{t['bits_per_weight']:.2f}",
            f"{t['decoded_arena_bytes']:,}" if t["codec"] != "raw" else "-",
            t["reason"],
        )
        for t in compression["tensors"]
    ]
    return [
        f"{heading}Weight encodings of {title} (decoded by TFLM's DECODE operator)",
        "",
        *table_lines(
            ("tensor", "codec", "bytes", "encoded", "bits/weight", "decoded in arena", "why"),
            rows,
            markdown=markdown,
        ),
        "",
        "Each decoded tensor lives in the tensor arena until its consumer has run: compression "
        "trades RAM for flash (the arena figures above include it).",
        "",
    ]


def _sparse_lines(report: BuildReport, heading: str, markdown: bool) -> list[str]:
    """Per layer of the int8-pruned candidate: its encoding, bytes and instructions; then the
    whole-model plans compared (kernel code is shared, so layers are not chosen alone)."""
    artifact = next((a for a in report.artifacts if a.get("sparse_plan")), None)
    if artifact is None:
        return []
    plan = artifact["sparse_plan"]
    deployed = artifact["name"] == report.deployable.artifact
    title = "model.tflite" if deployed else f"{artifact['file']} (not deployed)"

    def count(n) -> str:
        return "-" if n is None else f"{n:,}"

    layers = [
        (
            f"{r['op']} {'x'.join(map(str, r['shape']))}",
            f"{r['zeros']:.1%}",
            r["encoding"],
            f"{r['dense_bytes']:,}",
            f"{r['stored_bytes']:,}",
            count(r["dense_instructions"]),
            count(r["instructions"]),
        )
        for r in plan["layers"]
    ]
    plans = [
        (
            ", ".join(f"{kind} {mode}" for kind, mode in p["modes"].items()),
            f"{p['flatbuffer_bytes']:,}",
            f"{p['runtime_code_bytes']:,}",
            f"{p['flash_bytes']:,}",
            count(p["instructions"]),
            f"{p.get('decoded_arena_bytes', 0):,}",
            "taken" if p["taken"] else ("int8" if p["all_dense"] else ""),
        )
        for p in plan["plans"]
    ]
    return [
        f"{heading}Layers of {title} on edge-prune's sparse kernels",
        "",
        *table_lines(
            ("layer", "zeros", "encoding", "dense B", "stored B", "dense instr.", "instr."),
            layers,
            markdown=markdown,
        ),
        "",
        "Stored bytes: values + index (+ the int32 bias the kernel folds the input offset into). "
        "Instructions: estimated per inference on the target's build. Plans compared (per op "
        "kind: all dense, the layers whose zeros pay alone, all sparse, or all dense with the "
        "filters in TFLM's DECODE codecs; the one with least flash at no more instructions "
        "than int8 is taken; DECODE expands its filters into the arena on every inference, so "
        "it is never faster than dense):",
        "",
        *table_lines(
            (
                "plan",
                "flatbuffer B",
                "runtime code B",
                "= flash B",
                "instructions",
                "decoded copy B",
                "",
            ),  # fmt: skip
            plans,
            markdown=markdown,
        ),
        "",
    ]


def _cost_lines(report: BuildReport, heading: str, markdown: bool) -> list[str]:
    """Parameters, MACs and the latency estimate of the dense and channel-pruned models."""
    rows = []
    for stage, cost in report.macs.items():
        latency = cost.get("latency")
        estimate = f"{latency['total_us'] / 1000:.2f} ms" if latency else "no figures"
        rows.append((stage, f"{cost['total_params']:,}", f"{cost['total_macs']:,}", estimate))
    lines = [f"{heading}Cost per inference", ""]
    header = ("model", "params", "MACs", "latency (MAC estimate, fallback)")
    lines += table_lines(header, rows, markdown=markdown)
    latency = next((c["latency"] for c in report.macs.values() if c.get("latency")), None)
    if latency:
        lines += [
            "",
            f"This latency is a fallback estimate for the Keras models: MACs per op / "
            f"measured MACs per cycle at {latency['clock_hz'] / 1e6:g} MHz "
            f"({latency['source']}); not estimated: "
            f"{', '.join(latency['not_estimated']) or 'none'}. The candidates' time above "
            "(from instructions) is the figure the choice and the budget use.",
        ]
    structured = report.structured
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
    dead = report.dead_units
    if dead and dead["units_removed"]:
        lines += [
            "",
            f"Dead units removed after pruning (same outputs): {dead['units_removed']:,}, "
            f"parameters {dead['params_before']:,} -> {dead['params_after']:,}: "
            + ", ".join(
                f"{layer['name']} {layer['kept']}/{layer['total']}"
                for layer in dead["layers"]
                if layer["kept"] < layer["total"]
            )
            + ".",
        ]
    return [*lines, ""]


def _render(report: BuildReport, footprint: Report, markdown: bool) -> str:
    from edge_prune.measurement.report import render

    heading = "## " if markdown else ""
    lines = [
        f"{'# ' if markdown else ''}edge-prune build: {report.model} for {report.target}",
        "",
        f"Verdict: {report.verdict} {report.target}. "
        f"Deployable: model.tflite = {report.deployable.artifact}: {report.deployable.reason}.",
        *([f"Why it does not pass: {report.untrustworthy}."] if report.untrustworthy else []),
        *(f"Warning: {w}." for w in report.warnings),
        f"Dense model: {report.training}.",
        *([f"Labels: {report.data['labels']}."] if report.data.get("labels") else []),
        "",
        f"{heading}{report.metric_name.capitalize()} (held-out, "
        f"{report.data['test_samples']} samples of {report.data['source']})",
        "",
        *table_lines(("model", report.metric_name), _score_rows(report), markdown=markdown),
        "",
        f"{heading}Artifacts",
        "",
        *table_lines(
            (
                "file",
                "flatbuffer B",
                "runtime code B",
                "= flash B",
                "arena B",
                "instructions",
                "runs on TFLM",
                f"TFLM {report.metric_name}",
            ),
            _artifact_rows(report),
            markdown=markdown,
        ),
        "",
        "Per candidate: flash = flatbuffer + TFLM runtime code of its own op set (the DECODE "
        "kernel of a compressed candidate included; the choice ranks by it), arena = tensor "
        "arena with decoded weights, instructions = per inference on the target's TFLM build, "
        "an ESTIMATE from per-op costs calibrated on QEMU runs (`edge-prune device` measures "
        "them).",
        "",
        *_time_note(report),
        *_tensor_lines(report, heading, markdown),
        *_sparse_lines(report, heading, markdown),
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
                for r in report.sparsity["layers"]
            ]
            + [
                (
                    "total",
                    "",
                    "",
                    f"{report.sparsity['zeros']}/{report.sparsity['total']} "
                    f"({report.sparsity['sparsity']:.1%})",
                )
            ],
            markdown=markdown,
        ),
        "",
        f"{heading}Footprint of model.tflite",
        "",
        render(footprint, "markdown" if markdown else "text"),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
    ]
    return "\n".join(lines) + "\n"
