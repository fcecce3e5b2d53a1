"""``edge-prune report``: does a .tflite fit the targets, measured with the TFLM interpreter."""

from __future__ import annotations

import argparse
import os
import sys

EXAMPLES = """\
examples:
  edge-prune report model.tflite --target cortex-m4
  edge-prune report model.tflite --target cortex-m4 --target esp32-s3 --format markdown
  edge-prune report model.tflite --all-targets --format json
  edge-prune report model.tflite --target path/to/my_board.toml

exit codes: 0 the model fits every target asked, 1 it does not fit one of them (or TFLM cannot
run it), 2 bad input (missing or corrupted model, unknown target, bad target file).
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
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="time limit of the TFLM measurement (default: 120)",
    )
    parser.add_argument(
        "--emit-c",
        metavar="DIR",
        help="also write the firmware files into DIR: model_data.cc/.h (the model as a C array, "
        "the measured arena size, input/output quantization), model_ops.h (the op resolver), "
        "FIRMWARE.md",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.errors import ConfigError
    from edge_prune.footprint import check, measure
    from edge_prune.report import Report, render
    from edge_prune.targets import list_targets, load_target, targets_dir

    names = list(args.target)
    if args.all_targets:
        names += [n for n in list_targets(args.targets_dir) if n not in names]
        if not names:
            raise ConfigError(f"--all-targets: no .toml files in {targets_dir(args.targets_dir)}")
    if not names:
        raise ConfigError("give --target NAME (repeatable) or --all-targets")
    targets = [load_target(name, args.targets_dir) for name in names]
    footprint = measure(args.model, timeout_s=args.timeout)
    report = Report(footprint=footprint, verdicts=tuple(check(footprint, t) for t in targets))
    sys.stdout.write(render(report, args.format))
    if args.emit_c:
        from edge_prune.firmware import write_report_firmware

        write_report_firmware(args.emit_c, args.model, footprint)
    _append_step_summary(report.to_markdown())
    return 0 if report.fits else 1


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
