"""Sparsity sweep: the accuracy / flash trade-off of one model on one target, as table and plot.

The dense model is trained once (seeded); for each final sparsity the pipeline's later stages run
from it: magnitude pruning (polynomial decay) → strip → clustering → conversion to int8 (dense
storage, TFLM sparse encoding, clustered + TFLM compression) → every artifact run on TFLM over the
held-out set → the deployable artifact chosen as ``edge-prune model`` chooses it (the smallest
that runs on TFLM within the accuracy tolerance, preferring those that fit the target) → its
footprint checked against the target.

The answer of a sweep is the *marked* sparsity, chosen by the rule ``search`` uses
(:func:`edge_prune.search.choose_point`): the least flash needed among the sparsities whose
deployable artifact stays within ``select.tolerance_points`` of the baseline (the dense model as a
float32 flatbuffer on TFLM, as in ``edge-prune model``) and fits the target (flash and RAM, as in
``edge-prune report``). A higher sparsity is not a smaller deployable by itself: when its
clustered artifact falls out of the tolerance, the int8 one it falls back to is larger.

Files written to ``OUT/sweep-<target>/`` (staged, swapped in whole): ``sweep.md``, ``sweep.csv``,
``sweep.json`` and ``sweep.png`` (needs matplotlib, the ``plot`` extra; skipped with a message
when it is missing).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_prune.errors import ConfigError, DataError
from edge_prune.runner import Progress, quiet, run_stages, stderr_progress
from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.pipeline import BuildState, Inputs

__all__ = [
    "DEFAULT_SPARSITIES",
    "SweepPoint",
    "SweepResult",
    "parse_fractions",
    "parse_sparsities",
    "render_csv",
    "render_plot",
    "render_table",
    "run_sweep",
    "write_sweep",
]

DEFAULT_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
FLASH_BUDGET_WHAT = (
    "flash left for the model flatbuffer: part flash - reserved flash - TFLM runtime code "
    "(the target's measured figure, or edge-prune's per-op estimate for the ops used)"
)
BASELINE_WHAT = "the dense model before pruning, as a float32 flatbuffer, run on TFLM"
FITS_WHAT = (
    "fits = flatbuffer + TFLM runtime code + reserved flash <= part flash, and TFLM arena "
    "(the larger of the 64-bit host figure and the 32-bit estimate) + reserved RAM <= part RAM"
)


def parse_sparsities(text: str, argument: str = "--sparsities") -> tuple[float, ...]:
    """``"0,0.5,0.9"`` → ``(0.0, 0.5, 0.9)``: each in [0, 1), no repeats, sorted ascending."""
    return parse_fractions(text, argument)


def parse_fractions(
    text: str, argument: str, what: str = "a final sparsity", *, sort: bool = True
) -> tuple[float, ...]:
    """Comma-separated fractions in [0, 1), no repeats (sorted ascending when ``sort``);
    errors name ``argument`` and say what the value is (``what``)."""
    explain = {
        "a final sparsity": "a final sparsity is the fraction of weights set to zero (0.9 = 90%)",
        "a channel ratio": "a channel ratio is the fraction of channels removed (0.5 = half)",
    }.get(what, f"each value is {what}")
    items = [item.strip() for item in str(text).split(",")]
    if not text or not all(items):
        raise ConfigError(
            f"{argument}: got {text!r}; expected comma-separated fractions in [0, 1), "
            "e.g. 0,0.5,0.8,0.9"
        )
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(
                f"{argument}: {item!r} is not a number; expected fractions in [0, 1) "
                "separated by commas, e.g. 0,0.5,0.8,0.9"
            ) from None
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{argument}: {item} is outside [0, 1); {explain}")
        values.append(value)
    if len(set(values)) != len(values):
        repeated = sorted({v for v in values if values.count(v) > 1})
        raise ConfigError(f"{argument}: {', '.join(map(str, repeated))} given more than once")
    return tuple(sorted(values)) if sort else tuple(values)


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SweepPoint:
    """One final sparsity: its artifacts, their TFLM accuracy and the target verdict.

    Accuracies are top-1 fractions on the held-out set (``*_tflm``: the int8 flatbuffer run by
    the TFLM interpreter). Sizes are flatbuffer bytes. ``compressed_*`` is None when clustering
    is off.
    ``deployable`` is None when no artifact runs on TFLM within the tolerance; then the
    ``deployable_*`` and verdict fields are None/False and ``choice`` says why.
    """

    final_sparsity: float  # asked
    measured_sparsity: float  # zeros / weights of the pruned layers' kernels and biases
    pruned_keras_accuracy: float
    int8_bytes: int
    int8_tflm_accuracy: float | None
    sparse_bytes: int
    sparse_runs_on_tflm: bool
    compressed_bytes: int | None
    compressed_tflm_accuracy: float | None
    deployable: str | None
    deployable_bytes: int | None
    deployable_tflm_accuracy: float | None
    arena_bytes: int | None
    runtime_flash_bytes: int | None
    flash_needed_bytes: int | None
    ram_needed_bytes: int | None
    fits_target: bool
    choice: str
    seconds: float

    @property
    def within_tolerance(self) -> bool:
        return self.deployable is not None

    @property
    def eligible(self) -> bool:
        """Within the accuracy tolerance on TFLM and fits the target."""
        return self.within_tolerance and self.fits_target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_tolerance": self.within_tolerance}


@dataclass(frozen=True)
class SweepResult:
    """A whole sweep. ``flash_budget_bytes``: see :data:`FLASH_BUDGET_WHAT`."""

    target_name: str
    target_part: str
    flash_bytes: int
    reserved_flash_bytes: int
    runtime_flash_bytes: int
    runtime_flash_kind: str  # "measured on device (target file)" or "estimate"
    model_name: str
    data_source: str
    test_samples: int
    dense_keras_accuracy: float
    baseline_accuracy: float  # the dense model as float32 flatbuffer on TFLM
    tolerance_points: float
    points: tuple[SweepPoint, ...]
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def flash_budget_bytes(self) -> int:
        return self.flash_bytes - self.reserved_flash_bytes - self.runtime_flash_bytes

    @property
    def best(self) -> SweepPoint | None:
        """The point needing the least flash among those within the tolerance that fit the
        target (ties: less RAM, then the lower sparsity), if any."""
        from edge_prune.search import choose_point

        return choose_point(self.points)

    @property
    def accuracy_floor(self) -> float:
        """Lowest TFLM accuracy within the tolerance (a fraction; may be below 0)."""
        return self.baseline_accuracy - self.tolerance_points / 100.0

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "target": self.target_name,
            "part": self.target_part,
            "model": self.model_name,
            "data": {"source": self.data_source, "test_samples": self.test_samples},
            "dense_keras_accuracy": self.dense_keras_accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "baseline_what": BASELINE_WHAT,
            "tolerance_points": self.tolerance_points,
            "flash_budget": {
                "what": FLASH_BUDGET_WHAT,
                "bytes": self.flash_budget_bytes,
                "part_flash_bytes": self.flash_bytes,
                "reserved_flash_bytes": self.reserved_flash_bytes,
                "runtime_flash_bytes": self.runtime_flash_bytes,
                "runtime_flash_kind": self.runtime_flash_kind,
            },
            "fits_what": FITS_WHAT,
            "best_sparsity": None if best is None else best.final_sparsity,
            "best": None if best is None else best.to_dict(),
            "points": [p.to_dict() for p in self.points],
            "config": self.config,
            "versions": self.versions,
            "seconds": self.seconds,
        }

    def conclusion(self) -> str:
        best = self.best
        head = (
            f"Least flash within {_points(self.tolerance_points)} of the dense accuracy "
            f"({self.baseline_accuracy:.2%}) on TFLM that fits {self.target_name}: final sparsity "
        )
        if best is None:
            return head + "none of the sparsities swept."
        return head + (
            f"{best.final_sparsity:g} ({best.deployable}, {best.deployable_bytes:,} B "
            f"flatbuffer, TFLM accuracy {best.deployable_tflm_accuracy:.2%})."
        )

    def to_markdown(self) -> str:
        return render_table(self, markdown=True)

    def __str__(self) -> str:
        return render_table(self, markdown=False)


# ------------------------------------------------------------------------------- rendering


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


_COLUMNS = (
    ("final sparsity", "final_sparsity"),
    ("measured", "measured_sparsity"),
    ("pruned Keras acc", "pruned_keras_accuracy"),
    ("int8 B", "int8_bytes"),
    ("int8 TFLM acc", "int8_tflm_accuracy"),
    ("sparse B", "sparse_bytes"),
    ("compressed B", "compressed_bytes"),
    ("compressed TFLM acc", "compressed_tflm_accuracy"),
    ("deployable", "deployable"),
    ("deployable B", "deployable_bytes"),
    ("arena B", "arena_bytes"),
    ("flash needed B", "flash_needed_bytes"),
    ("fits", "fits_target"),
    ("mark", None),
)


def _cell(key: str | None, point: SweepPoint, best: SweepPoint | None) -> str:
    if key is None:
        return "<- best" if point is best else ""
    value = getattr(point, key)
    if value is None:
        return "-"
    if key == "final_sparsity":
        return f"{value:g}"
    if key == "measured_sparsity":
        return f"{value:.1%}"
    if key.endswith("accuracy"):
        return f"{value:.2%}"
    if key.endswith("bytes"):
        return f"{value:,}"
    if key == "fits_target":
        return "yes" if value else "no"
    if key == "deployable" and not point.within_tolerance:
        return "none within tolerance"
    return str(value)


def render_table(result: SweepResult, markdown: bool) -> str:
    best = result.best
    header = [name for name, _ in _COLUMNS]
    rows = [[_cell(key, p, best) for _, key in _COLUMNS] for p in result.points]
    if markdown:
        lines = [
            f"# edge-prune sweep: {result.model_name} on {result.target_name}",
            "",
            f"**{result.conclusion()}**",
            "",
            *table_lines(header, rows, markdown=True),
        ]
    else:
        lines = [f"edge-prune sweep: {result.model_name} on {result.target_name}", ""]
        lines += table_lines(header, rows)
        lines += ["", result.conclusion()]
    bullet = "- " if markdown else "Note: "
    lines += [
        "",
        f"{bullet}accuracy: top-1 on {result.test_samples} held-out samples of "
        f"{result.data_source}; baseline {result.baseline_accuracy:.2%} = {BASELINE_WHAT} "
        f"(Keras: {result.dense_keras_accuracy:.2%}); tolerance {result.tolerance_points:g} "
        f"points, so the deployable artifact needs TFLM accuracy >= "
        f"{max(result.accuracy_floor, 0.0):.2%}.",
        f"{bullet}flash budget {result.flash_budget_bytes:,} B = {FLASH_BUDGET_WHAT}: "
        f"{result.flash_bytes:,} - {result.reserved_flash_bytes:,} - "
        f"{result.runtime_flash_bytes:,} ({result.runtime_flash_kind}).",
        f"{bullet}{FITS_WHAT}.",
        f"{bullet}sparse = TFLM's DECODE sparse encodings, which TFLM runs; TFLite's own "
        "sparse encoding (DENSIFY) is not shown: TFLM cannot run it.",
        f"{bullet}deployable: smallest artifact that runs on TFLM within the tolerance "
        "(int8 = dense storage, sparse = int8 with TFLM DECODE pruning/Huffman encodings, "
        "compressed = clustered + TFLM LUT/pruning/Huffman per tensor).",
    ]
    for p in result.points:
        if not p.within_tolerance:
            lines.append(f"{bullet}sparsity {p.final_sparsity:g}: {p.choice}")
    return "\n".join(lines) + "\n"


def render_csv(result: SweepResult) -> str:
    buffer = io.StringIO()
    names = [*SweepPoint.__dataclass_fields__, "within_tolerance", "best"]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    best = result.best
    for p in result.points:
        writer.writerow({**p.to_dict(), "best": p is best})
    return buffer.getvalue()


def render_plot(result: SweepResult) -> bytes:
    """``sweep.png``: TFLM accuracy (left axis) and flash (right axis, log) vs final sparsity.

    Raises ImportError when matplotlib is not installed. Uses the Agg canvas directly, so no
    pyplot state or display is involved.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [p.final_sparsity for p in result.points]
    figure = Figure(figsize=(8.5, 5.0), dpi=110)
    FigureCanvasAgg(figure)
    acc_axis = figure.add_subplot(1, 1, 1)
    flash_axis = acc_axis.twinx()

    def series(attribute: str, scale: float = 1.0):
        values = [getattr(p, attribute) for p in result.points]
        return [math.nan if v is None else v * scale for v in values]

    acc_axis.plot(
        x,
        series("int8_tflm_accuracy", 100),
        "o-",
        color="tab:blue",
        label="int8 (dense storage) on TFLM",
    )
    if any(p.compressed_tflm_accuracy is not None for p in result.points):
        acc_axis.plot(
            x,
            series("compressed_tflm_accuracy", 100),
            "s-",
            color="tab:cyan",
            label="clustered + compressed on TFLM",
        )
    acc_axis.axhline(
        result.baseline_accuracy * 100,
        color="tab:blue",
        linestyle=":",
        linewidth=1,
        label=f"dense float32 on TFLM {result.baseline_accuracy:.2%}",
    )
    if result.accuracy_floor > 0:
        acc_axis.axhline(
            result.accuracy_floor * 100,
            color="tab:red",
            linestyle=":",
            linewidth=1,
            label=f"tolerance: dense - {result.tolerance_points:g} points",
        )
    acc_axis.set_xlabel("final sparsity (fraction of weights pruned)")
    acc_axis.set_ylabel("top-1 accuracy on TFLM, held-out set (%)")

    flash_axis.plot(
        x, series("int8_bytes", 1 / 1024), "^--", color="tab:gray", label="flash: int8 dense"
    )
    flash_axis.plot(
        x,
        series("sparse_bytes", 1 / 1024),
        "v--",
        color="tab:olive",
        label="flash: int8, TFLM sparse encoding (pruning bitmask / Huffman)",
    )
    if any(p.compressed_bytes is not None for p in result.points):
        flash_axis.plot(
            x,
            series("compressed_bytes", 1 / 1024),
            "D--",
            color="tab:green",
            label="flash: clustered + compressed (TFLM DECODE)",
        )
    flash_axis.axhline(
        result.flash_budget_bytes / 1024,
        color="tab:orange",
        linewidth=1.5,
        label=f"flash budget {result.flash_budget_bytes / 1024:,.0f} KiB",
    )
    flash_axis.set_yscale("log")
    flash_axis.set_ylabel("flatbuffer flash (KiB, log scale)")

    best = result.best
    if best is not None:
        acc_axis.axvline(best.final_sparsity, color="tab:green", alpha=0.3, linewidth=6)
        flash_axis.plot(
            [best.final_sparsity],
            [best.deployable_bytes / 1024],
            marker="*",
            markersize=18,
            color="tab:green",
            linestyle="none",
            label=f"best: sparsity {best.final_sparsity:g}",
        )
    handles, labels = [], []
    for axis in (acc_axis, flash_axis):
        h, lab = axis.get_legend_handles_labels()
        handles += h
        labels += lab
    acc_axis.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8
    )
    title = f"{result.model_name} on {result.target_name} ({result.target_part})"
    acc_axis.set_title(title + ("" if best else ": no sparsity within tolerance fits"))
    acc_axis.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def write_sweep(result: SweepResult, out_dir: str | Path, progress: Progress = print) -> Path:
    """Write ``out_dir/sweep-<target>/`` (table, CSV, JSON, PNG) atomically; returns the path."""
    from edge_prune.artifacts import staged_directory

    destination = Path(out_dir) / f"sweep-{result.target_name}"
    try:
        png = render_plot(result)
    except ImportError:
        png = None
        progress("sweep.png skipped: matplotlib is not installed (pip install 'edge-prune[plot]')")
    with staged_directory(destination) as staging:
        (staging / "sweep.md").write_text(result.to_markdown())
        (staging / "sweep.csv").write_text(render_csv(result))
        (staging / "sweep.json").write_text(
            json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        if png is not None:
            (staging / "sweep.png").write_bytes(png)
    return destination


# -------------------------------------------------------------------------------- running


def run_sweep(
    inputs: Inputs,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    progress: Progress | None = None,
    detail: Progress | None = None,
) -> SweepResult:
    """Train once, then prune/cluster/convert/check at each sparsity; see the module docstring.

    ``inputs``: :func:`edge_prune.pipeline.prepare_inputs`. ``progress`` gets one line per
    stage and sparsity, ``detail`` the per-epoch and per-artifact lines (default: dropped).
    The shared stages (dense training, float32 baseline, channel removal) run once; each point
    runs :data:`~edge_prune.pipeline.POINT_STAGES` with its own final sparsity.
    """
    from edge_prune.build_report import versions
    from edge_prune.config import with_overrides
    from edge_prune.pipeline import POINT_STAGES, SHARED_STAGES, BuildState

    progress = progress or stderr_progress
    detail = detail or quiet
    sparsities = parse_sparsities(",".join(str(s) for s in sparsities), "sparsities")
    config, data, target = inputs.config, inputs.data, inputs.target
    if not data.is_classification:
        raise DataError(
            f"{data.source}: the sweep plots top-1 accuracy and needs class ids; for float "
            "targets (regression) use edge-prune model or edge-prune search"
        )
    start = time.perf_counter()
    progress(
        f"edge-prune sweep: final sparsities {', '.join(f'{s:g}' for s in sparsities)} on "
        f"{data.source} for {target.name}"
    )
    shared = run_stages(SHARED_STAGES, BuildState(inputs), _indented(progress))
    progress(
        f"  dense accuracy: Keras {shared.scores['dense_keras']:.2%}, float32 on TFLM "
        f"{shared.baseline_score:.2%}"
    )
    points, runtimes = [], []
    for index, sparsity in enumerate(sparsities, 1):
        progress(
            f"[{index}/{len(sparsities)}] final sparsity {sparsity:g}: prune, cluster, "
            "convert, check on TFLM"
        )
        point_config = with_overrides(config, {"prune.final_sparsity": sparsity}, "sweep")
        state = run_stages(POINT_STAGES, shared.with_config(point_config), detail)
        point, runtime = _sweep_point(state, sparsity)
        points.append(point)
        runtimes.append(runtime)
        progress(f"  {_point_line(point)} ({point.seconds:.0f} s)")

    runtime_bytes, runtime_kind = max(runtimes)  # the largest: the budget line is conservative
    return SweepResult(
        target_name=target.name,
        target_part=target.part,
        flash_bytes=target.flash_bytes,
        reserved_flash_bytes=target.reserved_flash_bytes,
        runtime_flash_bytes=runtime_bytes,
        runtime_flash_kind=runtime_kind,
        model_name=shared.model_name,
        data_source=data.source,
        test_samples=int(len(data.y_test)),
        dense_keras_accuracy=shared.scores["dense_keras"],
        baseline_accuracy=shared.baseline_score,
        tolerance_points=config.select.tolerance_points,
        points=tuple(points),
        config=config.to_dict(),
        versions=versions(),
        seconds=round(time.perf_counter() - start, 1),
    )


def _indented(progress: Progress) -> Progress:
    return lambda message: progress(message if message.startswith("  ") else f"  {message}")


def _point_line(p: SweepPoint) -> str:
    acc = "-" if p.int8_tflm_accuracy is None else f"{p.int8_tflm_accuracy:.2%}"
    line = f"sparsity {p.measured_sparsity:.1%}: int8 {p.int8_bytes:,} B ({acc} on TFLM)"
    if p.compressed_bytes is not None:
        lut_acc = "-" if p.compressed_tflm_accuracy is None else f"{p.compressed_tflm_accuracy:.2%}"
        line += f", compressed {p.compressed_bytes:,} B ({lut_acc})"
    if not p.within_tolerance:
        return line + "; no artifact within tolerance"
    return line + f"; deployable {p.deployable}, {'fits' if p.fits_target else 'does NOT fit'}"


def _sweep_point(state: BuildState, sparsity: float) -> tuple[SweepPoint, tuple[int, str]]:
    """One point from its final state, and the runtime flash figure for the budget line."""
    from edge_prune.footprint import runtime_flash
    from edge_prune.pipeline import POINT_STAGES
    from edge_prune.tflite_file import read_model

    by_name = {a.name: a.check for a in state.artifacts}
    chosen = state.deployable if state.choice else None
    verdict = chosen.verdict if chosen else None
    # The budget line needs the runtime code even when nothing qualified: use the int8 model's ops.
    ops_of = chosen.tflite_bytes if chosen else state.artifact("int8").tflite_bytes
    runtime = runtime_flash(read_model(ops_of).op_types, state.inputs.target)
    lut = by_name.get("int8-clustered-compressed")
    point = SweepPoint(
        final_sparsity=sparsity,
        measured_sparsity=state.sparsity.sparsity,
        pruned_keras_accuracy=state.scores["pruned_keras"],
        int8_bytes=by_name["int8"].flash_bytes,
        int8_tflm_accuracy=by_name["int8"].accuracy,
        sparse_bytes=by_name["int8-sparse"].flash_bytes,
        sparse_runs_on_tflm=by_name["int8-sparse"].runs_on_tflm,
        compressed_bytes=lut.flash_bytes if lut else None,
        compressed_tflm_accuracy=lut.accuracy if lut else None,
        deployable=chosen.name if chosen else None,
        deployable_bytes=chosen.check.flash_bytes if chosen else None,
        deployable_tflm_accuracy=chosen.check.accuracy if chosen else None,
        arena_bytes=verdict.arena_bytes if verdict else None,
        runtime_flash_bytes=verdict.runtime_flash.total_bytes if verdict else None,
        flash_needed_bytes=verdict.flash_needed_bytes if verdict else None,
        ram_needed_bytes=verdict.ram_needed_bytes if verdict else None,
        fits_target=bool(verdict and verdict.fits),
        choice=state.choice.reason if state.choice else state.no_choice,
        seconds=round(sum(state.timings_s.get(s.name, 0.0) for s in POINT_STAGES), 1),
    )
    return point, (runtime.total_bytes, runtime.to_dict()["kind"])
