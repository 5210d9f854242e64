"""The run table: schema, validation at the door, IO, wide <-> long.

One tidy row per (run, step, eval domain)::

    run   size       step  tokens  eval     loss   mix.web  mix.code ...
    r0    20000000   1000  ...     web      3.41   0.6      0.4

``size`` is the number of non-embedding parameters, ``tokens`` (optional) the
tokens seen at ``step``, ``mix.<domain>`` the training proportion of each
domain (constant within a run, summing to 1). Validation happens once, in
:func:`validate_runs`; every error names the runs and columns at fault, and
nothing is ever dropped silently.

Files are CSV, Parquet or JSON lines, chosen by suffix; pickle is never read
or written. Writes are atomic: a temporary file in the same folder, then a
rename, so readers see the old table or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.data.io import atomic_write
from bayesmix.data.schedule import ScheduleError, check_schedule, short_list

__all__ = [
    "MIX_PREFIX",
    "REQUIRED",
    "SUFFIXES",
    "RunTableError",
    "absent_domains",
    "check_domain_name",
    "domains",
    "from_wide",
    "load_regmix",
    "mixture_columns",
    "read_rows",
    "read_runs",
    "read_table",
    "run_mixtures",
    "run_sizes",
    "select_evals",
    "to_wide",
    "validate_runs",
    "write_runs",
    "write_table",
]

MIX_PREFIX = "mix."
REQUIRED = ("run", "size", "step", "eval", "loss")
SORT_KEYS = ("run", "size", "step", "eval")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
DOMAIN_NAME = re.compile(r"\w[\w.+-]*")  # letters, digits, _ . + - (see check_domain_name)
SILENT_TOLERANCE = 1e-6  # sums this close to 1 are float round-off: renormalised without a warning
REGMIX_SPLITS = {"all": ("train", "test"), "train": ("train",), "test": ("test",)}
REGMIX_MIX_PREFIX = "train_the_pile_"
REGMIX_LOSS_PREFIX, REGMIX_LOSS_SUFFIX = "metric/the_pile_", "_val_loss"
# pandas' default missing-value markers, applied to every CSV column except the text keys
# (an eval domain called "NA" or "null" stays a name).
_CSV_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
_TEXT_COLUMNS = ("run", "eval")
# Exact float parsing: opt-in before pandas 3, the default (and the option deprecated) from pandas 3 on.
_CSV_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


class RunTableError(ValueError):
    """A run table failed validation; the message names the runs and columns."""


# --------------------------------------------------------------------------- schema


def mixture_columns(df: pd.DataFrame) -> list[str]:
    """The ``mix.<domain>`` columns of ``df``, in table order."""
    return [c for c in df.columns if str(c).startswith(MIX_PREFIX)]


def absent_domains(df: pd.DataFrame) -> list[str]:
    """Training domains whose proportion is 0 in every row of ``df``."""
    return [c[len(MIX_PREFIX):] for c in mixture_columns(df) if not (pd.to_numeric(df[c]) != 0).any()]


def domains(df: pd.DataFrame) -> list[str]:
    """Training domain names (``mix.`` prefix removed), in table order."""
    return [c[len(MIX_PREFIX):] for c in mixture_columns(df)]


def _num(x) -> str:
    """A step or size for messages: ``20`` rather than ``20.0``."""
    return f"{x:.0f}" if np.isfinite(x) and x == round(x) else str(x)


def _outside_stacklevel() -> int:
    """``stacklevel`` that attributes a warning to the first caller outside this module."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


# --------------------------------------------------------------------------- validation


def _check_columns(df: pd.DataFrame) -> list[str]:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RunTableError(f"run table lacks required column(s) {missing}; it has {list(df.columns)}")
    cols = mixture_columns(df)
    if not cols:
        raise RunTableError("run table has no mixture columns: add one 'mix.<domain>' column per training domain")
    for col in cols:
        check_domain_name(str(col)[len(MIX_PREFIX):], column=str(col), others=[str(c) for c in cols])
    return cols


def check_domain_name(name: str, *, column: str | None = None, others: Iterable[str] = ()) -> str:
    """Return ``name`` if it can name a training domain, else raise :class:`RunTableError`.

    Domain names end up in netCDF variable names and file names, so they hold
    only letters, digits and ``_ . + -``, and start with a letter, digit or
    ``_``. ``column``/``others``: the column it came from and its neighbours,
    for the message.
    """
    where = f"column {column!r}" if column else f"domain {name!r}"
    if not name:
        raise RunTableError(f"{where} has no domain name after {MIX_PREFIX!r}")
    if name != name.strip():
        twin = MIX_PREFIX + name.strip()
        clash = f" and would be the same domain as column {twin!r}" if twin in others else ""
        raise RunTableError(f"{where}: the domain name {name!r} has leading or trailing spaces{clash}; "
                            "remove them")
    if not DOMAIN_NAME.fullmatch(name):
        raise RunTableError(f"{where}: the domain name {name!r} is not allowed; domain names become netCDF "
                            "variable and file names, so they may hold only letters, digits and _ . + - "
                            "(no spaces, slashes or other punctuation) and start with a letter, digit or _")
    return name


def _text_column(values: pd.Series, name: str) -> pd.Series:
    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise RunTableError(f"column {name!r} is missing or empty in {int(missing.sum())} row(s) "
                            f"(row positions {short_list(np.flatnonzero(missing))})")
    return values.astype(str)


def _numeric_column(df: pd.DataFrame, name: str) -> pd.Series:
    """``df[name]`` as int64 when it is already integer with nothing missing, else float64."""
    values = df[name]
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype(np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        raise RunTableError(f"column {name!r} has non-numeric values in run(s) "
                            f"{short_list(df.loc[bad, 'run'].unique())}: "
                            f"{short_list(repr(v) for v in values[bad].unique())}")
    return pd.Series(numbers.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index, name=name)


def _coerce(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = df.copy()
    for name in _TEXT_COLUMNS:
        out[name] = _text_column(out[name], name)
    for name in ("size", "step", "loss", "tokens", *cols):
        if name in out.columns:
            out[name] = _numeric_column(out, name)
    return out


def _check_integers(df: pd.DataFrame, name: str) -> None:
    values = df[name].to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values <= 0) | (values != np.round(values))
    if bad.any():
        raise RunTableError(f"column {name!r} must hold positive integers; bad values "
                            f"{short_list(pd.unique(values[bad]))} in run(s) "
                            f"{short_list(df.loc[bad, 'run'].unique())}")


def _check_losses(df: pd.DataFrame) -> None:
    loss = df["loss"].to_numpy(np.float64)
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        rows = df.loc[bad, ["run", "step", "eval", "loss"]].itertuples()
        where = short_list(f"{r.run}@{_num(r.step)}/{r.eval}={r.loss}" for r in rows)
        raise RunTableError(f"losses must be finite and positive; bad rows (run@step/eval=loss): {where}")


def _check_range(df: pd.DataFrame, cols: list[str]) -> None:
    r = df[cols].to_numpy(np.float64)
    outside = ~np.isfinite(r) | (r < 0) | (r > 1)
    if outside.any():
        bad_rows, bad_cols = np.nonzero(outside)
        raise RunTableError(
            f"proportions must lie in [0, 1]; bad values in column(s) "
            f"{short_list(cols[j] for j in sorted(set(bad_cols)))} "
            f"of run(s) {short_list(df['run'].iloc[bad_rows].unique())}"
        )


def _check_constant_within_run(df: pd.DataFrame, cols: list[str]) -> None:
    varying = df.groupby("run", sort=False)[["size", *cols]].nunique(dropna=False) > 1
    if varying["size"].any():
        raise RunTableError(f"the size changes between rows of run(s) {short_list(varying.index[varying['size']])}")
    mix = varying[cols]
    runs = mix.any(axis=1)
    if runs.any():
        changed = [c for c in cols if mix[c].any()]
        raise RunTableError(f"the mixture changes between rows of run(s) {short_list(mix.index[runs])} "
                            f"(column(s) {short_list(changed)})")


def _renormalise(df: pd.DataFrame, cols: list[str], tol: float, note: str) -> pd.DataFrame:
    """Divide each row's proportions by their sum; error beyond ``tol``, one warning beyond round-off."""
    r = df[cols].to_numpy(np.float64)
    sums = r.sum(axis=1)
    off = np.abs(sums - 1)
    far = off > tol
    if far.any():
        runs = df.loc[far, ["run"]].assign(total=sums[far]).drop_duplicates("run")
        raise RunTableError(
            f"proportions must sum to 1 (tolerance {tol}); run(s) sum to "
            f"{short_list(f'{x.run}: {x.total:.4f}' for x in runs.itertuples())}"
        )
    # Rows already 1 up to the round-off of their own sum are left alone, so validation is idempotent.
    fix = off > len(cols) * np.finfo(np.float64).eps
    if not fix.any():
        return df
    noisy = off > SILENT_TOLERANCE
    if noisy.any():
        warnings.warn(
            f"{note}renormalised the proportions of {df.loc[noisy, 'run'].nunique()} run(s) that summed to 1 "
            f"within {tol} (largest deviation {off.max():.2g})",
            UserWarning,
            stacklevel=_outside_stacklevel(),
        )
    out = df.copy()
    r[fix] /= sums[fix, None]
    out[cols] = r
    return out


def _check_duplicates(df: pd.DataFrame) -> None:
    dup = df.duplicated(["run", "step", "eval"], keep=False)
    if dup.any():
        keys = df.loc[dup, ["run", "step", "eval"]].drop_duplicates()
        raise RunTableError("duplicate (run, step, eval) rows: "
                            + short_list(f"({k.run}, {_num(k.step)}, {k.eval})" for k in keys.itertuples()))


def _validate(df: pd.DataFrame, *, tol: float, note: str = "") -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise RunTableError(f"a run table must be a pandas DataFrame, got {type(df).__name__}")
    cols = _check_columns(df)
    if df.empty:
        raise RunTableError("the run table is empty")
    out = _coerce(df, cols)
    _check_integers(out, "size")
    _check_integers(out, "step")
    if "tokens" in out.columns and out["tokens"].notna().any():
        _check_integers(out[out["tokens"].notna()], "tokens")
    _check_losses(out)
    _check_range(out, cols)
    _check_constant_within_run(out, cols)
    out = _renormalise(out, cols, tol, note)
    _check_duplicates(out)
    try:
        out = check_schedule(out)
    except ScheduleError as err:
        raise RunTableError(str(err)) from None
    out["size"] = out["size"].astype(np.int64)
    out["step"] = out["step"].astype(np.int64)
    if "tokens" in out.columns and out["tokens"].notna().all():
        out["tokens"] = out["tokens"].astype(np.int64)
    order = ["run", "size", "step", *(["tokens"] if "tokens" in out.columns else []), "eval", "loss", *cols]
    rest = [c for c in out.columns if c not in order]
    return out[order + rest].sort_values(list(SORT_KEYS), kind="stable").reset_index(drop=True)


def validate_runs(df: pd.DataFrame, *, tol: float = 1e-2) -> pd.DataFrame:
    """Check a run table and return a cleaned copy (same rows, none dropped).

    ``df``: one row per (run, step, eval) with columns ``run, size, step, eval,
    loss``, optional ``tokens`` and one ``mix.<domain>`` per training domain.
    Returns a copy with run/eval as str, size/step int64 (tokens too when no
    value is missing), loss and proportions float64, columns in schema order
    (extra columns kept at the end) and rows sorted by (run, size, step, eval).
    Proportions that sum to 1 within ``tol`` are renormalised, with one
    ``UserWarning`` (how many runs, largest deviation) unless the deviation is
    float round-off. Raises :class:`RunTableError` naming the runs and columns
    at fault for anything else.
    """
    return _validate(df, tol=tol)


def select_evals(df: pd.DataFrame, evals: Iterable[str] | None, *, law: str) -> pd.DataFrame:
    """The rows of eval domains ``evals`` (every row when None); an unknown name is a
    :class:`RunTableError` that lists the eval domains the table has."""
    if evals is None:
        return df
    evals = [str(e) for e in evals]
    names = df["eval"].astype(str)
    known = sorted(names.unique())
    unknown = [e for e in evals if e not in known]
    if unknown or not evals:
        raise RunTableError(f"law {law!r}: unknown eval domain(s) {unknown or evals}; the table has {known}")
    return df[names.isin(evals)]


# --------------------------------------------------------------------------- files


def _format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise RunTableError(f"unsupported file type {path.suffix!r} for {path}; use one of {sorted(SUFFIXES)}")
    return fmt


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise RunTableError(f"{path} is empty (not even a header line)") from None
    text = [c for c in _TEXT_COLUMNS if c in header]
    na_values = {c: _CSV_NA for c in header if c not in text}
    return pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values=na_values,
                       **_CSV_FLOATS)


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RunTableError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise RunTableError(f"{path}, line {number}: expected one JSON object per line")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _json_value(value):
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _write_jsonl(df: pd.DataFrame, fh) -> None:
    names = [str(c) for c in df.columns]
    for row in df.itertuples(index=False, name=None):
        record = dict(zip(names, map(_json_value, row)))
        fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")


def read_table(path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines table by suffix, unvalidated (never pickle).

    CSV and JSON lines keep ``run``/``eval`` values as text (``007`` stays
    ``007``, an eval called ``NA`` is not missing) and floats exactly.
    """
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        if fmt == "csv":
            return _read_csv(path)
        if fmt == "parquet":
            return pd.read_parquet(path)
        return _read_jsonl(path)
    except UnicodeDecodeError as err:
        raise RunTableError(f"{path} is not UTF-8 text (undecodable byte at position {err.start}); "
                            f"save it as UTF-8") from None
    except RunTableError:
        raise
    except (ValueError, OSError) as err:  # pandas' parser errors, pyarrow's "magic bytes not found"
        raise RunTableError(f"{path} is not a readable {fmt} table: {' '.join(str(err).split())[:160]}") from None


def read_rows(path, what: str = "table") -> pd.DataFrame:
    """:func:`read_table` for a table the user gives: one with no rows is an error naming the file."""
    table = read_table(path)
    if table.empty:
        raise RunTableError(f"{path}: the {what} has no rows" + (" (only a header)" if len(table.columns) else ""))
    return table


def write_table(df: pd.DataFrame, path) -> Path:
    """Write ``df`` by suffix, atomically (temporary file in the same folder, then rename); returns the path."""
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with atomic_write(path) as fh:
            df.to_csv(fh, index=False, encoding="utf-8")
    elif fmt == "parquet":
        with atomic_write(path) as fh:
            df.to_parquet(fh, index=False)
    else:
        with atomic_write(path) as fh:
            _write_jsonl(df, fh)
    return path


def read_runs(path) -> pd.DataFrame:
    """Read and validate a run table (.csv, .parquet/.pq, .jsonl/.json as JSON lines)."""
    return validate_runs(read_table(path))


def write_runs(df: pd.DataFrame, path) -> Path:
    """Validate ``df`` and write it atomically (.csv, .parquet/.pq, .jsonl/.json); returns the path."""
    return write_table(validate_runs(df), path)


# --------------------------------------------------------------------------- wide <-> long


def _mapping(columns, what: str) -> dict[str, str]:
    """Source column -> name; a list keeps the names. Two sources may not share a name."""
    if isinstance(columns, Mapping):
        mapping = {str(k): str(v) for k, v in columns.items()}
    elif isinstance(columns, Iterable) and not isinstance(columns, (str, bytes)):
        mapping = {str(c): str(c) for c in columns}
    else:
        raise RunTableError(f"{what} must be a list of columns or a dict source -> name, got {type(columns).__name__}")
    if not mapping:
        raise RunTableError(f"{what} is empty")
    names = pd.Series(list(mapping.values()))
    if names.duplicated().any():
        raise RunTableError(f"{what} maps several columns to the same name(s) {short_list(names[names.duplicated()].unique())}")
    return mapping


def _unique_keys(table: pd.DataFrame, on: str, what: str) -> None:
    dup = table[on].duplicated(keep=False)
    if dup.any():
        raise RunTableError(f"the {what} table repeats {on}= value(s) {short_list(table.loc[dup, on].unique())}")


def _join(table: pd.DataFrame, losses: pd.DataFrame, on: str | None) -> pd.DataFrame:
    """One-to-one join of ``table`` and ``losses`` on ``on``; unmatched keys are an error, not dropped."""
    if on is None or on not in table.columns or on not in losses.columns:
        raise RunTableError(f"joining losses needs a column on= present in both tables, got {on!r}")
    shared = sorted(set(map(str, table.columns)) & set(map(str, losses.columns)) - {on})
    if shared:
        raise RunTableError(f"both tables have column(s) {short_list(shared)} besides on={on!r}; rename or drop them")
    _unique_keys(table, on, "mixture")
    _unique_keys(losses, on, "loss")
    joined = table.merge(losses, on=on, how="outer", indicator="_source", sort=False)
    alone = {side: joined.loc[joined["_source"] == side, on].tolist() for side in ("left_only", "right_only")}
    if alone["left_only"] or alone["right_only"]:
        raise RunTableError(f"the tables do not match on {on!r}: without losses {short_list(alone['left_only']) or 'none'}; "
                            f"without a mixture {short_list(alone['right_only']) or 'none'}")
    return joined.drop(columns="_source")


def _constant_or_column(table: pd.DataFrame, value, name: str):
    if isinstance(value, str):
        if value not in table.columns:
            raise RunTableError(f"wide table lacks the {name} column {value!r}")
        return table[value].to_numpy()
    return value


def _long_from_wide(table: pd.DataFrame, mix_map: dict[str, str], loss_map: dict[str, str], *,
                    run_column: str | None, size, step, tokens) -> pd.DataFrame:
    """Unvalidated long table: ``len(table) * len(loss_map)`` rows."""
    missing = [c for c in [*mix_map, *loss_map] if c not in table.columns]
    if missing:
        raise RunTableError(f"wide table lacks column(s) {short_list(missing)}")
    if run_column is not None and run_column not in table.columns:
        raise RunTableError(f"wide table lacks the run column {run_column!r}")
    base = pd.DataFrame(index=pd.RangeIndex(len(table)))
    base["run"] = (table[run_column].astype(str).to_numpy() if run_column is not None
                   else [f"run{i}" for i in range(len(table))])
    for name, value in (("size", size), ("step", step), ("tokens", tokens)):
        if value is not None:
            base[name] = _constant_or_column(table, value, name)
    for source, domain in mix_map.items():
        base[MIX_PREFIX + domain.removeprefix(MIX_PREFIX)] = table[source].to_numpy()
    parts = [base.assign(eval=name, loss=table[source].to_numpy()) for source, name in loss_map.items()]
    return pd.concat(parts, ignore_index=True)


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
    """Convert a wide table (one row per run) to the validated long run table.

    ``table``: one row per run (per checkpoint, if ``step`` is a column) with a
    proportion column per training domain and a loss column per eval domain.
    ``mixture_columns`` / ``loss_columns`` map source columns to domain / eval
    names (a list keeps the names; a leading ``mix.`` is not doubled).
    ``size``, ``step``, ``tokens``: a constant or a column name. With
    ``losses`` (a second wide table of loss columns), it is joined one-to-one to
    ``table`` on the column ``on`` first; keys found in only one table are an
    error. Run ids come from ``run_column``, else ``on``, else ``run0, run1...``.
    Returns ``len(table) * len(loss_columns)`` rows, as :func:`validate_runs`.
    """
    if losses is not None:
        table = _join(table, losses, on)
        run_column = run_column if run_column is not None else on
    long = _long_from_wide(table, _mapping(mixture_columns, "mixture_columns"),
                           _mapping(loss_columns, "loss_columns"),
                           run_column=run_column, size=size, step=step, tokens=tokens)
    return _validate(long, tol=1e-2)


def to_wide(df: pd.DataFrame, *, step: int | None = None) -> pd.DataFrame:
    """One row per (run, size, step): keys, ``mix.*`` columns and one loss column per eval (inverse of from_wide).

    ``df``: a run table. ``step``: keep only that checkpoint. Columns are
    ``run, size, step[, tokens], mix.<domain>..., <eval>...`` with evals in
    order of first appearance; an eval a checkpoint lacks is NaN (no row is
    dropped).
    """
    cols = _check_columns(df)
    if step is not None:
        at = df[df["step"] == step]
        if at.empty:
            raise RunTableError(f"no rows at step {step}; the table has steps {short_list(sorted(df['step'].unique()))}")
        df = at
    keys = ["run", "size", "step", *(["tokens"] if "tokens" in df.columns else []), *cols]
    evals = list(dict.fromkeys(df["eval"]))
    clash = [e for e in evals if e in keys]
    if clash:
        raise RunTableError(f"eval name(s) {short_list(clash)} clash with run-table columns; rename them first")
    meta = df.drop_duplicates(["run", "step"])[keys].reset_index(drop=True)
    losses = df.pivot(index=["run", "step"], columns="eval", values="loss").reset_index()
    wide = meta.merge(losses, on=["run", "step"], how="left", sort=False)[keys + evals]
    wide.columns = pd.Index(keys + evals)
    return wide


# --------------------------------------------------------------------------- public tables


def load_regmix(directory, *, split: str = "all", size: int = 1_000_000, step: int = 1000) -> pd.DataFrame:
    """The RegMix tables (Liu et al. 2024) as one validated run table.

    Reads ``<split>_mixture_1m.csv`` and ``<split>_pile_loss_1m.csv`` for
    ``split`` in ``train`` (512 runs), ``test`` (256) or ``all`` (768) and joins
    them on ``index``; runs are ``train-<index>`` / ``test-<index>``. Domains
    drop the ``train_the_pile_`` prefix (17), evals the ``metric/the_pile_``
    prefix and ``_val_loss`` suffix (13; Pile-CC is ``pile_cc``). Returns one
    row per (run, eval) at ``step`` with constant ``size``. The files round
    proportions to 3 decimals, so they are renormalised with one warning.
    """
    if split not in REGMIX_SPLITS:
        raise RunTableError(f"split must be one of {sorted(REGMIX_SPLITS)}, got {split!r}")
    directory = Path(directory)
    parts = []
    for name in REGMIX_SPLITS[split]:
        mix = read_table(directory / f"{name}_mixture_1m.csv")
        loss = read_table(directory / f"{name}_pile_loss_1m.csv")
        joined = _join(mix, loss, "index")
        parts.append(joined.assign(run=name + "-" + joined["index"].astype(str)))
    wide = pd.concat(parts, ignore_index=True)
    mix_cols = {c: c.removeprefix(REGMIX_MIX_PREFIX) for c in wide.columns if c.startswith(REGMIX_MIX_PREFIX)}
    loss_cols = {c: c.removeprefix(REGMIX_LOSS_PREFIX).removesuffix(REGMIX_LOSS_SUFFIX) for c in wide.columns
                 if c.startswith(REGMIX_LOSS_PREFIX) and c.endswith(REGMIX_LOSS_SUFFIX)}
    if not mix_cols or not loss_cols:
        raise RunTableError(f"{directory} does not hold RegMix tables: no '{REGMIX_MIX_PREFIX}*' or "
                            f"'{REGMIX_LOSS_PREFIX}*{REGMIX_LOSS_SUFFIX}' columns")
    long = _long_from_wide(wide, _mapping(mix_cols, "mixture_columns"), _mapping(loss_cols, "loss_columns"),
                           run_column="run", size=size, step=step, tokens=None)
    return _validate(long, tol=1e-2, note="RegMix proportions are rounded to 3 decimals in the files: ")


def run_mixtures(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index ``run``, table order), one column per domain (no prefix)."""
    out = df.drop_duplicates("run").set_index("run")[mixture_columns(df)]
    return out.rename(columns=lambda c: c[len(MIX_PREFIX):])


def run_sizes(df: pd.DataFrame) -> pd.Series:
    """Model size (non-embedding parameters) of each run: a Series named ``size``, index ``run``."""
    return df.drop_duplicates("run").set_index("run")["size"]
