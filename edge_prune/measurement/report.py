"""The footprint report: a model's measured footprint and its verdict on each target.

Renders as text (terminal), markdown (pull requests, ``$GITHUB_STEP_SUMMARY``) or JSON. First
a verdict line per target with flash and RAM bars, then the accounting: what each figure
counts and whether it was measured or estimated. Text and markdown lines are at most
:data:`WIDTH` columns. With a baseline (a previous JSON report) the change of each figure is
shown, and a growth limit turns a large growth into a failure.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError
from edge_prune.measurement.footprint import Footprint, Verdict, measure, verdict_for
from edge_prune.measurement.host_tflm import host_tflm
from edge_prune.measurement.targets import Target, load_target
from edge_prune.measurement.tflite_file import ModelSource
from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.measurement.codecs.verify import DecodeCheck
    from edge_prune.measurement.timing import TimeFigure

FORMATS = ("text", "markdown", "json")
WIDTH = 100
BAR_WIDTH = 30
_HOST_NOTE = (
    "arena inputs: measured by the TFLM interpreter on a 64-bit host (reference kernels); head "
    "(non-persistent tensors) is the same on a 32-bit MCU, tail (persistent structures) is "
    "smaller there; each target's arena (the table's, the verdict's, model_data.h's) is "
    "derived from them for its core and kernel set"
)
_FORMULA = (
    "flash needed = flatbuffer + TFLM runtime code + reserved flash; "
    "RAM needed = tensor arena + reserved RAM; headroom = part size - needed"
)
_EXPECTED_BASELINE = "expected a report written by `edge-prune report --format json`"
# What --fail-on-growth compares: what the model adds, not the target's fixed reservations
# (a 57% larger flatbuffer is a few percent of "flash needed").
GATED_FIGURES = ("flatbuffer", "runtime code", "arena", "instructions")


def runtime_code_bytes(verdict: Verdict) -> int:
    """The TFLM runtime code the report counts for the model's op set on one target: the one
    place the growth gate reads it."""
    return verdict.runtime_flash.total_bytes


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy of the model (a fraction), with where the figure comes from."""

    top1: float
    source: str

    def to_dict(self) -> dict:
        return {"top1": self.top1, "source": self.source}


@dataclass(frozen=True)
class TargetFigures:
    """The figures of one target in a baseline report, bytes (None: TFLM could not run it)."""

    flash_needed_bytes: int
    ram_needed_bytes: int | None
    arena_bytes: int | None
    runtime_bytes: int | None = None  # None: a report from before the figure was written
    instructions: int | None = None  # per inference; None: no figure in that report


@dataclass(frozen=True)
class Baseline:
    """A previous report (``--format json``), read back for the comparison."""

    path: str
    flatbuffer_bytes: int
    targets: dict[str, TargetFigures]
    accuracy: float | None = None


@dataclass(frozen=True)
class Change:
    """One figure of one target (``""`` for the model) in the baseline and now."""

    target: str
    figure: str
    before: float | None
    after: float | None
    unit: str = "B"

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def percent(self) -> float | None:
        if self.delta is None or not self.before:
            return None
        return 100.0 * self.delta / self.before

    def to_dict(self) -> dict:
        return {
            "target": self.target or None,
            "figure": self.figure,
            "unit": self.unit,
            "baseline": self.before,
            "now": self.after,
            "delta": self.delta,
            "delta_percent": None if self.percent is None else round(self.percent, 3),
        }


@dataclass(frozen=True)
class Report:
    footprint: Footprint
    verdicts: tuple[Verdict, ...]
    accuracy: Accuracy | None = None
    baseline: Baseline | None = None
    growth_limit_percent: float | None = None
    decode: DecodeCheck | None = None  # what was checked of the DECODE operators, if any
    times: tuple[TimeFigure | None, ...] = ()  # per verdict, same order
    latency_budget_ms: float | None = None  # --max-latency-ms (a target's latency_ms applies too)
    changes: tuple[Change, ...] = field(init=False, default=())

    def __post_init__(self):
        changes = compare(self, self.baseline) if self.baseline else ()
        object.__setattr__(self, "changes", changes)

    @property
    def fits(self) -> bool:
        """True when the model runs on TFLM and fits every target of the report."""
        return all(v.fits for v in self.verdicts)

    @property
    def growth_failures(self) -> tuple[Change, ...]:
        """What the model adds (:data:`GATED_FIGURES`) that grew by more than the limit."""
        if self.growth_limit_percent is None:
            return ()
        return tuple(
            c
            for c in self.changes
            if c.figure in GATED_FIGURES
            and c.percent is not None
            and c.percent > self.growth_limit_percent
        )

    def time_of(self, index: int) -> TimeFigure | None:
        return self.times[index] if index < len(self.times) else None

    def budget_of(self, verdict: Verdict) -> float | None:
        from edge_prune.measurement.timing import budget_ms

        return budget_ms(verdict.target, self.latency_budget_ms)

    @property
    def time_failures(self) -> tuple[tuple[str, str], ...]:
        """(target, why) for each target whose time budget the model misses."""
        from edge_prune.measurement.timing import over_budget

        failures = []
        for i, v in enumerate(self.verdicts):
            why = over_budget(self.time_of(i), self.budget_of(v))
            if why:
                failures.append((v.target.name, why))
        return tuple(failures)

    @property
    def passes(self) -> bool:
        """Exit 0: fits every target, within every time budget and no growth beyond the limit."""
        return self.fits and not self.growth_failures and not self.time_failures

    def to_dict(self) -> dict:
        data = {
            "fits_all_targets": self.fits,
            "passes": self.passes,
            "summary": _summary(self),
            "footprint": self._footprint_dict(),
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "targets": [
                {
                    **v.to_dict(),
                    "time": _time_dict(self.time_of(i)),
                    "latency_budget_ms": self.budget_of(v),
                }
                for i, v in enumerate(self.verdicts)
            ],
            "time_budget_missed": [{"target": t, "why": w} for t, w in self.time_failures],
            "decode_check": self.decode.to_dict() if self.decode else None,
            "host_tflm": host_tflm().to_dict(),
            "notes": [*_decode_notes(self), *_arena_notes(self), _HOST_NOTE, _FORMULA],
        }
        if self.baseline:
            data["baseline"] = {
                "file": self.baseline.path,
                "flatbuffer_bytes": self.baseline.flatbuffer_bytes,
                "accuracy_top1": self.baseline.accuracy,
            }
            data["delta"] = {
                "changes": [c.to_dict() for c in self.changes],
                "growth_limit_percent": self.growth_limit_percent,
                "grown_beyond_limit": [c.to_dict() for c in self.growth_failures],
            }
        return data

    def _footprint_dict(self) -> dict:
        """The model's own figures. Without a target its runtime code is a bound over every
        build; each target carries the one its verdict uses, so that one goes alone."""
        data = self.footprint.to_dict()
        if self.verdicts:
            data.pop("runtime_flash")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        return render_text(self)

    def to_markdown(self) -> str:
        return render_markdown(self)

    def __str__(self) -> str:
        return render_text(self)


def fit_report(
    model: ModelSource,
    targets: str | Path | Target | list[str | Path | Target],
    *,
    targets_dir: str | Path | None = None,
    accuracy: Accuracy | None = None,
) -> Report:
    """Measure ``model`` once (TFLM in a child process) and give its verdict on each target.

    The one call a training script needs: ``ep.fit_report(ep.convert(model, ...),
    "cortex-m4").fits``. ``model``: flatbuffer bytes, a ``.tflite`` path or what
    :func:`edge_prune.training.convert` returns; ``targets``: a name, a path to a ``.toml`` or a
    :class:`~edge_prune.measurement.targets.Target`, or a list of them. Print the result for the
    text report; ``.fits`` is True when the model runs on TFLM and fits every target.
    """
    if isinstance(targets, (str, Path, Target)):
        targets = [targets]
    loaded = [t if isinstance(t, Target) else load_target(t, targets_dir) for t in targets]
    footprint = measure(model)
    return Report(
        footprint=footprint,
        verdicts=tuple(verdict_for(footprint, t) for t in loaded),
        accuracy=accuracy,
    )


def render(report: Report, fmt: str) -> str:
    renderers = {"text": render_text, "markdown": render_markdown, "json": Report.to_json}
    return renderers[fmt](report)


# ---------------------------------------------------------------------------------------------
# Baseline: read a previous JSON report and compare.


def read_baseline(path: str | Path) -> Baseline:
    """Read a previous ``--format json`` report (or the ``report.json`` of ``edge-prune model``).

    Anything else is a :class:`ConfigError` naming the file and what was expected.
    """
    try:
        data = read_json(path, f"--baseline {path}")
    except FileNotFoundError:
        raise ConfigError(f"--baseline {path}: no such file; {_EXPECTED_BASELINE}") from None
    except ConfigError as e:
        raise ConfigError(f"{e}; {_EXPECTED_BASELINE}") from None
    try:
        return _baseline_from(data, str(path))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(
            f"--baseline {path}: no footprint report in it (missing or malformed {e}); "
            f"{_EXPECTED_BASELINE}"
        ) from e


def read_json(path: str | Path, label: str):
    """Parse a JSON file the user names; ConfigError starting with ``label`` when it is not a
    readable regular file of JSON (nested too deeply and integers too long for Python
    included). FileNotFoundError is raised as it is."""
    from edge_prune.input_files import MAX_TEXT_BYTES, read_input

    try:
        raw = read_input(path, limit=MAX_TEXT_BYTES, error=ConfigError, label=label)
        return json.loads(raw.decode("utf-8"))
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{label}: not JSON (line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ConfigError(f"{label}: JSON nested too deeply") from None
    except ValueError as e:  # an integer of more than 4,300 digits (sys.int_info)
        raise ConfigError(f"{label}: unreadable JSON value ({str(e)[:80]})") from None


def _baseline_from(data: dict, path: str) -> Baseline:
    accuracy = None
    if "deployable" in data and isinstance(data.get("accuracy"), dict):  # edge-prune model
        accuracy = data["accuracy"].get(f"{data['deployable']['artifact']}_tflm")
        data = data["footprint"]
    elif isinstance(data.get("accuracy"), dict):
        accuracy = data["accuracy"]["top1"]
    targets = {}
    for entry in data["targets"]:
        targets[str(entry["target"])] = TargetFigures(
            flash_needed_bytes=_whole(entry["flash"]["needed_bytes"], "flash.needed_bytes"),
            ram_needed_bytes=_optional_whole(entry["ram"]["needed_bytes"], "ram.needed_bytes"),
            arena_bytes=_optional_whole(entry["ram"]["arena_bytes"], "ram.arena_bytes"),
            runtime_bytes=_optional_whole(
                entry["flash"].get("runtime_bytes"), "flash.runtime_bytes"
            ),
            instructions=_optional_whole(
                (entry.get("time") or {}).get("instructions_per_inference"),
                "time.instructions_per_inference",
            ),
        )
    flatbuffer = _whole(data["footprint"]["flatbuffer_bytes"], "footprint.flatbuffer_bytes")
    if accuracy is not None and not (isinstance(accuracy, (int, float)) and 0 <= accuracy <= 1):
        raise ValueError("'accuracy' (a fraction in [0, 1])")
    return Baseline(path=path, flatbuffer_bytes=flatbuffer, targets=targets, accuracy=accuracy)


def _whole(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{key}' (a byte count)")
    return value


def _optional_whole(value, key: str) -> int | None:
    return None if value is None else _whole(value, key)


def check_baseline_covers(baseline: Baseline, target_names: list[str]) -> None:
    """Refuse a baseline that leaves a gated figure of a target asked with nothing to compare:
    no entry for the target, or a figure that is missing or zero (ConfigError naming it)."""
    where = f"--baseline {baseline.path}"
    hint = "; pass --allow-missing-baseline to compare what there is"
    if baseline.flatbuffer_bytes <= 0:
        raise ConfigError(f"{where}: footprint.flatbuffer_bytes is 0, nothing to compare{hint}")
    missing = [name for name in target_names if name not in baseline.targets]
    if missing:
        have = ", ".join(sorted(baseline.targets)) or "none"
        raise ConfigError(
            f"{where}: no entry for target {', '.join(missing)} (it has: {have}){hint}"
        )
    for name in target_names:
        figures = baseline.targets[name]
        for key, value in (
            ("flash.needed_bytes", figures.flash_needed_bytes),
            ("flash.runtime_bytes", figures.runtime_bytes),
            ("ram.arena_bytes", figures.arena_bytes),
        ):
            if not value:
                state = "missing" if value is None else "0"
                raise ConfigError(f"{where}: target {name}: {key} is {state}{hint}")


def compare(report: Report, baseline: Baseline) -> tuple[Change, ...]:
    """The change of flatbuffer, accuracy and, per target in both reports, runtime code, flash
    needed, arena and RAM needed."""
    changes = [
        Change("", "flatbuffer", baseline.flatbuffer_bytes, report.footprint.flatbuffer_bytes)
    ]
    if report.accuracy is not None and baseline.accuracy is not None:
        changes.append(
            Change("", "accuracy", 100 * baseline.accuracy, 100 * report.accuracy.top1, "%")
        )
    for v in report.verdicts:
        before = baseline.targets.get(v.target.name)
        if before is None:
            continue
        name = v.target.name
        changes += [
            Change(name, "runtime code", before.runtime_bytes, runtime_code_bytes(v)),
            Change(name, "flash needed", before.flash_needed_bytes, v.flash_needed_bytes),
            Change(name, "RAM needed", before.ram_needed_bytes, v.ram_needed_bytes),
            Change(name, "arena", before.arena_bytes, v.arena_bytes),
        ]
        figure = report.time_of(report.verdicts.index(v))
        if before.instructions is not None and figure is not None:
            changes.append(
                Change(name, "instructions", before.instructions, figure.instructions, "instr")
            )
    return tuple(changes)


def read_build_accuracy(path: str | Path, footprint: Footprint) -> Accuracy:
    """The TFLM accuracy of ``footprint``'s model from the ``report.json`` of ``edge-prune
    model`` that built it; refused when that report describes another model."""
    expected = "expected the report.json of `edge-prune model` with the deployable's TFLM accuracy"
    try:
        data = read_json(path, f"--accuracy-from {path}")
        artifact = data["deployable"]["artifact"]
        top1 = data["accuracy"][f"{artifact}_tflm"]
        built = data["footprint"]["footprint"]
        if not isinstance(built, dict):
            raise TypeError("'footprint.footprint' is not a table")
    except FileNotFoundError:
        raise ConfigError(f"--accuracy-from {path}: no such file; {expected}") from None
    except ConfigError as e:
        raise ConfigError(f"{e}; {expected}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"--accuracy-from {path}: {expected} ({type(e).__name__}: {e})") from e
    if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 1:
        raise ConfigError(
            f"--accuracy-from {path}: accuracy '{artifact}_tflm' = {str(top1)[:40]}; expected a "
            "fraction in [0, 1]"
        )
    same = built.get("sha256") == footprint.sha256 if built.get("sha256") else (
        built.get("flatbuffer_bytes") == footprint.flatbuffer_bytes
    )  # fmt: skip
    if not same:
        raise ConfigError(
            f"--accuracy-from {path}: describes another model ({built.get('flatbuffer_bytes')} "
            f"B), not {footprint.source} ({footprint.flatbuffer_bytes} B)"
        )
    return Accuracy(top1=float(top1), source=f"{path}: {artifact} on TFLM")


# ---------------------------------------------------------------------------------------------
# Text and markdown.


def _b(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,} B"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def bar(used_percent: float, width: int = BAR_WIDTH) -> str:
    """``[#####.....]``: the part used, ``!`` at the end when over 100%."""
    filled = min(width, max(0, math.ceil(used_percent / 100 * width - 1e-9)))
    return "[" + "#" * filled + "." * (width - filled) + "]" + ("!" if used_percent > 100 else "")


def _verdict_word(v: Verdict) -> str:
    if not v.runs_on_tflm:
        return f"DOES NOT RUN ON TFLM ({v.failure_reason or v.missing_op})"
    if v.fits:
        return "FITS"
    return v.status.replace("does not fit", "DOES NOT FIT")


def _verdict_lines(v: Verdict) -> list[str]:
    t = v.target
    headline = f"{t.name} ({t.part}, {t.core}): {_verdict_word(v)}"
    if v.ram_headroom_bytes is not None:
        headline += (
            f"; headroom flash {v.flash_headroom_bytes:,} B ({_pct(v.flash_headroom_percent)}), "
            f"RAM {v.ram_headroom_bytes:,} B ({_pct(v.ram_headroom_percent)})"
        )
    lines = _wrap(headline, indent="    ", first="")
    lines.append(
        f"  flash {bar(v.flash_used_percent)} {v.flash_used_percent:5.1f}% of "
        f"{t.flash_bytes:,} B ({v.flash_needed_bytes:,} B needed)"
    )
    if v.ram_needed_bytes is None:
        lines.append("  RAM   n/a: TFLM did not run the model, so its arena is unknown")
    else:
        lines.append(
            f"  RAM   {bar(v.ram_used_percent)} {v.ram_used_percent:5.1f}% of {t.ram_bytes:,} B "
            f"({v.ram_needed_bytes:,} B needed)"
        )
    for warning in v.warnings:
        lines += _wrap(warning, indent="           ", first="  WARNING: ")
    return lines


def _time_dict(figure: TimeFigure | None) -> dict | None:
    return figure.to_dict() if figure else None


def _time_lines(report: Report, index: int) -> list[str]:
    """The time line of one target: instructions per inference, the time at its clock, what
    kind of figure it is, and the budget."""
    from edge_prune.measurement.timing import over_budget, time_text

    figure = report.time_of(index)
    v = report.verdicts[index]
    budget = report.budget_of(v)
    if figure is None and budget is None:
        return []
    text = f"time  {time_text(figure)}"
    if figure is not None:
        text += f" at {figure.clock_hz / 1e6:g} MHz, {figure.kind}"
    if budget is not None:
        why = over_budget(figure, budget)
        text += f"; budget {budget:g} ms: " + (f"MISSED ({why})" if why else "met")
    return _wrap(text, indent="        ", first="  ")


def _summary(report: Report) -> str:
    f = report.footprint
    if not f.runs_on_tflm:
        text = (
            f"does not run on TFLM: {f.failure_reason} "
            f"(flash at rest: {f.flatbuffer_bytes:,} B flatbuffer); fits no target"
        )
    else:
        fitting = [v.target.name for v in report.verdicts if v.fits]
        failing = [v.target.name for v in report.verdicts if v.runs_on_tflm and not v.fits]
        kernels = [v.target.name for v in report.verdicts if not v.runs_on_tflm]
        parts = [
            *([f"does not run with the kernels of {', '.join(kernels)}"] if kernels else []),
            *([f"does not fit {', '.join(failing)}"] if failing else []),
        ]
        if not parts:
            text = f"fits every target asked ({', '.join(fitting)})"
        else:
            text = "; ".join(parts) + (f"; fits {', '.join(fitting)}" if fitting else "")
    missed = report.time_failures
    if missed:
        text += "; MISSES the time budget on " + ", ".join(f"{t} ({w})" for t, w in missed)
    grown = report.growth_failures
    if grown:
        where = dict.fromkeys(f"{c.target} ({c.figure})" for c in grown)
        text += f"; FAILS the growth limit: grew more than {report.growth_limit_percent:g}% on "
        text += ", ".join(where)
    return text


def _runtime_phrase(v: Verdict) -> str:
    return "measured" if v.runtime_flash.measured else "bound"


def _accounting_rows(report: Report) -> list[list[str]]:
    rows = []
    for v in report.verdicts:
        t = v.target
        arena = "n/a" if v.arena_bytes is None else f"{v.arena_bytes:,}"
        rows.append(
            [
                t.name,
                f"{v.flatbuffer_bytes:,}",
                f"{v.runtime_flash.total_bytes:,} ({_runtime_phrase(v)})",
                f"{t.reserved_flash_bytes:,}",
                f"{v.flash_needed_bytes:,}",
                arena,
                f"{t.reserved_ram_bytes:,}",
                "n/a" if v.ram_needed_bytes is None else f"{v.ram_needed_bytes:,}",
            ]
        )
    return rows


_ACCOUNTING_HEADER = [
    "target",
    "model",
    "runtime code",
    "reserved",
    "= flash",
    "arena",
    "reserved",
    "= RAM",
]


def _model_facts(report: Report) -> list[tuple[str, str, str]]:
    """(what, figure, how it was obtained) rows describing the model."""
    f = report.footprint
    rows = [
        ("flatbuffer", _b(f.flatbuffer_bytes), "measured: the .tflite file as flashed"),
        ("operators", f"{f.operator_count}", "operator nodes in the graph, all subgraphs"),
        ("op types", f"{len(f.ops)}", ", ".join(f.ops) or "none"),
    ]
    if f.sparse_tensor_count:
        rows.append(("sparse tensors", str(f.sparse_tensor_count), "stored sparse (CSR-like)"))
    host = host_tflm()
    rows.append(
        (
            "host TFLM",
            host.commit or "unknown",
            f"{host.describe()}: the interpreter that measured the arena and ran the model",
        )
    )
    if report.accuracy:
        a = report.accuracy
        rows.append(("accuracy", f"{a.top1:.2%}", f"top-1, {a.source}"))
    if report.decode:
        rows.append(("DECODE", f"{len(report.decode.tensors)} tensors", report.decode.summary))
    if f.arena is None:
        rows.append(("runs on TFLM", "no", f.tflm_failure or f"no kernel for op {f.missing_op}"))
        return rows
    a = f.arena
    rows.append(
        (
            "arena input",
            _b(f.arena_host_bytes),
            "measured on this 64-bit host: one recorded TFLM run, verified by running with it; "
            "not a verdict figure",
        )
    )
    if f.arena_device_bytes is not None:
        rows.append(
            (
                "  32-bit ref",
                _b(f.arena_device_bytes),
                "input: 32-bit Cortex-M, TFLM reference kernels, from the recorded allocations "
                "with measured 32-bit struct sizes; each target's arena is in the table below",
            )
        )
    rows += [
        ("  head", _b(a.recorded_head_bytes), "non-persistent tensors; same on a 32-bit MCU"),
        ("  tail", _b(a.recorded_tail_bytes), "persistent structures; differ on a 32-bit MCU"),
    ]
    return rows


def _decode_notes(report: Report) -> list[str]:
    """The one line saying what of the DECODE operators could not be verified, if anything."""
    unverified = report.decode.unverified if report.decode else None
    return [unverified] if unverified else []


def _arena_notes(report: Report) -> list[str]:
    """One note per target whose arena is not the 32-bit reference-kernel input as it is."""
    notes = []
    for v in report.verdicts:
        k = v.kernel_arena
        if k is None or v.arena_bytes is None:
            continue
        notes.append(
            f"arena on {v.target.name}: {v.arena_bytes:,} B, CMSIS-NN kernels "
            f"({k.features.upper()} code path): the 32-bit reference figure "
            f"{v.arena_device_bytes:,} B + {k.head_extra_bytes:,} B of the head the scratch "
            f"buffers of {len(k.scratch)} request(s) add to the memory plan + "
            f"{k.tail_extra_bytes:,} B persistent kernel data, derived per operator from the "
            "pinned CMSIS-NN's buffer-size functions"
            + (f" ({k.note})" if k.note else "")
            + (
                f"; the {k.planning_peak_bytes:,} B TFLM holds while it plans the arena (its "
                "planning arrays, with these kernels' data and scratch requests) is larger and "
                "is the figure"
                if k.planning_peak_bytes is not None
                else ""
            )
        )
    return notes


def _runtime_notes(report: Report) -> list[str]:
    """One note per distinct runtime figure, naming the targets that use it."""
    groups: dict[tuple, list[str]] = {}
    for v in report.verdicts:
        r = v.runtime_flash
        key = (r.measured, r.total_bytes, r.source, r.bound_rule)
        groups.setdefault(key, []).append(v.target.name)
    notes = []
    for (measured, total, source, rule), names in groups.items():
        who = ", ".join(names)
        if measured:
            notes.append(f"runtime code on {who}: {total:,} B, measured ({source})")
        else:
            notes.append(f"runtime code on {who}: {total:,} B, a BOUND: {rule} ({source})")
    return notes


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    """``text`` in lines of at most WIDTH columns; ``first`` (default ``indent``) starts it."""
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    )


def _change_cell(c: Change) -> str:
    if c.delta is None:
        return "n/a"
    if c.unit == "%":
        return f"{c.delta:+.2f} points"
    percent = "" if c.percent is None else f" ({c.percent:+.1f}%)"
    unit = " instructions" if c.unit == "instr" else " B"
    return f"{c.delta:+,.0f}{unit}{percent}"


def _value_cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "instr":
        return f"{value:,.0f}"
    return f"{value:.2f}%" if unit == "%" else f"{value:,.0f} B"


def _change_rows(report: Report) -> list[list[str]]:
    return [
        [
            c.target or "(model)",
            c.figure,
            _value_cell(c.before, c.unit),
            _value_cell(c.after, c.unit),
            _change_cell(c),
        ]
        for c in report.changes
    ]


_CHANGE_HEADER = ["target", "figure", "baseline", "now", "change"]


def render_text(report: Report) -> str:
    f = report.footprint
    lines = _wrap(f"edge-prune footprint report: {f.source}")
    lines += _wrap(_summary(report), indent="  ", first="Result: ") + [""]
    for i, v in enumerate(report.verdicts):
        lines += _verdict_lines(v) + _time_lines(report, i)
    if report.baseline:
        lines += ["", *_wrap(f"Change against the baseline {report.baseline.path}:")]
        lines += ["  " + line for line in table_lines(_CHANGE_HEADER, _change_rows(report))]
    lines += ["", "Accounting (bytes; what each figure counts, measured or estimated)", ""]
    facts = _model_facts(report)
    width = max(len(what) for what, _, _ in facts)
    figure_width = max(len(fig) for _, fig, _ in facts)
    pad = " " * (2 + width + 2 + figure_width + 2)
    for what, figure, how in facts:
        first = f"  {what:<{width}}  {figure:>{figure_width}}  "
        lines += _facts_line(first, how, pad)
    lines.append("")
    lines += ["  " + line for line in table_lines(_ACCOUNTING_HEADER, _accounting_rows(report))]
    lines.append("")
    notes = [*_decode_notes(report), *_runtime_notes(report), *_arena_notes(report)]
    for note in [*notes, _FORMULA, _HOST_NOTE]:
        lines += _wrap(note, indent="  ", first="- ")
    return "\n".join(lines) + "\n"


def _facts_line(first: str, how: str, pad: str) -> list[str]:
    if len(pad) > WIDTH // 2:  # long figures: put the explanation on its own lines
        return [first.rstrip(), *_wrap(how, indent="      ")]
    return textwrap.wrap(how, width=WIDTH, initial_indent=first, subsequent_indent=pad) or [first]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(report: Report) -> str:
    f = report.footprint
    lines = _wrap(f"### edge-prune footprint: `{f.source}`") + [""]
    lines += _wrap(f"**{_summary(report)}**") + ["", "```"]
    for i, v in enumerate(report.verdicts):
        lines += _verdict_lines(v) + _time_lines(report, i)
    lines += ["```", ""]
    if report.baseline:
        lines += _wrap(f"Change against the baseline `{report.baseline.path}`:") + [""]
        lines += table_lines(_CHANGE_HEADER, _change_rows(report), markdown=True) + [""]
    lines += ["#### Accounting (bytes; what each figure counts, measured or estimated)", ""]
    lines += [_md_row(["what", "figure", "how"]), _md_row(["---", "---:", "---"])]
    for what, figure, how in _model_facts(report):
        row = _md_row([what.strip(), figure, how])
        lines.append(row if len(row) <= WIDTH else _md_row([what.strip(), figure, "see below"]))
    lines.append("")
    lines += table_lines(_ACCOUNTING_HEADER, _accounting_rows(report), markdown=True) + [""]
    long_facts = [
        f"{what.strip()}: {how}"
        for what, figure, how in _model_facts(report)
        if len(_md_row([what.strip(), figure, how])) > WIDTH
    ]
    for note in [
        *long_facts,
        *_decode_notes(report),
        *_runtime_notes(report),
        *_arena_notes(report),
        _FORMULA,
        _HOST_NOTE,
    ]:
        lines += _wrap(note, indent="  ", first="- ")
    return "\n".join(lines) + "\n"
