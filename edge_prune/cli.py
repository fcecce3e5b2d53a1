"""``edge-prune`` command line: parsing and exit codes only; the work is in library modules.

Exit codes: 0 success (the model fits every target asked), 1 it does not fit, 2 bad input or a
step that could not be done (an unexpected failure too: one line, with EDGE_PRUNE_DEBUG=1 the
traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edge_prune.errors import EdgePruneError

# One module per command in edge_prune/commands/, each with register(subparsers). Importing
# them must stay cheap: heavy imports (TensorFlow) happen inside each command's run().
COMMANDS = ("model", "report", "targets", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-prune",
        description="Prune, convert and measure Keras models for Cortex-M microcontrollers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edge_prune.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except EdgePruneError as e:
        print(f"edge-prune: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edge-prune: interrupted; no artifact was left half-written", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a foreign library failing: one line, traceback on request
        if os.environ.get("EDGE_PRUNE_DEBUG"):
            raise
        print(
            f"edge-prune: internal error: {type(e).__name__}: {_one_line(str(e))[:500]} "
            "(set EDGE_PRUNE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
