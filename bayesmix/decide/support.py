"""How far a mixture lies from the mixtures already run, and the trust region they support.

Distances are total variation on the simplex, ``d(r, s) = 0.5 * sum_j |r_j - s_j|``
(in [0, 1]: the share of tokens that must move to turn one mixture into the other).

* ``support_distance(r, tried)``: each candidate's distance to its nearest tried mixture.
* ``trust_radius(tried)``: the largest nearest-neighbour distance among the tried
  mixtures, i.e. the widest gap the design itself leaves. A candidate within it is as
  close to the data as the tried mixtures are to each other; one beyond it is an
  extrapolation that the law's own posterior does not know to widen for.
* ``outside_range(r, tried)``: the domains whose share in a candidate lies outside the range
  the tried mixtures span (below the smallest or above the largest share any tried mixture
  gave it). A domain cut below every tried share (to zero, on a face of the simplex) is an
  extrapolation no distance shows: a domain left out of training can get worse as training
  goes on, which no run near the candidate has seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def total_variation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise total-variation distances: a (n, M), b (k, M) -> (n, k)."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    return 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)


def support_distance(candidates: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """Distance of each candidate (n, M) to its nearest tried mixture (k, M): (n,)."""
    return total_variation(candidates, tried).min(axis=1)


def nearest_distance(mixtures: np.ndarray) -> np.ndarray:
    """Distance of each mixture (n, M) to its nearest other one: (n,)."""
    d = total_variation(mixtures, mixtures)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def trust_radius(tried: np.ndarray) -> float:
    """Largest nearest-neighbour distance among the tried mixtures (k >= 2, distinct)."""
    if np.atleast_2d(tried).shape[0] < 2:
        raise ValueError("a trust region needs at least two tried mixtures")
    return float(nearest_distance(tried).max())


RANGE_TOLERANCE = 1e-6


def outside_range(candidates: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """Per candidate (n, M) and domain, whether its share lies outside [min, max] of the tried
    shares (k, M) of that domain (beyond ``RANGE_TOLERANCE``): (n, M) bool."""
    candidates, tried = np.atleast_2d(np.asarray(candidates, float)), np.atleast_2d(np.asarray(tried, float))
    lo, hi = tried.min(axis=0), tried.max(axis=0)
    return (candidates < lo - RANGE_TOLERANCE) | (candidates > hi + RANGE_TOLERANCE)


def support_table(candidates: np.ndarray, tried: np.ndarray, domains) -> pd.DataFrame:
    """Per candidate (n, M): ``distance`` to the nearest tried mixture (k >= 2, M), the domains
    ``outside_range`` (comma-separated) and ``inside_support``: within the trust radius and
    every share inside the tried range. The table's ``attrs["trust_radius"]`` holds the radius."""
    candidates = np.atleast_2d(np.asarray(candidates, float))
    radius = trust_radius(tried)
    distance = support_distance(candidates, tried)
    beyond = outside_range(candidates, tried)
    table = pd.DataFrame({"distance": distance,
                          "outside_range": [", ".join(d for d, b in zip(domains, row) if b) for row in beyond],
                          "inside_support": (distance <= radius + 1e-9) & ~beyond.any(axis=1)})
    table.attrs["trust_radius"] = radius
    return table
