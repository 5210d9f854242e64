"""Training mixtures: validation before any training, files of mixtures, demo designs.

A mixture maps domain names to proportions. Domains of the corpus that it
does not name get 0. It is rejected, with a message naming the mixture, when
it names an unknown domain, has a non-numeric, non-finite or negative
proportion, or does not sum to 1 within ``SUM_TOLERANCE`` (then it is
renormalised exactly).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.data.keyvalues import parse_key_values
from bayesmix.data.table import MIX_PREFIX, read_table

SUM_TOLERANCE = 1e-3
NAME_COLUMNS = ("name", "mixture", "run")
META_COLUMNS = ("baseline", "note", "description")


class MixtureError(ValueError):
    """A mixture is not a valid distribution over the corpus domains."""


def validate_mixture(mixture: Mapping, domains: list[str], name: str = "mixture") -> dict[str, float]:
    """Return the mixture over ``domains`` (in that order, zeros filled in) or raise :class:`MixtureError`."""
    if not isinstance(mixture, Mapping):
        raise MixtureError(f"{name}: a mixture must be a mapping domain -> proportion, got {type(mixture).__name__}")
    if not mixture:
        raise MixtureError(f"{name}: the mixture is empty; give a proportion for at least one of {domains}")
    unknown = [str(k) for k in mixture if str(k).removeprefix(MIX_PREFIX) not in domains]
    if unknown:
        raise MixtureError(f"{name}: unknown domain(s) {unknown}; the corpus has {domains}")
    values = {}
    for key, value in mixture.items():
        domain = str(key).removeprefix(MIX_PREFIX)
        if domain in values:
            raise MixtureError(f"{name}: domain {domain!r} is given twice")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise MixtureError(f"{name}: proportion of {domain!r} is not a number: {value!r}") from None
        if not math.isfinite(v):
            raise MixtureError(f"{name}: proportion of {domain!r} is not finite: {value!r}")
        values[domain] = v
    negative = {d: v for d, v in values.items() if v < 0}
    if negative:
        raise MixtureError(f"{name}: proportions must not be negative: "
                           + ", ".join(f"{d}={v:g}" for d, v in negative.items()))
    total = sum(values.values())
    if abs(total - 1) > SUM_TOLERANCE:
        raise MixtureError(f"{name}: proportions sum to {total:.6g}, not 1 (tolerance {SUM_TOLERANCE:g})")
    return {d: values.get(d, 0.0) / total for d in domains}


def mixture_label(mixture: Mapping[str, float]) -> str:
    """A short readable label, e.g. ``code50-english50`` (nonzero domains, percent)."""
    parts = [f"{d}{100 * v:.3g}" for d, v in mixture.items() if v > 0]
    return "-".join(parts)


def _from_frame(frame: pd.DataFrame, source: str) -> dict[str, dict[str, float]]:
    name_col = next((c for c in NAME_COLUMNS if c in frame.columns), None)
    mix_cols = [c for c in frame.columns if str(c).startswith(MIX_PREFIX)]
    if mix_cols:  # a run table or a table with mix.* columns
        table = frame.drop_duplicates(name_col) if name_col else frame.drop_duplicates(mix_cols)
        cols = mix_cols
    else:
        table = frame
        cols = [c for c in frame.columns if c != name_col and c not in META_COLUMNS]
    if not cols:
        raise MixtureError(f"{source}: no domain columns (expected one column per domain, or mix.<domain>)")
    out = {}
    for i, row in enumerate(table.itertuples(index=False)):
        record = dict(zip(table.columns, row))
        name = str(record[name_col]) if name_col else f"mix{i:03d}"
        if name in out:
            raise MixtureError(f"{source}: mixture name {name!r} appears twice")
        out[name] = {str(c).removeprefix(MIX_PREFIX): record[c] for c in cols}
    if not out:
        raise MixtureError(f"{source}: no mixtures in the file")
    return out


def read_mixtures(source) -> dict[str, dict[str, float]]:
    """Named mixtures from a file (CSV/Parquet/JSONL table, or JSON object name -> mixture), a DataFrame or a mapping.

    Tables have an optional ``name`` column and one column per domain (plain or
    ``mix.``-prefixed); a run table gives its distinct runs' mixtures. Values
    are not checked here: :func:`validate_mixture` does that against a corpus.
    """
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "mixture table")
    if isinstance(source, Mapping):
        if not source:
            return {}
        if all(isinstance(v, Mapping) for v in source.values()):
            return {str(k): dict(v) for k, v in source.items()}
        return {"mixture": dict(source)}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"mixtures file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise MixtureError(f"{path} is not UTF-8 text (undecodable byte at position {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise MixtureError(f"{path}: not valid JSON ({exc.msg})") from None
        if isinstance(payload, dict):
            return read_mixtures(payload)
        if isinstance(payload, list):
            return _from_frame(pd.DataFrame(payload), str(path))
        raise MixtureError(f"{path}: expected a JSON object name -> mixture or a list of records")
    if suffix not in (".csv", ".parquet", ".pq", ".jsonl"):
        raise MixtureError(f"{path}: unsupported mixtures file type {suffix!r}; use .csv, .parquet, .jsonl or .json")
    return _from_frame(read_table(path), str(path))


def parse_mixture(text: str) -> dict[str, float]:
    """``"code=0.5,english=0.5"`` -> ``{"code": 0.5, "english": 0.5}``."""
    return parse_key_values(text, form="DOMAIN=PROPORTION", error=MixtureError)


def design_mixtures(domains: list[str], n_random: int = 16, *, seed: int = 0, alpha: float = 1.0,
                    peak: float = 0.8, decimals: int = 4) -> pd.DataFrame:
    """A varied design: the uniform mixture (``baseline`` True), one mixture led by each
    domain (``peak`` on it, the rest shared equally) and ``n_random`` Dirichlet(alpha) draws.

    Returns one row per mixture: ``name``, ``baseline``, then one column per domain.
    Proportions are rounded to ``decimals`` and sum to 1 exactly up to float error.
    """
    m = len(domains)
    rows = [("uniform", np.full(m, 1 / m))]
    if m > 1:
        for j, d in enumerate(domains):
            r = np.full(m, (1 - peak) / (m - 1))
            r[j] = peak
            rows.append((f"{d}-led", r))
    draws = np.random.default_rng(seed).dirichlet(np.full(m, alpha), size=n_random)
    rows += [(f"dirichlet{i:02d}", r) for i, r in enumerate(draws)]
    records = []
    for name, r in rows:
        r = np.round(r, decimals)
        j = int(np.argmax(r))
        r[j] = 0.0
        r[j] = round(1.0 - r.sum(), decimals)
        records.append({"name": name, "baseline": name == "uniform", **dict(zip(domains, r.tolist()))})
    return pd.DataFrame.from_records(records)
