"""Arguments shared by the commands that run the pipeline (``model``, ``sweep``)."""

from __future__ import annotations


def add_input_arguments(parser, *, config_help: str, out_help: str) -> None:
    """--target, --model, --data, --config, --out, --tolerance, --max-latency-ms and
    --allow-lambda."""
    parser.add_argument(
        "--target",
        required=True,
        help="target name from targets/ (e.g. cortex-m4) or a path to a .toml",
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="your tf_keras model: .keras, .h5 or a SavedModel directory "
        "(default: the bundled digits CNN)",
    )
    parser.add_argument(
        "--data",
        metavar="NPZ",
        help=".npz with x_train, y_train, x_test, y_test (default: the bundled "
        "8x8 digits, CC BY 4.0)",
    )
    parser.add_argument("--config", metavar="TOML", help=config_help)
    parser.add_argument("--out", default="build", metavar="DIR", help=out_help)
    parser.add_argument(
        "--tolerance",
        type=float,
        metavar="POINTS",
        help="override select.tolerance_points: allowed TFLM accuracy drop of the deployable "
        "artifact vs the dense model, in percentage points",
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        metavar="MS",
        help="override select.max_latency_ms: time budget of one inference on the target "
        "(instructions per inference at its clock; a target file's latency_ms applies too): "
        "a candidate over it is not chosen",
    )
    parser.add_argument(
        "--allow-lambda",
        action="store_true",
        help="load a model file holding Lambda layers (runs code stored in it)",
    )


def inputs_from_args(args):
    """Target, config (with ``--tolerance``), data and model file from the shared arguments,
    checked before any training (:func:`edge_prune.stages.prepare_inputs`)."""
    from edge_prune.config import load_config, with_overrides
    from edge_prune.stages import prepare_inputs

    config = with_overrides(
        load_config(args.config),
        {"select.tolerance_points": args.tolerance, "select.max_latency_ms": args.max_latency_ms},
        "command line",
    )
    return prepare_inputs(
        args.target,
        config,
        model_path=args.model,
        data_path=args.data,
        allow_lambda=args.allow_lambda,
    )
