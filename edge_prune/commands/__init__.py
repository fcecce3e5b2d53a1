"""One module per ``edge-prune`` subcommand: each has ``register(subparsers)`` (cheap: argparse
only) and a ``run(args)`` that imports what the command needs."""
