"""``edge-prune sweep``: placeholder until the lead replaces it."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="(not implemented yet)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from edge_prune.errors import ConfigError

    raise ConfigError("edge-prune sweep: not implemented yet")
