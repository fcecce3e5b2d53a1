"""Rendering a search or sweep: the Pareto table as markdown and CSV, the plot, ``best.toml``,
and the output directory ``OUT/search-<target>/`` (staged, swapped in whole): ``pareto.md``,
``pareto.csv``, ``pareto.json``, ``pareto.png``, ``best.toml`` and ``best/`` (as
``build/<target>/``)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge_prune.artifacts import staged_directory
from edge_prune.config import PipelineConfig
from edge_prune.errors import ConfigError
from edge_prune.runner import Progress, stderr_progress
from edge_prune.search.point import SearchPoint
from edge_prune.search.result import SearchResult
from edge_prune.stages.state import ArtifactName
from edge_prune.tables import table_lines


def _columns(result: SearchResult) -> tuple:
    metric = result.metric
    return (
        ("ratio", lambda p: f"{p.structured_ratio:g}"),
        ("sparsity", lambda p: f"{p.final_sparsity:g}"),
        ("clusters", lambda p: str(p.clusters) if p.clusters else "off"),
        ("schedule", lambda p: p.schedule),
        ("artifact", lambda p: p.artifact),
        ("flatbuffer B", lambda p: f"{p.flatbuffer_bytes:,}"),
        ("arena B", lambda p: f"{p.arena_bytes:,}"),
        ("flash needed B", lambda p: f"{p.flash_needed_bytes:,}"),
        ("RAM needed B", lambda p: f"{p.ram_needed_bytes:,}"),
        (f"TFLM {metric.name}", lambda p: metric.format(p.tflm_score)),
        ("loss", lambda p: metric.format_loss(p.loss)),
        ("fits", lambda p: "yes" if p.eligible else ("no" if p.trusted else "no (chance)")),
    )


def render_markdown(result: SearchResult) -> str:
    best, front, metric = result.best, result.pareto, result.metric
    columns = _columns(result)
    header = [name for name, _ in columns] + ["pareto", "mark"]
    ordered = sorted(result.points, key=lambda p: (p.flash_needed_bytes, p.ram_needed_bytes))
    rows = [
        [cell(p) for _, cell in columns]
        + ["yes" if p in front else "", "<- chosen" if p is best else ""]
        for p in ordered
    ]
    lines = [
        f"# edge-prune {result.kind}: {result.model_name} on {result.target_name}",
        "",
        f"**{result.conclusion()}**",
        "",
        *table_lines(header, rows, markdown=True),
        "",
        f"- {metric.name} on TFLM over {result.test_samples} held-out samples of "
        f"{result.data_source}; baseline {metric.format(result.baseline_score)} (the dense "
        f"model as float32 on TFLM); tolerance {result._tolerance_text()}; loss = how much "
        "worse than the baseline.",
        f"- flash needed = flatbuffer + TFLM runtime code + reserved flash "
        f"({result.reserved_flash_bytes:,} B) vs {result.flash_bytes:,} B; RAM needed = "
        "tensor arena on a 32-bit Cortex-M (the verdict's figure for the target's kernels, "
        "derived from TFLM's recorded allocations; with CMSIS-NN plus their scratch buffers "
        "and kernel data, derived per operator) + reserved RAM "
        f"({result.reserved_ram_bytes:,} B) vs {result.ram_bytes:,} B.",
        "- chosen: least flash needed among the points within the tolerance that fit flash "
        "and RAM and score above chance level; pareto: no other point has less flash, less RAM "
        "and a smaller loss at once.",
        f"- {len(result.points)} points ({result.reused_points} from the cache) in "
        f"{result.seconds:.0f} s; Optuna study {result.study.get('name', '?')!r}.",
    ]
    fallbacks = [p for p in result.points if p.build_deploys == ArtifactName.FLOAT32_DENSE]
    if fallbacks:
        lines.append(
            f"- {len(fallbacks)} point(s) have no pruned artifact within the tolerance: their "
            "row shows the pruned artifact that loses least (how far it misses); "
            "`edge-prune model` of such a point would deploy the dense float32 model instead."
        )
    return "\n".join(lines) + "\n"


def render_csv(result: SearchResult) -> str:
    buffer = io.StringIO()
    names = [*(f.name for f in fields(SearchPoint)), "eligible", "pareto", "chosen"]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    best, front = result.best, result.pareto
    for p in result.points:
        writer.writerow({**p.to_dict(), "pareto": p in front, "chosen": p is best})
    return buffer.getvalue()


def render_plot(result: SearchResult) -> bytes:
    """``pareto.png``: flash needed vs TFLM score and RAM needed vs TFLM score, one dot per
    point. The feasible band (within that budget and the tolerance) is shaded in each panel; a
    point drawn in it that misses the *other* budget is a cross labelled so; the chosen point
    is starred. The score axis spans the tolerance band and the points near it
    (:func:`score_axis`); a point beyond it is drawn at its edge as an open triangle. The legend
    sits below the panels, off the points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 5.4), dpi=110)
    FigureCanvasAgg(figure)
    metric = result.metric
    scale = 100.0 if metric.key == "accuracy" else 1.0
    limit = result.score_limit() * scale
    low, high = score_axis(result)
    edge = high if metric.higher_is_better else low
    panels = (
        ("flash needed (KiB)", "flash_needed_bytes", result.flash_bytes, "flash", "RAM"),
        ("RAM needed (KiB)", "ram_needed_bytes", result.ram_bytes, "RAM", "flash"),
    )
    handles: dict[str, Any] = {}
    for index, (label, attribute, budget, what, other) in enumerate(panels, 1):
        axis = figure.add_subplot(1, 2, index)
        levels = (scale, limit, edge, low, high)
        _plot_panel(axis, result, attribute, budget, what, other, levels, handles)
        xs = [getattr(p, attribute) / 1024 for p in result.points] or [1.0]
        right = max(max(xs), budget / 1024) * 1.1
        if right > 20 * min(xs):  # a roomy part: a log axis keeps the points apart
            axis.set_xscale("log")
            axis.set_xlim(min(xs) * 0.8, right)
        else:
            axis.set_xlim(0, right)
        axis.set_ylim(low, high)
        axis.set_xlabel(label)
        unit = " (%)" if metric.key == "accuracy" else ""
        axis.set_ylabel(f"{metric.name} on TFLM{unit}")
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=8)
    figure.suptitle(f"edge-prune {result.kind}: {result.model_name} on {result.target_name}")
    figure.subplots_adjust(bottom=0.26, wspace=0.25)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def score_axis(result: SearchResult) -> tuple[float, float]:
    """The score axis of the plot (percent for accuracy): the tolerance band (baseline to the
    tolerance limit) and the points within three band widths beyond the limit, plus a margin.
    Points further out are drawn at the axis edge, so that one failed point does not squash
    the band where the choice is made."""
    scale = 100.0 if result.metric.key == "accuracy" else 1.0
    baseline, limit = result.baseline_score * scale, result.score_limit() * scale
    band = abs(baseline - limit) or abs(baseline) * 0.01 or 1.0
    worse = -1.0 if result.metric.higher_is_better else 1.0
    far = limit + worse * 3 * band
    scores = [p.tflm_score * scale for p in result.points if math.isfinite(p.tflm_score)]
    shown = [s for s in scores if (s - far) * worse <= 0] + [baseline, limit]
    margin = (max(shown) - min(shown)) * 0.08 or band
    return min(shown) - margin, max(shown) + margin


def _plot_panel(axis, result, attribute, budget, what, other, levels, handles) -> None:
    scale, limit, edge, low, high = levels
    inset = (high - low) * 0.02

    def y(p: SearchPoint) -> float:  # a score beyond the axis is drawn at its edge
        return min(max(p.tflm_score * scale, low + inset), high - inset)

    best = result.best
    fits_other = {"flash": lambda p: p.fits_flash, "RAM": lambda p: p.fits_ram}[other]
    groups = (
        ("fits", "tab:green", "o", lambda p: p.eligible),
        (f"misses {other} (see the {other} panel)", "tab:purple", "x", lambda p: not fits_other(p)),
        ("misses", "tab:gray", "o", lambda p: True),
    )
    left = list(result.points)
    for name, colour, marker, member in groups:
        group = [p for p in left if member(p)]
        left = [p for p in left if p not in group]
        if group:
            handles[name] = axis.scatter(
                [getattr(p, attribute) / 1024 for p in group],
                [y(p) for p in group],
                color=colour,
                marker=marker,
                s=26,
            )
    beyond = [
        p
        for p in result.points
        if math.isfinite(p.tflm_score) and not low + inset <= p.tflm_score * scale <= high - inset
    ]
    if beyond:
        handles["score off the axis (drawn at its edge)"] = axis.scatter(
            [getattr(p, attribute) / 1024 for p in beyond],
            [y(p) for p in beyond],
            facecolors="none",
            edgecolors="black",
            marker="v" if result.metric.higher_is_better else "^",
            s=70,
        )
    if budget > 0:
        xs = [getattr(p, attribute) / 1024 for p in result.points] or [budget / 1024]
        area = [min(min(xs), budget / 1024) * 0.5, budget / 1024]
        handles["feasible band"] = axis.fill_between(
            area, limit, edge, color="tab:green", alpha=0.08
        )
        handles[f"part {what}"] = axis.axvline(budget / 1024, color="tab:orange")
    handles["tolerance limit"] = axis.axhline(limit, color="tab:red", linestyle=":")
    if best is not None:
        handles["chosen"] = axis.scatter(
            [getattr(best, attribute) / 1024],
            [y(best)],
            marker="*",
            s=220,
            color="tab:red",
            zorder=3,
        )


def config_toml(config: PipelineConfig) -> str:
    """``config`` as a TOML file for ``edge-prune model --config``: the keys the user or the
    search set, and the others commented out with their defaults (a key that is set can change
    what the pipeline does, e.g. whether a loaded trained model is trained again)."""
    lines = ["# written by edge-prune search: edge-prune model --config best.toml reproduces it"]
    for section, values in config.to_dict().items():
        lines += ["", f"[{section}]"]
        for key, value in values.items():
            line = f"{key} = {_toml_value(value)}"
            lines.append(line if config.is_set(f"{section}.{key}") else f"# {line} (default)")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"cannot write {value!r} to TOML")
    if isinstance(value, tuple | list):  # prune.block
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_search(
    result: SearchResult,
    point_dirs: dict[str, Path],
    out_dir: str | Path,
    base_config: PipelineConfig,
    progress: Progress = stderr_progress,
) -> Path:
    """Write ``out_dir/<kind>-<target>/`` in one swap; returns it. ``base_config``: the config
    the search started from (``best.toml`` is it with the chosen point's values). A search
    writes ``pareto.*``, a sweep ``sweep.*``."""
    destination = Path(out_dir) / f"{result.kind}-{result.target_name}"
    stem = "pareto" if result.kind == "search" else result.kind
    best = result.best
    with staged_directory(destination) as staging:
        (staging / f"{stem}.md").write_text(render_markdown(result))
        (staging / f"{stem}.csv").write_text(render_csv(result))
        (staging / f"{stem}.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        try:
            (staging / f"{stem}.png").write_bytes(render_plot(result))
        except ImportError:
            progress(f"{stem}.png skipped: matplotlib is not installed (pip install matplotlib)")
        if best is not None:
            (staging / "best.toml").write_text(config_toml(best.spec.config(base_config)))
            shutil.copytree(point_dirs[best.key], staging / "best")
            (staging / "best" / "point.json").unlink()
    return destination
