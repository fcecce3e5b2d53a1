"""``edge-prune search``: the smallest model that fits a target within the accuracy tolerance."""

from __future__ import annotations

import argparse

from edge_prune.commands._inputs import add_input_arguments

EXAMPLES = """\
examples:
  edge-prune search --target cortex-m4
  edge-prune search --target samd21 --trials 30 --jobs 2 --out build
  edge-prune search --target nrf52810 --model kws.keras --data kws.npz --schedules polynomial,rewind
  edge-prune search --target samd21 --storage postgresql://user:pw@db/edge --study kws-samd21

writes OUT/search-<target>/: pareto.md (every point, the Pareto front, the chosen one),
pareto.csv, pareto.json, pareto.png (flash and RAM needed vs TFLM accuracy, budgets and
feasible band), best.toml (edge-prune model --config best.toml --target TARGET rebuilds the
chosen point byte for byte) and best/ (as build/<target>/). The Optuna study and the points
built are kept in OUT/search-<target>.cache/ (study.journal): running the same command again
resumes it. With --storage/--study, commands on several machines work on one study; each
machine keeps its own points cache. Watch a study: optuna-dashboard OUT/search-<target>.cache/
study.journal (pip install optuna-dashboard), or optuna-dashboard URL for a database.

exit codes: 0 a point fits the target within the accuracy tolerance, 1 none does (the closest
one and what it misses by are named; the files are still written), 2 bad input, 130 interrupted.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search channel ratio, sparsity, clusters and schedule for the smallest model "
        "that fits",
        description=(
            "An Optuna study over structured ratio, final sparsity, cluster count, LUT width and "
            "pruning schedule: minimise flash needed and loss, with the target's flash and RAM "
            "and the accuracy tolerance as constraints. The dense model and each channel-removal "
            "ratio's model are trained once; each point runs the stages of 'edge-prune model', "
            "checked on the TFLM interpreter. Chooses the point with the least flash needed "
            "among those within the accuracy tolerance that fit TARGET."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(
        parser,
        config_help="base pipeline config as for 'edge-prune model'; the search sets "
        "structured.ratio, prune.final_sparsity, prune.schedule and compress.* per point",
        out_help="write DIR/search-<target>/ and the study and points cache "
        "DIR/search-<target>.cache/ (default: build)",
    )
    parser.add_argument(
        "--trials", type=int, default=20, metavar="N", help="points in the study (default 20)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="local worker processes (default 1; at most the cores this process may use)",
    )
    parser.add_argument(
        "--ratios",
        default="0,0.25,0.5,0.625,0.75,0.875",
        metavar="LIST",
        help="structured (channel-removal) ratios to choose from",
    )
    parser.add_argument(
        "--sparsities",
        default="0,0.5,0.6,0.7,0.8,0.85,0.9,0.95",
        metavar="LIST",
        help="final sparsities to choose from",
    )
    parser.add_argument(
        "--clusters",
        default="0,4,8,16",
        metavar="LIST",
        help="cluster counts to choose from (0 = clustering off)",
    )
    parser.add_argument(
        "--bitwidths",
        default="0",
        metavar="LIST",
        help="LUT index widths to choose from: 2, 3, 4, or 0 = the build weighs LUT, pruning "
        "bitmask and Huffman per tensor (default 0)",
    )
    parser.add_argument(
        "--schedules",
        default="polynomial",
        metavar="LIST",
        help="pruning schedules: polynomial, iterative, rewind (default: polynomial)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage shared by several machines, e.g. postgresql://user:pw@host/db "
        "(needs pip install 'edge-prune[postgres]'); default: a journal file in the cache",
    )
    parser.add_argument(
        "--study", metavar="NAME", help="study name in --storage (default: from the inputs)"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from edge_prune.commands._inputs import inputs_from_args
    from edge_prune.runner import stderr_progress
    from edge_prune.search.point import SearchOptions, SearchSpace
    from edge_prune.search.render import write_search
    from edge_prune.search.study import run_search
    from edge_prune.search.sweep import parse_fractions

    space = SearchSpace(
        ratios=parse_fractions(args.ratios, "--ratios", "a channel ratio", sort=False),
        sparsities=parse_fractions(args.sparsities, "--sparsities", sort=False),
        clusters=_integers(args.clusters, "--clusters"),
        bitwidths=_integers(args.bitwidths, "--bitwidths"),
        schedules=tuple(s.strip() for s in args.schedules.split(",")),
    )
    jobs = capped_jobs(args.jobs, stderr_progress)
    options = SearchOptions(
        trials=args.trials, jobs=jobs, space=space, storage=args.storage, study=args.study
    )
    inputs = inputs_from_args(args)
    config = inputs.config
    cache = Path(args.out) / f"search-{inputs.target.name}.cache"
    result, point_dirs = run_search(inputs, options, cache, stderr_progress)
    destination = write_search(result, point_dirs, args.out, config, stderr_progress)
    print(result.conclusion())
    stderr_progress(f"search written to {destination}/")
    return 0 if result.best is not None else 1


def capped_jobs(jobs: int, progress) -> int:
    """``jobs`` at most the cores this process may run on (each worker trains with
    TensorFlow: more workers than cores only share them, at about 0.8 GB each)."""
    import os

    if not isinstance(jobs, int) or jobs < 1:
        return jobs  # SearchOptions names the error
    cores = len(os.sched_getaffinity(0))
    if jobs > cores:
        progress(f"warning: --jobs {jobs} capped to {cores}, the cores available to this process")
        return cores
    return jobs


def _integers(text: str, argument: str) -> tuple[int, ...]:
    from edge_prune.errors import ConfigError

    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{argument}: got {text!r}; expected comma-separated integers, e.g. 0,8"
        ) from None
