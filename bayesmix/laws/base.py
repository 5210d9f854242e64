"""What every law is: data arrays with labels, a mean function, a numpyro model,
a point fitter, and a way to predict from posterior draws.

A law is an object with

* ``name``: the registry key (``"step"``, ``"size"``, ``"mix"``, ...);
* ``prepare(runs, **options) -> LawData``: the run table turned into arrays;
* ``model(data, priors, y=None)``: the numpyro model (observations at site ``"obs"``);
* ``point_fit(data, seed, n_starts) -> dict``: the multi-start Huber fit, natural parameters;
* ``init_values(data, point, priors) -> dict``: NUTS start values built from a point fit;
* ``param_dims``: ArviZ dims of each natural parameter;
* ``mean_draws(params, query) -> (draws, points, evals)``: the law's mean at new inputs;
* ``query(data, **inputs) -> Query``: labelled new inputs for prediction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class LawData:
    """Observations as arrays, with the labels needed to read results.

    ``arrays`` holds per-observation inputs (length n) and per-group references,
    ``y`` the observed losses (n,), ``coords`` the label of every ArviZ dim, and
    ``meta`` JSON-serialisable constants (reference points, law options).
    """

    arrays: dict[str, np.ndarray]
    y: np.ndarray
    coords: dict[str, list]
    meta: dict[str, Any]
    obs_index: pd.DataFrame  # one row per observation: the run-table keys it came from

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class Query:
    """New inputs for prediction: arrays for the mean function plus their labels.

    ``labels`` has one row per prediction point (e.g. the mixture, or the curve
    and step); the law returns draws of shape (draws, points, evals).
    """

    arrays: dict[str, np.ndarray]
    labels: pd.DataFrame
    evals: list[str]


class Law(Protocol):
    """What every law provides. Laws the nested pipeline samples also carry ``fit_group`` (the
    groups a stacked point fit copies), ``mean_sites`` (the sites of the mean at the
    observations) and ``dense_lanes`` (a dense mass matrix for its lanes), and ``fitted``."""

    name: str
    param_dims: dict[str, list[str]]

    def prepare(self, runs: pd.DataFrame, **options: Any) -> LawData: ...

    def model(self, data: dict, priors: dict, y: Any = None) -> None: ...

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16) -> dict[str, np.ndarray]: ...

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]: ...

    def query(self, data: LawData, **inputs: Any) -> Query: ...

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray: ...


def pad_groups(group: np.ndarray, n_groups: int, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scatter per-observation columns into (G, n_max, ...) arrays plus a mask (G, n_max).

    Observations keep their order within each group; padding repeats a valid
    value of the group so that masked entries stay finite.
    """
    counts = np.bincount(group, minlength=n_groups)
    if np.any(counts == 0):
        raise ValueError(f"groups without observations: {np.flatnonzero(counts == 0).tolist()}")
    n_max = int(counts.max())
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty_like(group)
    position[order] = np.arange(group.size) - np.repeat(starts, counts)
    mask = np.zeros((n_groups, n_max), dtype=bool)
    mask[group, position] = True
    out = []
    for col in columns:
        first = col[order[starts]]  # one valid value per group
        padded = np.broadcast_to(first[:, None, ...], (n_groups, n_max) + col.shape[1:]).copy()
        padded[group, position] = col
        out.append(padded)
    return (*out, mask)


def category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes and labels, labels in order of first appearance."""
    labels = list(dict.fromkeys(values.astype(str)))
    lookup = {label: i for i, label in enumerate(labels)}
    return values.astype(str).map(lookup).to_numpy(dtype=np.int32), labels
