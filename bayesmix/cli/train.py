"""``bayesmix train``: proxy-model sweeps that append real losses to a run table."""

from bayesmix.proxy.cli import add_train_parser as add_parser, run_train as run

__all__ = ["add_parser", "run"]
