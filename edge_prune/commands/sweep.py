"""``edge-prune sweep``: accuracy on TFLM and flash of each artifact over a list of sparsities."""

from __future__ import annotations

import argparse

from edge_prune.commands._inputs import add_input_arguments

EXAMPLES = """\
examples:
  edge-prune sweep --target cortex-m4
  edge-prune sweep --target cortex-m0plus --sparsities 0,0.8,0.9,0.95 --out build
  edge-prune sweep --target cortex-m7 --model my_model.keras --data my_data.npz --config p.toml

writes OUT/sweep-<target>/: sweep.md (table), sweep.csv, sweep.json and sweep.png (flash and
RAM needed vs the score on TFLM, the budgets, the chosen sparsity starred; needs matplotlib:
pip install 'edge-prune[plot]'), best.toml and best/ when a sparsity fits; the same files as
'edge-prune search'. Points built are kept in OUT/sweep-<target>.cache/.

exit codes: 0 at least one sparsity stays within the accuracy tolerance on TFLM and fits the
target, 1 none does (the files are still written), 2 bad input (nothing written),
130 interrupted.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="sweep final sparsities: a search over a fixed grid, table and plot",
        description=(
            "A search whose points are the config's own point at each final sparsity, every "
            "one built (Optuna's GridSampler): train the dense model once (seeded), then per "
            "sparsity the stages of 'edge-prune model' (prune by prune.schedule, cluster, "
            "convert, every artifact run on the TFLM interpreter). Chooses the sparsity needing "
            "the least flash within the tolerance that fits the target."
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
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.commands._inputs import inputs_from_args
    from edge_prune.runner import stderr_progress
    from edge_prune.search.render import render_markdown
    from edge_prune.search.sweep import parse_sparsities, run_sweep, write_sweep

    sparsities = parse_sparsities(args.sparsities)
    inputs = inputs_from_args(args)
    result, point_dirs = run_sweep(inputs, sparsities, args.out, stderr_progress)
    destination = write_sweep(result, point_dirs, args.out, inputs, stderr_progress)
    print(render_markdown(result))
    stderr_progress(f"sweep written to {destination}/")
    return 0 if result.best is not None else 1
