"""Run-table rows of the proxy trainer and their atomic merging into a table file.

Rows follow the package schema (:mod:`bayesmix.data.table`): ``run, size, step,
tokens, eval, loss, mix.<domain>...``, one per (checkpoint, eval domain).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bayesmix.data.schedule import Schedule, with_schedule

from bayesmix.data.table import (MIX_PREFIX, SUFFIXES, RunTableError, mixture_columns, read_table, validate_runs,
                           write_table)
from bayesmix.data.io import check_output


def checkpoint_rows(*, run: str, size: int, step: int, tokens: int, losses: Mapping[str, float],
                    mixture: Mapping[str, float], schedule: Schedule | None = None) -> pd.DataFrame:
    """The rows of one checkpoint: one per eval domain (with the learning rate and the
    run's schedule spec when ``schedule`` is given)."""
    records = [{"run": run, "size": int(size), "step": int(step), "tokens": int(tokens), "eval": e,
                "loss": float(loss), **{MIX_PREFIX + d: float(p) for d, p in mixture.items()}}
               for e, loss in losses.items()]
    rows = pd.DataFrame.from_records(records)
    return rows if schedule is None else with_schedule(rows, schedule)


def empty_rows(domains: list[str]) -> pd.DataFrame:
    columns = ["run", "size", "step", "tokens", "eval", "loss", *(MIX_PREFIX + d for d in domains)]
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("run", "eval") else float) for c in columns})


def merge_into(path, rows: pd.DataFrame, runs: list[str] | None = None) -> pd.DataFrame:
    """Replace the rows of ``runs`` (default: those in ``rows``) in the table at ``path``, atomically.

    The file is created when missing. Its mixture columns must match the new
    rows' (same corpus domains); otherwise nothing is written.
    """
    path = Path(path)
    runs = sorted(set(rows["run"])) if runs is None else runs
    parts = []
    if path.exists():
        existing = read_table(path)
        if len(existing):
            old, new = set(mixture_columns(existing)), set(mixture_columns(rows))
            if old != new:
                raise RunTableError(
                    f"{path} has mixture columns {sorted(old)} but the new rows have {sorted(new)}; "
                    "write runs on another corpus to another file")
            parts.append(existing[~existing["run"].astype(str).isin(runs)])
    parts.append(rows)
    parts = [p for p in parts if len(p)]
    if not parts:
        return rows
    combined = validate_runs(pd.concat(parts, ignore_index=True))
    write_table(combined, path)
    return combined


def check_out_table(path, domains: list[str]) -> None:
    """Fail early (before training) if ``path`` cannot take rows of a corpus with ``domains``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise RunTableError(f"unsupported run-table file type {path.suffix!r} for {path}; "
                            f"use one of {sorted(set(SUFFIXES))}")
    if path.is_dir():
        raise RunTableError(f"{path} is a directory, not a run-table file")
    check_output(path, suffixes=tuple(SUFFIXES), option="out", what="run table")
    if path.exists():
        existing = read_table(path)
        old, new = set(mixture_columns(existing)), {MIX_PREFIX + d for d in domains}
        if len(existing) and old != new:
            raise RunTableError(f"{path} has mixture columns {sorted(old)} but this corpus gives {sorted(new)}; "
                                "write runs on another corpus to another file")
