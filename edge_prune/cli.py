"""``edge-prune`` command line: parsing and exit codes only; the work is in library modules.

Exit codes: 0 success (the model fits every target asked), 1 it does not fit, 2 bad input or a
step that could not be done (an unexpected failure too: one line, with EDGE_PRUNE_DEBUG=1 the
traceback), 130 interrupted (Ctrl-C), 128 + N when ended by signal N (SIGTERM 143, SIGHUP 129).
On a signal the work unwinds like on Ctrl-C: the TFLM child is killed and temporary
directories are removed before the one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from edge_prune.errors import EdgePruneError

# One module per command in edge_prune/commands/, each with register(subparsers). Importing
# them must stay cheap: heavy imports (TensorFlow) happen inside each command's run().
COMMANDS = ("model", "report", "targets", "sweep", "search", "device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-prune",
        description="Prune, convert and measure Keras models for Cortex-M microcontrollers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edge_prune.commands.{name}").register(subparsers)
    return parser


# Ended like Ctrl-C, with exit code 128 + signal number.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process gets one of ``HANDLED_SIGNALS``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _handle_signals() -> dict:
    """Install the handlers (only the main thread can); return the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _raise_terminated) for s in HANDLED_SIGNALS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = _handle_signals()
    try:
        return int(args.run(args) or 0)
    except EdgePruneError as e:
        print(f"edge-prune: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except Terminated as e:
        name = signal.Signals(e.signum).name
        print(f"edge-prune: ended by {name}; no artifact was left half-written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("edge-prune: interrupted; no artifact was left half-written", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a foreign library failing: one line, traceback on request
        if os.environ.get("EDGE_PRUNE_DEBUG"):
            raise
        if isinstance(e, OSError) and e.filename:  # disk full, read-only: name the path
            print(f"edge-prune: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(
            f"edge-prune: internal error: {type(e).__name__}: {_one_line(str(e))[:500]} "
            "(set EDGE_PRUNE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
