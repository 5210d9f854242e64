"""Identify distinct mixtures in a run table.

Runs of different sizes trained on the same proportions share a mixture. A
mixture's label is ``m<k>`` in order of first appearance; its proportions are
kept beside it so every result can be read back as proportions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.data.table import MIX_PREFIX



def mix_columns(df: pd.DataFrame) -> list[str]:
    """The ``mix.<domain>`` columns of a run table, in table order."""
    return [c for c in df.columns if str(c).startswith(MIX_PREFIX)]


def mixture_labels(df: pd.DataFrame, decimals: int = 6) -> pd.Series:
    """Label each row by its mixture: equal proportions (to ``decimals``) share a label."""
    cols = mix_columns(df)
    keys = df[cols].round(decimals).astype(str).agg("|".join, axis=1)
    first = dict.fromkeys(keys)
    lookup = {key: f"m{i}" for i, key in enumerate(first)}
    return keys.map(lookup).rename("mixture")


def as_mixture_matrix(mixtures, domains: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Coerce user mixtures to an (n, M) array over ``domains`` plus a labelled frame.

    Accepts a DataFrame with either bare domain columns or ``mix.<domain>``
    columns, a dict of domain -> proportion, a list of such dicts, or an array
    of shape (n, M). Rows must lie on the simplex (within 1e-6, renormalised).
    With ``mix.`` columns every other column is an annotation and is ignored (a
    table bayesmix wrote, such as suggestions or a ranking, reads back as it is);
    with bare columns any column that is not a domain is an error (a misspelt domain).
    """
    if isinstance(mixtures, dict):
        mixtures = pd.DataFrame([mixtures])
    elif isinstance(mixtures, list) and mixtures and isinstance(mixtures[0], dict):
        mixtures = pd.DataFrame(mixtures)
    if isinstance(mixtures, pd.DataFrame):
        if mix_columns(mixtures):
            mixtures = mixtures[[c for c in mixtures.columns if str(c).startswith(MIX_PREFIX) or c == "mixture"]]
        frame = mixtures.rename(columns=lambda c: str(c)[len(MIX_PREFIX):] if str(c).startswith(MIX_PREFIX) else c)
        missing = [d for d in domains if d not in frame.columns]
        if missing:
            raise ValueError(f"mixtures lack domain column(s) {missing}; expected {domains}")
        extra = [c for c in frame.columns if c not in domains and c not in ("mixture", "run")]
        if extra:
            raise ValueError(f"unknown domain column(s) {extra}; the fit knows {domains}")
        labels = frame["mixture"].astype(str).tolist() if "mixture" in frame else None
        r = frame[domains].to_numpy(dtype=float)
    else:
        r = np.atleast_2d(np.asarray(mixtures, dtype=float))
        labels = None
        if r.shape[1] != len(domains):
            raise ValueError(f"mixtures have {r.shape[1]} columns; the fit has {len(domains)} domains {domains}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("mixture proportions must be finite and non-negative")
    sums = r.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-2)
    if bad.size:
        raise ValueError(f"mixture rows {bad.tolist()} sum to {sums[bad].round(4).tolist()}, not 1")
    r = r / sums[:, None]
    labels = labels or [f"q{i}" for i in range(r.shape[0])]
    frame = pd.DataFrame(r, columns=[MIX_PREFIX + d for d in domains])
    frame.insert(0, "mixture", labels)
    return r, frame
