"""``edge-prune device``: build the firmware files on a real TFLM for the target's core, run
them in QEMU, compare with the host TFLM interpreter, and measure flash, arena, instructions."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  edge-prune device build/cortex-m4 --target cortex-m4 --tflm ~/tflite-micro
  edge-prune device model.tflite --target cortex-m7 --kernels cmsis-nn --build release
  edge-prune device build/cortex-m4 --target cortex-m4 --samples 32 --format json --out dev.json
  EDGE_PRUNE_TFLM=~/tflite-micro edge-prune device model.tflite --target cortex-m0plus

It needs the Arm GNU toolchain and QEMU (Debian/Ubuntu: apt-get install -y gcc-arm-none-eabi
libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm) and a TFLM source tree
(tflite-micro checkout, see README "On the device"). TFLM objects are built once per core x
kernels x build type into ~/.cache/edge-prune ($EDGE_PRUNE_DEVICE_CACHE).

exit codes:
  0  outputs equal the host's byte for byte (float32 outputs: within 1e-5 relative) and the
     model fits the target (size-only cores: it fits)
  1  outputs differ, the firmware does not run, or it does not fit; or TFLM has no kernel for
     one of the model's ops (as `edge-prune report`, which says "does not run on TFLM")
  2  bad input: unknown target, no toolchain, no TFLM tree, unreadable model or data
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "device",
        help="build the firmware on real TFLM, run it in QEMU, compare with the host",
        description=(
            "Compile the emitted firmware files with TFLM's own flags for the target's core, "
            "link, split the map file (model / TFLM runtime / harness), run samples in QEMU, "
            "compare every output byte with the host TFLM interpreter, find the smallest "
            "arena that works and count emulated instructions per inference."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL_OR_BUILD_DIR", help="a .tflite, or a `edge-prune model` build dir"
    )
    parser.add_argument("--target", required=True, help="target name or path to a .toml")
    parser.add_argument(
        "--tflm", metavar="DIR", help="TFLM source tree (default: $EDGE_PRUNE_TFLM)"
    )
    parser.add_argument(
        "--kernels",
        choices=("reference", "cmsis-nn"),
        help="TFLM kernels (default: the target's tflm_kernels)",
    )
    parser.add_argument(
        "--build",
        choices=("default", "release"),
        help="TFLM BUILD_TYPE (default: the target's tflm_build_type)",
    )
    parser.add_argument("--samples", default="8", metavar="N", help="samples to run (default 8)")
    parser.add_argument(
        "--data", metavar="NPZ", help="samples from an .npz (x_test or x) instead of held-out"
    )
    parser.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="default: text"
    )
    parser.add_argument("--out", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--timeout", default="300", metavar="SECONDS", help="QEMU time limit")
    parser.add_argument("--targets-dir", metavar="DIR", help="target catalogue directory")
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.artifacts import write_atomic
    from edge_prune.errors import ConfigError, MissingOpError
    from edge_prune.measurement.device.config import core_from_target
    from edge_prune.measurement.device.measure import measure
    from edge_prune.measurement.device.report import render
    from edge_prune.measurement.device.toolchain import TflmTree, resolve_toolchain
    from edge_prune.measurement.targets import load_target
    from edge_prune.measurement.tflm import parse_timeout

    samples = _count(args.samples)
    timeout = parse_timeout(args.timeout)
    target = load_target(args.target, args.targets_dir)
    try:
        core_from_target(target.core)
    except ConfigError as e:
        raise ConfigError(f"--target {target.name}: {e}") from None
    toolchain = resolve_toolchain()
    tree = TflmTree.from_path(args.tflm)
    try:
        result = measure(
            args.model,
            target,
            tree,
            kernels=args.kernels,
            build_type=args.build,
            samples=samples,
            data=args.data,
            toolchain=toolchain,
            timeout_s=timeout,
        )
    except MissingOpError as e:  # a verdict, as in `report`: it does not run on TFLM
        print(f"edge-prune: {e}", file=sys.stderr)
        return 1
    if result.tflm_commits_differ:
        print(
            f"edge-prune device: warning: the TFLM tree is commit {result.tflm_commit}, the host "
            f"interpreter {result.host_tflm.describe()}: outputs are compared across two TFLM "
            "versions",
            file=sys.stderr,
        )
    text = render(result, args.format)
    sys.stdout.write(text)
    if args.out:
        write_atomic(args.out, text)
    return 0 if result.ok else 1


def _count(text: str) -> int:
    from edge_prune.errors import ConfigError

    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--samples: expected a whole number >= 1, got {text!r}") from None
    from edge_prune.measurement.device.measure import MAX_SAMPLES

    if not 1 <= value <= MAX_SAMPLES:
        raise ConfigError(
            f"--samples: expected a whole number from 1 to {MAX_SAMPLES} (the samples are "
            f"linked into the firmware), got {text.strip()[:30]}"
        )
    return value
