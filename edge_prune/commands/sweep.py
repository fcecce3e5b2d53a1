"""``edge-prune sweep``: accuracy on TFLM and flash of each artifact over a list of sparsities."""

from __future__ import annotations

import argparse

from edge_prune.commands._inputs import add_input_arguments

EXAMPLES = """\
examples:
  edge-prune sweep --target cortex-m4
  edge-prune sweep --target cortex-m0plus --sparsities 0,0.8,0.9,0.95 --out build
  edge-prune sweep --target cortex-m7 --model my_model.keras --data my_data.npz --config p.toml

writes OUT/sweep-<target>/: sweep.md (table), sweep.csv, sweep.json and sweep.png (accuracy on
TFLM vs sparsity, flash of each artifact, the flash budget, the best sparsity marked; needs
matplotlib: pip install 'edge-prune[plot]').

exit codes: 0 at least one sparsity stays within the accuracy tolerance on TFLM and fits the
target, 1 none does (the files are still written), 2 bad input (nothing written),
130 interrupted.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="sweep final sparsities: TFLM accuracy and flash per artifact, table and plot",
        description=(
            "Train the dense model once (seeded), then for each final sparsity: magnitude-prune "
            "(polynomial decay), strip, cluster, convert to int8 (dense storage, TFLM sparse "
            "encoding, TFLM-compressed), run every artifact on the TFLM interpreter over the "
            "held-out set, "
            "choose the deployable one and check it against TARGET. Marks the sparsity needing "
            "the least flash within the accuracy tolerance that fits the target."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(
        parser,
        config_help="pipeline config as for 'edge-prune model'; prune.final_sparsity is ignored "
        "(the sweep sets it), select.tolerance_points sets the tolerance",
        out_help="write DIR/sweep-<target>/ (default: build)",
    )
    parser.add_argument(
        "--sparsities",
        default="0,0.5,0.7,0.8,0.9,0.95",
        metavar="LIST",
        help="comma-separated final sparsities in [0, 0.99] (default: 0,0.5,0.7,0.8,0.9,0.95)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print every epoch and TFLM check"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.commands._inputs import inputs_from_args
    from edge_prune.runner import stderr_progress
    from edge_prune.sweep import parse_sparsities, run_sweep, write_sweep

    sparsities = parse_sparsities(args.sparsities)
    inputs = inputs_from_args(args)
    result = run_sweep(
        inputs, sparsities, stderr_progress, stderr_progress if args.verbose else None
    )
    destination = write_sweep(result, args.out, stderr_progress)
    print(result)
    stderr_progress(f"sweep written to {destination}/")
    return 0 if result.best is not None else 1
