"""Shared benchmark helpers: paths, splits, metrics, and the table/JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ANCHORS = REPO_ROOT.parent / "shared" / "anchors"


def split_runs(runs: list[str], seed: int, train_fraction: float = 0.8) -> tuple[list[str], list[str]]:
    """A random train/test split of run ids: ``numpy.random.default_rng(seed).permutation``."""
    order = np.random.default_rng(seed).permutation(len(runs))
    n_train = int(round(train_fraction * len(runs)))
    runs = np.asarray(runs)
    return runs[order[:n_train]].tolist(), runs[order[n_train:]].tolist()


def point_metrics(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float]:
    """MAE and Spearman rank correlation of point predictions."""
    return {"mae": float(np.mean(np.abs(predicted - observed))),
            "spearman": float(stats.spearmanr(predicted, observed).statistic)}


def coverage(draws: np.ndarray, observed: np.ndarray, prob: float) -> float:
    """Share of observations inside the central ``prob`` interval of draws (draws, points)."""
    lo = np.quantile(draws, (1 - prob) / 2, axis=0)
    hi = np.quantile(draws, (1 + prob) / 2, axis=0)
    return float(np.mean((lo <= observed) & (observed <= hi)))


def markdown_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> str:
    """Rows of dicts as a GitHub markdown table."""
    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(payload: dict, path) -> None:
    """Write the benchmark's results as JSON (creating folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float))


def mean_row(frame: pd.DataFrame, label_column: str) -> pd.DataFrame:
    """Average numeric columns per label (over splits/seeds)."""
    return frame.groupby(label_column, sort=False).mean(numeric_only=True).reset_index()


def regmix_eval_rows(anchors, eval_name: str) -> pd.DataFrame:
    """The RegMix run table (all 768 runs) restricted to one eval domain.

    Raises SystemExit(2) with a one-line message when the tables or the eval are missing.
    """
    import sys
    import warnings

    from bayesmix.data.table import load_regmix

    path = Path(anchors) / "regmix"
    if not path.is_dir():
        print(f"no RegMix tables at {path}; pass --anchors", file=sys.stderr)
        raise SystemExit(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = load_regmix(path, split="all")
    runs = runs[runs["eval"] == eval_name]
    if runs.empty:
        print(f"no eval domain {eval_name!r} in the RegMix tables", file=sys.stderr)
        raise SystemExit(2)
    return runs
