"""Tables for people: aligned plain text or GitHub markdown, from rows of cells."""

from __future__ import annotations

from collections.abc import Sequence


def table_lines(
    header: Sequence[object],
    rows: Sequence[Sequence[object]],
    *,
    markdown: bool = False,
    rule: bool = False,
) -> list[str]:
    """The lines of a table. Text: left-aligned columns two spaces apart, with a line of dashes
    under the header when ``rule``. Markdown: a pipe table (``|`` inside a cell is escaped)."""
    header = [str(c) for c in header]
    rows = [[str(c) for c in row] for row in rows]
    if markdown:
        return [_md_row(header), "|" + "---|" * len(header), *(_md_row(r) for r in rows)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    ruled = [header, ["-" * w for w in widths]] if rule else [header]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [*ruled, *rows]
    ]


def print_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> None:
    """Print a text table with a rule under the header (the benchmark scripts' format)."""
    print("\n".join(table_lines(header, rows, rule=True)))


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
