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
* ``removed_share(r, tried)``: how much of the mix a candidate takes from domains it cuts
  below every tried share, ``max_S (|S| / M) * (m_S - r_S)_+ / m_S`` over single domains and
  pairs S, with r_S the group's share in the candidate and m_S > 0 its smallest share in any
  tried mixture: 0 inside every range, |S| / M when a group no run removed is cut to zero
  (a pair counts when each domain alone was once cut to zero but never both together);
  for the loss of a domain's own evaluation (``own=``), only the groups holding that domain
  count, by its part of the group, 1 / |S| (1 when it alone is cut to zero). It scales the
  prior of the rise no backtest measures (:mod:`bayesmix.pipeline.discrepancy`).
* ``hull_distance(r, tried)``: each candidate's distance to the convex hull of the tried
  mixtures, ``min_{lambda in simplex} d(r, lambda^T tried)``, a linear programme. Zero means
  some weighting of the tried mixtures gives the candidate, so the law interpolates there.
  A candidate inside every domain's range can still lie outside the hull: three domains
  each cut to 1-2% is a corner when no tried mixture cut them *together* (each share on
  its own is in range, the combination is not). Every share of a point in the hull lies
  in the tried range, so the hull rule contains the range rule; the range rule stays to
  name the domains.

The trust region (``inside_support``) is: within the trust radius of a tried mixture and
inside their convex hull (within ``HULL_TOLERANCE``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linprog


def total_variation(a: np.ndarray, b: np.ndarray, xp=np) -> np.ndarray:
    """Pairwise total-variation distances: a (n, M), b (k, M) -> (n, k); ``xp``: the array
    namespace (``jax.numpy`` to trace it)."""
    a, b = xp.atleast_2d(xp.asarray(a, float)), xp.atleast_2d(xp.asarray(b, float))
    return 0.5 * xp.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)


def support_distance(candidates: np.ndarray, tried: np.ndarray, xp=np) -> np.ndarray:
    """Distance of each candidate (n, M) to its nearest tried mixture (k, M): (n,)."""
    return total_variation(candidates, tried, xp).min(axis=1)


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


def domain_groups(n_domains: int) -> np.ndarray:
    """Indicator rows (g, M) of the single domains and the pairs of domains."""
    eye = np.eye(n_domains)
    pairs = [eye[i] + eye[j] for i in range(n_domains) for j in range(i + 1, n_domains)]
    return np.concatenate([eye, np.reshape(pairs, (-1, n_domains))])


def removed_share(candidates: np.ndarray, tried: np.ndarray, xp=np, own: int | None = None) -> np.ndarray:
    """Per candidate (n, M): ``max_S c_S * (m_S - r_S)_+ / m_S`` over single domains and pairs S
    whose smallest tried share m_S exceeds ``RANGE_TOLERANCE`` (module docstring), with
    ``c_S = |S| / M`` (the share of the evaluation that is the group's); for the loss of
    domain ``own``'s own evaluation, ``c_S = 1 / |S|`` for the groups holding it (its part of
    the group) and 0 for the rest (a domain that keeps its data is not starved): (n,) in [0, 1];
    ``xp``: the array namespace (``jax.numpy`` to trace it)."""
    candidates, tried = xp.atleast_2d(xp.asarray(candidates, float)), np.atleast_2d(np.asarray(tried, float))
    groups = domain_groups(tried.shape[1])
    least = (tried @ groups.T).min(axis=0)  # (g,)
    keep = least > RANGE_TOLERANCE
    if not keep.any():
        return xp.zeros(candidates.shape[0])
    groups, least, size = groups[keep], least[keep], groups[keep].sum(axis=1)
    weight = size / tried.shape[1] if own is None else (groups[:, own] > 0) / size
    share = candidates @ groups.T  # (n, g)
    return (xp.clip((least - share) / least, 0.0, 1.0) * weight).max(axis=1)


HULL_TOLERANCE = 1e-6


def hull_distance(candidates: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """Total-variation distance of each candidate (n, M) to the convex hull of the tried
    mixtures (k, M): (n,).

    Per candidate r, the linear programme over weights lambda (k,) and slacks u (M,)

        min 0.5 sum_j u_j   s.t.  -u <= r - tried^T lambda <= u,  lambda >= 0,  sum lambda = 1

    (scipy's HiGHS), whose optimum is ``min_lambda 0.5 ||r - tried^T lambda||_1``."""
    candidates, tried = np.atleast_2d(np.asarray(candidates, float)), np.atleast_2d(np.asarray(tried, float))
    k, M = tried.shape
    if candidates.shape[1] != M:
        raise ValueError(f"candidates have {candidates.shape[1]} domains, the tried mixtures {M}")
    cost = np.r_[np.zeros(k), np.full(M, 0.5)]
    a_ub = np.block([[tried.T, -np.eye(M)], [-tried.T, -np.eye(M)]])
    a_eq = np.r_[np.ones(k), np.zeros(M)][None, :]
    out = np.empty(len(candidates))
    for i, r in enumerate(candidates):
        res = linprog(cost, A_ub=a_ub, b_ub=np.r_[r, -r], A_eq=a_eq, b_eq=[1.0], bounds=(0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"the hull-distance programme failed for candidate {i}: {res.message}")
        out[i] = max(float(res.fun), 0.0)
    return out


def support_table(candidates: np.ndarray, tried: np.ndarray, domains) -> pd.DataFrame:
    """Per candidate (n, M): ``distance`` to the nearest tried mixture (k >= 2, M), the domains
    ``outside_range`` (comma-separated), ``hull_distance`` and ``inside_support``: within the
    trust radius and inside the tried mixtures' convex hull (which puts every share inside the
    tried range). The table's ``attrs["trust_radius"]`` holds the radius."""
    candidates = np.atleast_2d(np.asarray(candidates, float))
    radius = trust_radius(tried)
    distance = support_distance(candidates, tried)
    beyond = outside_range(candidates, tried)
    hull = hull_distance(candidates, tried)
    table = pd.DataFrame({"distance": distance,
                          "outside_range": [", ".join(d for d, b in zip(domains, row) if b) for row in beyond],
                          "hull_distance": hull,
                          "inside_support": (distance <= radius + 1e-9) & ~beyond.any(axis=1)
                          & (hull <= HULL_TOLERANCE)})
    table.attrs["trust_radius"] = radius
    return table
