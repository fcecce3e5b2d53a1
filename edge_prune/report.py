"""The footprint report: a model's measured footprint and its verdict on each target.

Renders as text (terminal), markdown (pull requests, ``$GITHUB_STEP_SUMMARY``) or JSON. Every
figure says what it counts and whether it was measured or estimated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_prune.footprint import Footprint, Verdict, check, measure
from edge_prune.tables import table_lines
from edge_prune.targets import Target, load_target

FORMATS = ("text", "markdown", "json")
_HOST_NOTE = (
    "arena measured by the TFLM interpreter on a 64-bit host: head (non-persistent tensors) is "
    "the same on a 32-bit MCU, tail (persistent structures) is smaller there"
)


@dataclass(frozen=True)
class Report:
    footprint: Footprint
    verdicts: tuple[Verdict, ...]

    @property
    def fits(self) -> bool:
        """True when the model runs on TFLM and fits every target of the report."""
        return all(v.fits for v in self.verdicts)

    def to_dict(self) -> dict:
        return {
            "fits_all_targets": self.fits,
            "footprint": self.footprint.to_dict(),
            "targets": [v.to_dict() for v in self.verdicts],
            "notes": [_HOST_NOTE, _FORMULA],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        return render_text(self)

    def to_markdown(self) -> str:
        return render_markdown(self)

    def __str__(self) -> str:
        return render_text(self)


_FORMULA = (
    "flash needed = flatbuffer + TFLM runtime code + reserved flash; "
    "RAM needed = tensor arena + reserved RAM; headroom = part size - needed"
)


def build_report(
    model: bytes | str | Path,
    targets: list[str | Path | Target],
    *,
    targets_dir: str | Path | None = None,
) -> Report:
    """Measure ``model`` once and give its verdict on each target (names, paths or Targets)."""
    loaded = [t if isinstance(t, Target) else load_target(t, targets_dir) for t in targets]
    footprint = measure(model)
    return Report(footprint=footprint, verdicts=tuple(check(footprint, t) for t in loaded))


def render(report: Report, fmt: str) -> str:
    renderers = {"text": render_text, "markdown": render_markdown, "json": Report.to_json}
    return renderers[fmt](report)


def _b(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,} B"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def _runtime_line(f: Footprint) -> str:
    r = f.runtime_flash
    kernels = ", ".join(f"{op} {n:,}" for op, n in r.kernel_bytes.items())
    return f"estimate: framework {r.framework_bytes:,} B + kernels ({kernels} B)"


def _facts(f: Footprint) -> list[tuple[str, str, str]]:
    """(what, figure, how it was obtained) rows describing the model."""
    rows = [
        ("flatbuffer", _b(f.flatbuffer_bytes), "measured: the .tflite file as flashed"),
        ("operators", f"{f.operator_count}", "op types: " + (", ".join(f.ops) or "none")),
    ]
    if f.sparse_tensor_count:
        rows.append(("sparse tensors", str(f.sparse_tensor_count), "stored sparse (CSR-like)"))
    if f.arena is None:
        rows.append(("runs on TFLM", "no", f"no kernel for op {f.missing_op}"))
    else:
        a = f.arena
        rows += [
            (
                "tensor arena",
                _b(a.smallest_arena_bytes),
                "measured: smallest arena_size that allocated and ran one inference (TFLM)",
            ),
            (
                "  recorded total",
                _b(a.recorded_total_bytes),
                "measured: TFLM RecordingMicroAllocator 'Arena allocation total' "
                f"(arena_size {a.recorded_with_arena_bytes:,}; alignment padding varies a little)",
            ),
            ("  head", _b(a.recorded_head_bytes), "non-persistent tensors; same on a 32-bit MCU"),
            ("  tail", _b(a.recorded_tail_bytes), "persistent; 64-bit host, smaller on the MCU"),
        ]
    rows.append(("TFLM runtime code", _b(f.runtime_flash.total_bytes), _runtime_line(f)))
    return rows


def _runtime_label(v: Verdict) -> str:
    return (
        "target file, measured on the board for other models"
        if v.runtime_flash.measured
        else "estimate"
    )


def _verdict_rows(report: Report) -> list[list[str]]:
    rows = []
    for v in report.verdicts:
        t = v.target
        rows.append(
            [
                t.name,
                t.part,
                f"{v.flatbuffer_bytes:,} + {v.runtime_flash.total_bytes:,} ({_runtime_label(v)})"
                f" + {t.reserved_flash_bytes:,}",
                f"{v.flash_needed_bytes:,} / {t.flash_bytes:,}",
                f"{v.flash_headroom_bytes:,} ({_pct(v.flash_headroom_percent)})",
                "n/a" if v.arena_bytes is None else f"{v.arena_bytes:,} + {t.reserved_ram_bytes:,}",
                "n/a"
                if v.ram_needed_bytes is None
                else f"{v.ram_needed_bytes:,} / {t.ram_bytes:,}",
                "n/a"
                if v.ram_headroom_bytes is None
                else f"{v.ram_headroom_bytes:,} ({_pct(v.ram_headroom_percent)})",
                v.status,
            ]
        )
    return rows


_VERDICT_HEADER = [
    "target",
    "part",
    "flash: model + runtime + reserved",
    "flash needed / part",
    "flash headroom",
    "RAM: arena + reserved",
    "RAM needed / part",
    "RAM headroom",
    "verdict",
]


def _summary(report: Report) -> str:
    f = report.footprint
    if not f.runs_on_tflm:
        return (
            f"does not run on TFLM: {f.missing_op} "
            f"(flash at rest: {f.flatbuffer_bytes:,} B flatbuffer); fits no target"
        )
    fitting = [v.target.name for v in report.verdicts if v.fits]
    failing = [v.target.name for v in report.verdicts if not v.fits]
    if not failing:
        return f"fits every target asked ({', '.join(fitting)})"
    return f"does not fit {', '.join(failing)}" + (
        f"; fits {', '.join(fitting)}" if fitting else ""
    )


def render_text(report: Report) -> str:
    f = report.footprint
    lines = [f"edge-prune footprint report: {f.source}", ""]
    width = max(len(what) for what, _, _ in _facts(f))
    figure_width = max(len(fig) for _, fig, _ in _facts(f))
    for what, figure, how in _facts(f):
        lines.append(f"  {what:<{width}}  {figure:>{figure_width}}  {how}")
    lines.append("")
    lines += table_lines(_VERDICT_HEADER, _verdict_rows(report))
    lines += ["", f"Result: {_summary(report)}", f"Note: {_FORMULA}.", f"Note: {_HOST_NOTE}."]
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(report: Report) -> str:
    f = report.footprint
    lines = [f"### edge-prune footprint: `{f.source}`", "", f"**{_summary(report)}**", ""]
    lines += [_md_row(["what", "bytes", "how"]), _md_row(["---", "---:", "---"])]
    lines += [_md_row([what.strip(), fig, how]) for what, fig, how in _facts(f)]
    lines += ["", _md_row(_VERDICT_HEADER), _md_row(["---"] * len(_VERDICT_HEADER))]
    lines += [_md_row(row) for row in _verdict_rows(report)]
    lines += [
        "",
        f"- {_FORMULA}.",
        f"- {_HOST_NOTE}.",
        f"- runtime code: {f.runtime_flash.source}.",
    ]
    measured = {v.runtime_flash.source for v in report.verdicts if v.runtime_flash.measured}
    lines += [f"- runtime code measured on device: {s}." for s in sorted(measured)]
    return "\n".join(lines) + "\n"
