"""The run table: schema, validation at the door, IO, wide <-> long.

One tidy row per (run, step, eval domain)::

    run   size       step  tokens  eval     loss   mix.web  mix.code ...
    r0    20000000   1000  ...     web      3.41   0.6      0.4

``size`` is the number of non-embedding parameters, ``mix.<domain>`` the
training proportion of each domain (constant within a run, summing to 1).
Validation happens once, in :func:`validate_runs`; every error names the runs
and columns at fault, and nothing is ever dropped silently.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

MIX_PREFIX = "mix."
REQUIRED = ("run", "size", "step", "eval", "loss")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
SILENT_TOLERANCE = 1e-6  # float round-off: renormalised without a warning


class RunTableError(ValueError):
    """A run table failed validation; the message names the runs and columns."""


def mixture_columns(df: pd.DataFrame) -> list[str]:
    """The ``mix.<domain>`` columns, in table order."""
    return [c for c in df.columns if str(c).startswith(MIX_PREFIX)]


def domains(df: pd.DataFrame) -> list[str]:
    """Training domain names (``mix.`` prefix removed)."""
    return [c[len(MIX_PREFIX):] for c in mixture_columns(df)]


def _few(items, limit: int = 8) -> str:
    items = list(items)
    head = ", ".join(map(str, items[:limit]))
    return head + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _check_columns(df: pd.DataFrame) -> list[str]:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RunTableError(f"run table lacks required column(s) {missing}; it has {list(df.columns)}")
    cols = mixture_columns(df)
    if not cols:
        raise RunTableError("run table has no mixture columns: add one 'mix.<domain>' column per training domain")
    return cols


def _coerce(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = df.copy()
    out["run"] = out["run"].astype(str)
    out["eval"] = out["eval"].astype(str)
    for name in ("size", "step", "loss", "tokens", *cols):
        if name in out.columns:
            values = pd.to_numeric(out[name], errors="coerce")
            bad = out.loc[values.isna() & out[name].notna(), "run"]
            if len(bad):
                raise RunTableError(f"column {name!r} has non-numeric values in run(s) {_few(bad.unique())}")
            out[name] = values.astype(float)
    return out


def _check_integers(df: pd.DataFrame, name: str) -> None:
    values = df[name].to_numpy(float)
    bad = ~np.isfinite(values) | (values <= 0) | (values != np.round(values))
    if bad.any():
        raise RunTableError(
            f"column {name!r} must hold positive integers; bad values in run(s) {_few(df.loc[bad, 'run'].unique())}"
        )


def _check_losses(df: pd.DataFrame) -> None:
    loss = df["loss"].to_numpy(float)
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        rows = df.loc[bad, ["run", "step", "eval", "loss"]]
        where = _few(f"{r.run}@{int(r.step) if np.isfinite(r.step) else r.step}/{r.eval}={r.loss}"
                     for r in rows.itertuples())
        raise RunTableError(f"losses must be finite and positive; bad rows (run@step/eval=loss): {where}")


def _check_proportions(df: pd.DataFrame, cols: list[str], tol: float) -> pd.DataFrame:
    r = df[cols].to_numpy(float)
    outside = ~np.isfinite(r) | (r < 0) | (r > 1)
    if outside.any():
        bad_rows, bad_cols = np.nonzero(outside)
        raise RunTableError(
            f"proportions must lie in [0, 1]; bad values in column(s) {_few(sorted({cols[j] for j in bad_cols}))} "
            f"of run(s) {_few(df['run'].iloc[bad_rows].unique())}"
        )
    sums = r.sum(axis=1)
    off = np.abs(sums - 1)
    far = off > tol
    if far.any():
        runs = df.loc[far, ["run"]].assign(total=sums[far]).drop_duplicates("run")
        raise RunTableError(
            f"proportions must sum to 1 (tolerance {tol}); run(s) sum to "
            f"{_few(f'{x.run}: {x.total:.4f}' for x in runs.itertuples())}"
        )
    noisy = off > SILENT_TOLERANCE
    if noisy.any():
        warnings.warn(
            f"renormalised the proportions of {df.loc[noisy, 'run'].nunique()} run(s) that summed to 1 "
            f"within {tol} (largest deviation {off.max():.2g})",
            UserWarning,
            stacklevel=4,
        )
    out = df.copy()
    out[cols] = r / sums[:, None]
    return out


def _check_constant_within_run(df: pd.DataFrame, cols: list[str]) -> None:
    for name in ("size", *cols):
        varying = df.groupby("run")[name].nunique()
        varying = varying[varying > 1]
        if len(varying):
            what = "size" if name == "size" else f"mixture (column {name!r})"
            raise RunTableError(f"the {what} changes between rows of run(s) {_few(varying.index)}")


def _check_duplicates(df: pd.DataFrame) -> None:
    dup = df.duplicated(["run", "step", "eval"], keep=False)
    if dup.any():
        keys = df.loc[dup, ["run", "step", "eval"]].drop_duplicates()
        raise RunTableError(
            "duplicate (run, step, eval) rows: "
            + _few(f"({k.run}, {int(k.step)}, {k.eval})" for k in keys.itertuples())
        )


def validate_runs(df: pd.DataFrame, *, tol: float = 1e-2) -> pd.DataFrame:
    """Check a run table and return a cleaned copy.

    Dtypes are coerced (run/eval str, size/step int64, loss float64), rows are
    sorted by (run, size, step, eval), and proportions that sum to 1 within
    ``tol`` are renormalised (with one warning unless the deviation is float
    round-off). Raises :class:`RunTableError` naming runs and columns otherwise.
    """
    if not isinstance(df, pd.DataFrame):
        raise RunTableError(f"a run table must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise RunTableError("the run table is empty")
    cols = _check_columns(df)
    out = _coerce(df, cols)
    _check_integers(out, "size")
    _check_integers(out, "step")
    if "tokens" in out.columns and out["tokens"].notna().any():
        _check_integers(out[out["tokens"].notna()], "tokens")
    _check_losses(out)
    out = _check_proportions(out, cols, tol)
    _check_constant_within_run(out, cols)
    _check_duplicates(out)
    out["size"] = out["size"].astype(np.int64)
    out["step"] = out["step"].astype(np.int64)
    if "tokens" in out.columns and out["tokens"].notna().all():
        out["tokens"] = out["tokens"].astype(np.int64)
    order = ["run", "size", "step", *(["tokens"] if "tokens" in out.columns else []), "eval", "loss", *cols]
    rest = [c for c in out.columns if c not in order]
    return out[order + rest].sort_values(["run", "size", "step", "eval"], kind="stable").reset_index(drop=True)


def require_levels(df: pd.DataFrame, *, law: str, mixtures: int = 0, sizes: int = 0,
                   checkpoints: int = 0, evals: int = 0) -> None:
    """Raise if the table has too few distinct mixtures, sizes, checkpoints per run or evals."""
    cols = mixture_columns(df)
    counts = {
        "mixtures": (mixtures, len(df.drop_duplicates(cols)) if cols else 0),
        "sizes": (sizes, df["size"].nunique()),
        "eval domains": (evals, df["eval"].nunique()),
    }
    for what, (needed, have) in counts.items():
        if have < needed:
            raise RunTableError(f"law {law!r} needs at least {needed} distinct {what}, the table has {have}")
    if checkpoints:
        per_run = df.groupby("run")["step"].nunique()
        short = per_run[per_run < checkpoints]
        if len(short):
            raise RunTableError(
                f"law {law!r} needs at least {checkpoints} checkpoints per run; run(s) with fewer: "
                + _few(f"{run} ({n})" for run, n in short.items())
            )


def _format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise RunTableError(f"unsupported file type {path.suffix!r} for {path}; use one of {sorted(SUFFIXES)}")
    return fmt


def read_table(path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines table by suffix (never pickle)."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def write_table(df: pd.DataFrame, path) -> Path:
    """Write a table by suffix, atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_runs(path) -> pd.DataFrame:
    """Read and validate a run table (.csv, .parquet/.pq, .jsonl/.json)."""
    return validate_runs(read_table(path))


def write_runs(df: pd.DataFrame, path) -> Path:
    """Validate and write a run table atomically."""
    return write_table(validate_runs(df), path)


def _mapping(columns, what: str) -> dict[str, str]:
    if isinstance(columns, dict):
        return {str(k): str(v) for k, v in columns.items()}
    if isinstance(columns, (list, tuple)):
        return {str(c): str(c) for c in columns}
    raise RunTableError(f"{what} must be a list of columns or a dict source -> name")


def from_wide(
    table: pd.DataFrame,
    *,
    mixture_columns: dict[str, str] | list[str],
    loss_columns: dict[str, str] | list[str],
    run_column: str | None = None,
    size: int | str = 1,
    step: int | str = 1,
    tokens: int | str | None = None,
    losses: pd.DataFrame | None = None,
    on: str | None = None,
) -> pd.DataFrame:
    """Convert a wide table (one row per run) to the tidy run table.

    ``mixture_columns`` / ``loss_columns`` map source columns to domain / eval
    names (a list keeps the names). ``size``, ``step``, ``tokens`` are constants
    or column names. With ``losses``, it is joined to ``table`` on ``on`` first.
    """
    if losses is not None:
        if on is None or on not in table.columns or on not in losses.columns:
            raise RunTableError(f"joining losses needs a column on= present in both tables, got {on!r}")
        table = table.merge(losses, on=on, how="inner", validate="one_to_one")
    mix_map = _mapping(mixture_columns, "mixture_columns")
    loss_map = _mapping(loss_columns, "loss_columns")
    missing = [c for c in [*mix_map, *loss_map] if c not in table.columns]
    if missing:
        raise RunTableError(f"wide table lacks column(s) {_few(missing)}")
    if run_column is not None and run_column not in table.columns:
        raise RunTableError(f"wide table lacks the run column {run_column!r}")
    base = pd.DataFrame(index=table.index)
    base["run"] = table[run_column].astype(str) if run_column else [f"run{i}" for i in range(len(table))]
    for name, value in (("size", size), ("step", step), ("tokens", tokens)):
        if value is None:
            continue
        if isinstance(value, str):
            if value not in table.columns:
                raise RunTableError(f"wide table lacks the {name} column {value!r}")
            base[name] = table[value].to_numpy()
        else:
            base[name] = value
    for source, domain in mix_map.items():
        base[MIX_PREFIX + domain] = table[source].to_numpy(float)
    long = base.join(table[list(loss_map)].rename(columns=loss_map))
    id_vars = list(base.columns)
    long = long.melt(id_vars=id_vars, value_vars=list(loss_map.values()), var_name="eval", value_name="loss")
    return validate_runs(long)


def to_wide(df: pd.DataFrame, *, step: int | None = None) -> pd.DataFrame:
    """One row per (run, size, step) with mix.* columns and one loss column per eval (inverse of from_wide)."""
    if step is not None:
        df = df[df["step"] == step]
    keys = ["run", "size", "step", *(["tokens"] if "tokens" in df.columns else []), *mixture_columns(df)]
    wide = df.pivot_table(index=keys, columns="eval", values="loss", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


def load_regmix(directory, *, split: str = "all", size: int = 1_000_000, step: int = 1000) -> pd.DataFrame:
    """The RegMix tables (Liu et al. 2024) as one run table.

    Reads ``{train,test}_mixture_1m.csv`` and ``{train,test}_pile_loss_1m.csv``,
    joins them on ``index``; runs are ``train-<index>`` / ``test-<index>``;
    domains drop the ``train_the_pile_`` prefix, evals the ``metric/the_pile_``
    prefix and ``_val_loss`` suffix (Pile-CC is ``pile_cc``). Proportions are
    rounded to 3 decimals in the files, so they are renormalised with a warning.
    """
    splits = {"all": ("train", "test"), "train": ("train",), "test": ("test",)}
    if split not in splits:
        raise RunTableError(f"split must be one of {sorted(splits)}, got {split!r}")
    directory = Path(directory)
    parts, caught = [], []
    for name in splits[split]:
        mix = read_table(directory / f"{name}_mixture_1m.csv")
        loss = read_table(directory / f"{name}_pile_loss_1m.csv")
        mix_cols = {c: c.removeprefix("train_the_pile_") for c in mix.columns if c != "index"}
        loss_cols = {c: c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in loss.columns if c != "index"}
        table = mix.merge(loss, on="index", validate="one_to_one")
        table["run"] = name + "-" + table["index"].astype(str)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            parts.append(from_wide(table, mixture_columns=mix_cols, loss_columns=loss_cols, run_column="run",
                                   size=size, step=step))
        caught += seen
    runs = validate_runs(pd.concat(parts, ignore_index=True)) if len(parts) > 1 else parts[0]
    if caught:
        warnings.warn(f"RegMix proportions are rounded to 3 decimals: {caught[0].message}", UserWarning, stacklevel=2)
    return runs


def run_mixtures(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index ``run``), one column per domain (no prefix)."""
    cols = mixture_columns(df)
    out = df.drop_duplicates("run").set_index("run")[cols]
    return out.rename(columns=lambda c: c[len(MIX_PREFIX):])


def run_sizes(df: pd.DataFrame) -> pd.Series:
    """Model size of each run (index ``run``)."""
    return df.drop_duplicates("run").set_index("run")["size"]
