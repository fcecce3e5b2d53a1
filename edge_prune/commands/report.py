"""``edge-prune report``: does a .tflite fit the targets, measured with the TFLM interpreter."""

from __future__ import annotations

import argparse
import math
import os
import sys

EXAMPLES = """\
examples:
  edge-prune report model.tflite --target cortex-m4
  edge-prune report model.tflite --target cortex-m4 --target esp32-s3 --format markdown
  edge-prune report model.tflite --all-targets --format json
  edge-prune report model.tflite --target path/to/my_board.toml
  edge-prune report model.tflite --all-targets --format json > now.json
  edge-prune report model.tflite --all-targets --baseline base.json --fail-on-growth 5
  edge-prune report model.tflite --target cortex-m4 --max-latency-ms 10

exit codes:
  0  the model fits every target asked (and grew no more than --fail-on-growth)
  1  it does not fit a target, or TFLM cannot run it (missing op, an op that fails to prepare,
     an abort or crash of the interpreter, --timeout), or its flatbuffer, runtime code or
     arena grew more than --fail-on-growth, or it misses a time budget (--max-latency-ms or
     a target's latency_ms): the full report says why, in every --format
  2  unreadable input (missing file, a FIFO or device, not a TFLite flatbuffer, truncated or
     corrupted, an impossible DECODE layout, a DECODE operator after a reader of its output,
     decoded quantization that contradicts the bias, a malformed sparse operator, or weights,
     tensors, operators or TFLM outputs that differ from the uncompressed model beside it) or bad
     arguments (unknown target, bad target file, bad --timeout, bad --baseline, a baseline with
     nothing to compare for a target asked): one line
With $GITHUB_STEP_SUMMARY set, the markdown report is appended to that file too.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="flash and RAM of a .tflite on each target, measured with the TFLM interpreter",
        description=(
            "Measure a .tflite model with the TFLM interpreter (tensor arena, ops; no "
            "TensorFlow needed), add the TFLM runtime code estimate and what the application "
            "reserves, and say for each target whether it fits and by how much."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL.tflite", help="the TFLite flatbuffer to measure")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="TARGET",
        help="target name from the catalogue (see `edge-prune targets`) or a path to a .toml; "
        "repeat for several",
    )
    parser.add_argument(
        "--all-targets", action="store_true", help="check every target in the catalogue"
    )
    parser.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="default: text"
    )
    parser.add_argument(
        "--targets-dir",
        metavar="DIR",
        help="catalogue directory (default: $EDGE_PRUNE_TARGETS_DIR or the repo's targets/)",
    )
    parser.add_argument(
        "--timeout",
        default="120",
        metavar="SECONDS",
        help="time limit of the TFLM measurement, seconds > 0 (default: 120)",
    )
    parser.add_argument(
        "--baseline",
        metavar="PREVIOUS.json",
        help="a previous `--format json` report: show the change of flatbuffer, flash needed, "
        "RAM needed, arena (and accuracy when both carry it) per target",
    )
    parser.add_argument(
        "--fail-on-growth",
        metavar="PERCENT",
        help="with --baseline: exit 1 when what the model adds grows by more than PERCENT: "
        "its flatbuffer, or on any target its TFLM runtime code or tensor arena (the target's "
        "reserved flash and RAM are not part of the comparison). A baseline without an entry "
        "or with a zero figure for a target asked is bad input (exit 2)",
    )
    parser.add_argument(
        "--allow-missing-baseline",
        action="store_true",
        help="with --fail-on-growth: compare what the baseline has instead of refusing one "
        "that lacks a target asked or a figure",
    )
    parser.add_argument(
        "--max-latency-ms",
        metavar="MS",
        help="time budget of one inference, milliseconds > 0: exit 1 when the model's time "
        "figure on a target (instructions per inference from calibrated per-op costs, at the "
        "target's clock) is over it; a target file's latency_ms applies too (the tighter wins)",
    )
    parser.add_argument(
        "--accuracy-from",
        metavar="REPORT.json",
        help="the report.json that `edge-prune model` wrote with this model: its TFLM accuracy "
        "goes into the report (and the comparison)",
    )
    parser.add_argument(
        "--emit-c",
        metavar="DIR",
        help="also write the firmware files into DIR: model_data.cc/.h (the model as a C array, "
        "the verdict's arena for the target (the largest of the targets given), input/output "
        "quantization), model_ops.h (the op resolver), FIRMWARE.md, and model.tflite, so that "
        "`edge-prune device DIR` builds these files",
    )
    parser.set_defaults(run=run)


def _check_sparse_ops(model) -> None:
    """A malformed sparse operator (edge-prune's sparse kernels) is exit 2, never a crash."""
    from pathlib import Path

    from edge_prune.measurement.sparse import native
    from edge_prune.measurement.sparse.rewrite import verify

    data = Path(model).read_bytes()
    if native.uses_sparse_ops(data):
        verify(data, str(model))


def run(args) -> int:
    from edge_prune.errors import ConfigError
    from edge_prune.measurement.codecs.verify import check_decode
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.report import (
        Report,
        check_baseline_covers,
        read_baseline,
        read_build_accuracy,
        render,
    )
    from edge_prune.measurement.targets import list_targets, load_target, targets_dir
    from edge_prune.measurement.tflite_file import read_model

    names = list(args.target)
    if args.all_targets:
        names += [n for n in list_targets(args.targets_dir) if n not in names]
        if not names:
            raise ConfigError(f"--all-targets: no .toml files in {targets_dir(args.targets_dir)}")
    if not names:
        raise ConfigError("give --target NAME (repeatable) or --all-targets")
    targets = [load_target(name, args.targets_dir) for name in names]
    _check_arguments(args)
    baseline = read_baseline(args.baseline) if args.baseline else None
    if baseline and args.fail_on_growth is not None and not args.allow_missing_baseline:
        check_baseline_covers(baseline, [t.name for t in targets])
    read_model(args.model)  # an unreadable flatbuffer is refused before its DECODE data
    decode = check_decode(args.model, timeout_s=_number(args.timeout, "--timeout"))
    _check_sparse_ops(args.model)
    footprint = measure(args.model, timeout_s=_number(args.timeout, "--timeout"))
    verdicts = tuple(verdict_for(footprint, t) for t in targets)
    report = Report(
        decode=decode,
        footprint=footprint,
        verdicts=verdicts,
        accuracy=read_build_accuracy(args.accuracy_from, footprint) if args.accuracy_from else None,
        baseline=baseline,
        growth_limit_percent=_growth_limit(args),
        times=_times(args.model, footprint, targets),
        latency_budget_ms=_latency_budget(args),
    )
    sys.stdout.write(render(report, args.format))
    if args.emit_c is not None:
        from edge_prune.measurement.firmware import write_report_firmware

        write_report_firmware(args.emit_c, args.model, verdicts)
    _append_step_summary(report.to_markdown())
    return 0 if report.passes else 1


def _times(model, footprint, targets) -> tuple:
    """Per target, the model's time figure (None where TFLM cannot run it or no calibrated
    costs cover the target's build)."""
    from edge_prune.measurement.tflite_file import load_bytes
    from edge_prune.measurement.timing import estimate_time

    if not footprint.runs_on_tflm:
        return tuple(None for _ in targets)
    data, _ = load_bytes(model)
    return tuple(estimate_time(data, t) for t in targets)


def _latency_budget(args) -> float | None:
    if args.max_latency_ms is None:
        return None
    return _number(args.max_latency_ms, "--max-latency-ms")


def _check_arguments(args) -> None:
    """Bad --timeout / --fail-on-growth values are one-line errors (exit 2)."""
    from edge_prune.errors import ConfigError

    if args.emit_c is not None and not args.emit_c.strip():
        raise ConfigError("--emit-c: empty directory name; give the directory for the files")
    timeout = _number(args.timeout, "--timeout")
    if not timeout > 0:
        raise ConfigError(f"--timeout {args.timeout}: expected a finite number of seconds > 0")
    if args.fail_on_growth is not None:
        if _number(args.fail_on_growth, "--fail-on-growth") < 0:
            raise ConfigError(f"--fail-on-growth {args.fail_on_growth}: expected a percent >= 0")
        if not args.baseline:
            raise ConfigError("--fail-on-growth needs --baseline PREVIOUS.json to compare with")
    if args.max_latency_ms is not None and not _number(args.max_latency_ms, "--max-latency-ms") > 0:
        raise ConfigError(f"--max-latency-ms {args.max_latency_ms}: expected milliseconds > 0")


def _number(text: str, option: str) -> float:
    from edge_prune.errors import ConfigError

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{option} {text}: expected a finite number")
    return value


def _growth_limit(args) -> float | None:
    if args.fail_on_growth is None:
        return None
    return _number(args.fail_on_growth, "--fail-on-growth")


def _append_step_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    from edge_prune.errors import ConfigError

    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown + "\n")
    except OSError as e:
        raise ConfigError(f"$GITHUB_STEP_SUMMARY={path}: cannot append ({e.strerror})") from e
