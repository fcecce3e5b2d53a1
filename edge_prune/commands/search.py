"""``edge-prune search``: the smallest model that fits a target within the accuracy tolerance."""

from __future__ import annotations

import argparse

from edge_prune.commands._inputs import add_input_arguments

EXAMPLES = """\
examples:
  edge-prune search --target cortex-m4
  edge-prune search --target samd21 --trials 30 --jobs 2 --out build
  edge-prune search --target nrf52810 --model kws.keras --data kws.npz --schedules polynomial,rewind

writes OUT/search-<target>/: pareto.md (every point, the Pareto front, the chosen one),
pareto.csv, pareto.json, pareto.png (flatbuffer and arena vs TFLM accuracy, budgets and
feasible region), best.toml (edge-prune model --config best.toml --target TARGET rebuilds the
chosen point byte for byte) and best/ (as build/<target>/). Points already built are kept in
OUT/search-<target>.cache/: running the same command again resumes.

exit codes: 0 a point fits the target within the accuracy tolerance, 1 none does (the closest
one and what it misses by are named; the files are still written), 2 bad input, 130 interrupted.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search channel ratio, sparsity, clusters and schedule for the smallest model "
        "that fits",
        description=(
            "Train the dense model once and each channel-removal ratio's model once, then "
            "build points (structured ratio, final sparsity, cluster count, pruning schedule) "
            "with the stages of 'edge-prune model', each checked on the TFLM interpreter: a "
            "coarse grid first, then neighbours of the best points. Chooses the point with the "
            "least flash needed among those within the accuracy tolerance that fit TARGET."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(
        parser,
        config_help="base pipeline config as for 'edge-prune model'; the search sets "
        "structured.ratio, prune.final_sparsity and compress.enabled/clusters per point",
        out_help="write DIR/search-<target>/ and the points cache DIR/search-<target>.cache/ "
        "(default: build)",
    )
    parser.add_argument(
        "--trials", type=int, default=20, metavar="N", help="points to build at most (default 20)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    parser.add_argument(
        "--ratios", default="0,0.5,0.75", metavar="LIST", help="coarse structured ratios"
    )
    parser.add_argument(
        "--sparsities", default="0.5,0.8", metavar="LIST", help="coarse final sparsities"
    )
    parser.add_argument(
        "--clusters", default="0,8", metavar="LIST", help="coarse cluster counts (0 = off)"
    )
    parser.add_argument(
        "--schedules",
        default="polynomial",
        metavar="LIST",
        help="pruning schedules: polynomial, iterative, rewind (default: polynomial)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from edge_prune.search import SearchOptions, SearchSpace, run_search, write_search
    from edge_prune.sweep import parse_sparsities

    space = SearchSpace(
        ratios=parse_sparsities(args.ratios, "--ratios"),
        sparsities=parse_sparsities(args.sparsities, "--sparsities"),
        clusters=_integers(args.clusters, "--clusters"),
        schedules=tuple(s.strip() for s in args.schedules.split(",")),
    )
    options = SearchOptions(trials=args.trials, jobs=args.jobs, space=space)
    from edge_prune.commands._inputs import inputs_from_args
    from edge_prune.runner import stderr_progress

    inputs = inputs_from_args(args)
    config = inputs.config
    cache = Path(args.out) / f"search-{inputs.target.name}.cache"
    result, point_dirs = run_search(inputs, options, cache, stderr_progress)
    destination = write_search(result, point_dirs, args.out, config, stderr_progress)
    print(result.conclusion())
    stderr_progress(f"search written to {destination}/")
    return 0 if result.best is not None else 1


def _integers(text: str, argument: str) -> tuple[int, ...]:
    from edge_prune.errors import ConfigError

    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{argument}: got {text!r}; expected comma-separated integers, e.g. 0,8"
        ) from None
