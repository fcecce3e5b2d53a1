"""``edge-prune targets``: list the target catalogue."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
examples:
  edge-prune targets
  edge-prune targets --format json
  edge-prune targets --targets-dir my_boards/

Add a target: copy one of targets/*.toml, edit it, and pass its path to --target, or put it in
the catalogue directory ($EDGE_PRUNE_TARGETS_DIR).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "targets",
        help="list the target catalogue (part, core, clock, flash, RAM)",
        description="List the microcontroller targets: one TOML file each in the catalogue.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--targets-dir",
        metavar="DIR",
        help="catalogue directory (default: $EDGE_PRUNE_TARGETS_DIR or the repo's targets/)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.errors import ConfigError
    from edge_prune.measurement.targets import load_all_targets, targets_dir

    targets = load_all_targets(args.targets_dir)
    if not targets:
        raise ConfigError(f"{targets_dir(args.targets_dir)}: no target files (*.toml) there")
    if args.format == "json":
        sys.stdout.write(json.dumps([t.to_dict() for t in targets], indent=2) + "\n")
        return 0
    sys.stdout.write(render_table(targets))
    return 0


def render_table(targets) -> str:
    header = ["name", "part", "core", "clock", "flash", "RAM", "reserved flash / RAM"]
    rows = [header]
    for t in targets:
        rows.append(
            [
                t.name,
                t.part,
                t.core,
                f"{t.clock_hz / 1e6:g} MHz",
                f"{t.flash_bytes:,} B",
                f"{t.ram_bytes:,} B",
                f"{t.reserved_flash_bytes:,} / {t.reserved_ram_bytes:,} B",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
