"""``edge-prune model``: the whole pipeline on the bundled example or on your model and data."""

from __future__ import annotations

import argparse

from edge_prune.commands._inputs import add_input_arguments

EXAMPLES = """\
examples:
  edge-prune model --target cortex-m4
  edge-prune model --target cortex-m7 --model my_model.keras --data my_data.npz
  edge-prune model --target path/to/my_board.toml --config prune.toml --out build
  edge-prune model --target cortex-m4 --final-sparsity 0.9 --structured-ratio 0.5

exit codes: 0 the deployable model fits the target, 1 it does not fit (artifacts and report
are still written), 2 bad input (nothing written), 130 interrupted (nothing half-written).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "model",
        help="train, prune, convert, check on TFLM and measure a model for a target",
        description=(
            "Train dense, structured-prune (optional), magnitude-prune with a polynomial-decay "
            "schedule, strip, cluster, convert to int8 (dense storage, sparse-encoded, "
            "LUT-compressed), run every artifact in the TFLM interpreter on held-out data, "
            "choose the smallest one that runs on TFLM within the accuracy tolerance, measure "
            "its footprint against TARGET, and write build/<target>/."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(
        parser,
        config_help="pipeline config: [train] [prune] [structured] [compress] [select] "
        "(see README; every key optional)",
        out_help="artifacts go to DIR/<target>/ (default: build)",
    )
    parser.add_argument(
        "--final-sparsity",
        type=float,
        metavar="S",
        help="override prune.final_sparsity, in [0, 0.99]",
    )
    parser.add_argument(
        "--structured-ratio",
        type=float,
        metavar="R",
        help="override structured.ratio: fraction of channels/units to remove "
        "before magnitude pruning (0 = off)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        metavar="N",
        help="override compress.clusters: weight values per layer (2-16)",
    )
    parser.add_argument(
        "--bitwidth",
        type=int,
        metavar="BITS",
        help="override compress.bitwidth: 2, 3 or 4 = LUT only, with indices this wide; 0 = "
        "per tensor the smallest of LUT, pruning bitmask and Huffman",
    )
    parser.add_argument(
        "--no-compress", action="store_true", help="skip clustering and TFLM compression"
    )
    parser.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.config import load_config, with_overrides
    from edge_prune.deploy import build_model

    config = with_overrides(
        load_config(args.config),
        {
            "prune.final_sparsity": args.final_sparsity,
            "structured.ratio": args.structured_ratio,
            "compress.clusters": args.clusters,
            "compress.bitwidth": args.bitwidth,
            "compress.enabled": False if args.no_compress else None,
            "select.tolerance_points": args.tolerance,
            "select.max_latency_ms": args.max_latency_ms,
            "train.epochs": args.epochs,
            "train.seed": args.seed,
        },
        source="command line",
    )
    outcome = build_model(
        args.target,
        config,
        model_path=args.model,
        data_path=args.data,
        out_dir=args.out,
        allow_lambda=args.allow_lambda,
    )
    return 0 if outcome.fits else 1
