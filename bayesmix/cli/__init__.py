"""The ``bayesmix`` command line.

    bayesmix fit RUNS --law mix --out fit.nc        fit a law with NUTS
    bayesmix predict FIT --mixtures FILE            predict with intervals
    bayesmix compare RUNS --laws mix,implicit       rank laws by PSIS-LOO
    bayesmix pipeline RUNS --target-size N ...      nested step -> size -> mixing prediction
    bayesmix suggest FIT --q 4 --out next.csv       the next mixtures to run
    bayesmix train --mixtures FILE --out runs.parquet   proxy runs on the bundled corpus
    bayesmix report FIT --baseline MIX --out r.html risk-aware HTML report
    bayesmix demo                                   the main job on the bundled data

Each subcommand lives in ``bayesmix/cli/<name>.py`` (``add_parser`` and
``run``). This entry point is the one place that sets process-wide JAX
options (the compiled programs kept on disk: :mod:`bayesmix.inference.compilecache`,
``BAYESMIX_COMPILE_CACHE=0`` turns it off); library calls never change them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

COMMANDS = ("fit", "predict", "compare", "pipeline", "suggest", "train", "report", "demo")

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from bayesmix import __version__

    parser = argparse.ArgumentParser(
        prog="bayesmix",
        description="Bayesian data-mixing laws: predict a large model's loss on any training "
        "mixture from small runs, with credible intervals, and choose what to run next.",
    )
    parser.add_argument("--version", action="version", version=f"bayesmix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"bayesmix.cli.{name}").add_parser(sub)
    return parser


def _error_text(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print warnings as ``bayesmix: warning: ...`` on one line (CLI only)."""
    print(f"bayesmix: {category.__name__}: {' '.join(str(message).split())}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bayesmix.inference.diagnostics import DiagnosticsError

    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    warnings.showwarning = _one_line_warning
    from bayesmix.inference.compilecache import use_compile_cache

    if args.command != "train":  # the proxy trainer is torch's
        use_compile_cache()
    try:
        return int(args.func(args) or 0)
    except (*USER_ERRORS, DiagnosticsError) as exc:
        print(f"bayesmix {args.command}: error: {_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bayesmix {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
