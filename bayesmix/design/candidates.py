"""Candidate mixtures: where to start looking, and what to run first.

* :func:`algorithm2` / :func:`algorithm2_enumerate`: the "double-diminishing"
  sampler of Ye et al. (2024, Algorithm 2). Domains are taken in order of
  decreasing ``r_max``; domain j draws its proportion from the levels
  ``Gamma_j, Gamma_j/2, Gamma_j/4, ...`` (each floored to the grid ``delta``,
  stopping below ``delta``) and 0, where ``Gamma_j = min(r_max_j, 1 - sum of the
  proportions already drawn)``: the cap diminishes with the mass left, the
  levels diminish by halving. The last domain takes what is left, and the
  mixture is rejected when that exceeds its ``r_max``. Mixtures with a zero
  proportion are kept with probability 1/4 (they would otherwise dominate).
* :func:`dirichlet` (RegMix, Liu et al. 2024): ``r ~ Dirichlet(s M prior)``
  with the token prior ``prior`` (default uniform) and the concentration scale
  ``s`` drawn log-uniformly from ``concentration`` per mixture, so the draws
  range from near-vertex (small s) to near the prior (large s).
* :func:`space_filling`: a maximin design for a campaign with no runs yet:
  greedy farthest-point selection from the centre over a large pool of
  Dirichlet(1) draws and the (projected) vertices.
* :func:`perturb`: Gaussian steps in the simplex plane around given mixtures.

Every function returns an (n, M) array of feasible mixtures for a
:class:`bayesmix.decide.simplex.SimplexBounds` (projected where needed) and takes a
seed; :func:`mixtures_frame` labels them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayesmix.laws.mixtures import MIX_PREFIX
from bayesmix.decide.simplex import SimplexBounds, simplex_distance

ZERO_KEEP = 0.25  # Algorithm 2: share of mixtures with a zero proportion that are kept
_GRID_EPS = 1e-9
STALE_TRIES = 2000  # Algorithm 2 sampling stops after this many attempts without a new mixture


# ---------------------------------------------------------------- Algorithm 2


@functools.lru_cache(maxsize=4096)
def _levels(gamma: float, delta: float) -> tuple[float, ...]:
    return tuple(diminishing_levels(gamma, delta))


def diminishing_levels(gamma: float, delta: float) -> np.ndarray:
    """``gamma, gamma/2, gamma/4, ...`` floored to multiples of ``delta``, while >= delta, then 0.

    Distinct values in decreasing order, e.g. gamma = 1, delta = 0.1: 1, 0.5, 0.2, 0.1, 0.
    """
    if not 0 < delta <= 1:
        raise ValueError(f"delta must lie in (0, 1], got {delta}")
    levels = []
    g = float(gamma)
    while g >= delta - _GRID_EPS:
        level = round(np.floor(g / delta + _GRID_EPS) * delta, 12)
        if level > 0 and (not levels or level < levels[-1]):
            levels.append(level)
        g /= 2.0
    return np.array(levels + [0.0])


def _free_problem(bounds: SimplexBounds) -> tuple[np.ndarray, np.ndarray, float]:
    """Free domains (not fixed), their r_max rescaled to the free mass, and that mass."""
    free = np.array([d not in bounds.fixed for d in bounds.domains])
    mass = 1.0 - float(bounds.lower[~free].sum())
    if mass <= _GRID_EPS:
        return free, np.zeros(int(free.sum())), 0.0
    return free, np.minimum(1.0, bounds.upper[free] / mass), mass


def _assemble(bounds: SimplexBounds, free: np.ndarray, mass: float, rows: np.ndarray) -> np.ndarray:
    out = np.tile(bounds.lower, (rows.shape[0], 1))
    out[:, free] = rows * mass
    feasible = bounds.is_feasible(out) if out.shape[0] else np.zeros(0, bool)
    if not np.all(feasible):  # r_min: move to the nearest feasible mixture
        out[~feasible] = bounds.project(out[~feasible])
    return out


def algorithm2_enumerate(r_max: Sequence[float], delta: float) -> np.ndarray:
    """Every mixture Algorithm 2 can produce for caps ``r_max`` (M,) and grid ``delta``
    (before zero down-sampling), in the domains' original order: (n, M)."""
    r_max = np.asarray(r_max, float)
    order = np.argsort(-r_max, kind="stable")
    out = []

    def recurse(k: int, remaining: float, partial: list[float]):
        j = order[k]
        if k == len(order) - 1:
            if remaining <= r_max[j] + _GRID_EPS:
                out.append(partial + [max(remaining, 0.0)])
            return
        for level in diminishing_levels(min(r_max[j], remaining), delta):
            recurse(k + 1, round(remaining - level, 12), partial + [level])

    recurse(0, 1.0, [])
    rows = np.zeros((len(out), r_max.size))
    rows[:, order] = np.array(out).reshape(len(out), r_max.size)
    return rows


def _algorithm2_one(r_max: np.ndarray, order: np.ndarray, delta: float, rng: np.random.Generator) -> np.ndarray | None:
    r = np.zeros(r_max.size)
    remaining = 1.0
    for j in order[:-1]:
        levels = _levels(round(float(min(r_max[j], remaining)), 12), float(delta))
        r[j] = levels[rng.integers(len(levels))]
        remaining = round(remaining - r[j], 12)
    last = order[-1]
    if remaining > r_max[last] + _GRID_EPS:
        return None
    r[last] = max(remaining, 0.0)
    return r


def algorithm2(bounds: SimplexBounds, n: int, *, delta: float = 0.05, seed: int,
               zero_keep: float = ZERO_KEEP, max_tries: int = 200) -> np.ndarray:
    """``n`` distinct mixtures from Algorithm 2 (see the module docstring): (n', M), n' <= n.

    Fixed domains keep their value and the algorithm runs on the free mass
    ``1 - sum(fixed)`` with caps ``r_max / free mass``; a mixture below an
    ``r_min`` is projected onto the bounds. Fewer than ``n`` rows come back when
    the grid holds fewer distinct mixtures (``max_tries * n`` attempts at most,
    stopping after ``STALE_TRIES`` attempts in a row without a new mixture).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    free, caps, mass = _free_problem(bounds)
    if mass == 0.0 or caps.size == 0:
        return _assemble(bounds, free, mass, np.zeros((min(n, 1), caps.size)))
    order = np.argsort(-caps, kind="stable")
    seen, rows, stale = set(), [], 0
    for _ in range(max_tries * max(n, 1)):
        if len(rows) >= n or stale >= STALE_TRIES:
            break
        stale += 1
        r = _algorithm2_one(caps, order, delta, rng)
        if r is None or (np.any(r <= _GRID_EPS) and rng.random() >= zero_keep):
            continue
        key = tuple(np.round(r, 9))
        if key not in seen:
            seen.add(key)
            rows.append(r)
            stale = 0
    return _assemble(bounds, free, mass, np.array(rows).reshape(len(rows), caps.size))


# ---------------------------------------------------------------- Dirichlet (RegMix)


def dirichlet(bounds: SimplexBounds, n: int, *, seed: int, prior: Sequence[float] | None = None,
              concentration: tuple[float, float] | float = (0.1, 5.0), max_tries: int = 50) -> np.ndarray:
    """``n`` RegMix-style Dirichlet draws around ``prior`` (M,) (default: uniform), feasible: (n, M).

    Draw i uses ``alpha = s_i * M * prior`` (``prior`` renormalised), ``s_i``
    log-uniform on ``concentration`` (a single number fixes it). Draws that
    break the bounds are redrawn up to ``max_tries`` rounds, then projected.
    Fixed domains are pinned and the rest drawn on the free mass.
    """
    rng = np.random.default_rng(seed)
    free, _, mass = _free_problem(bounds)
    M = int(free.sum())
    if prior is None:
        p = np.full(M, 1.0 / M) if M else np.zeros(0)
    else:
        p = np.asarray(prior, float)
        if p.shape != (bounds.n_domains,) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"prior must be {bounds.n_domains} non-negative weights with a positive sum, got {p}")
        p = p[free] / p[free].sum()
    p = np.maximum(p, 1e-6)
    lo, hi = (concentration, concentration) if np.isscalar(concentration) else concentration
    if not 0 < lo <= hi:
        raise ValueError(f"concentration must be positive (lo <= hi), got {concentration}")
    out = np.zeros((n, M))
    todo = np.arange(n)
    for _ in range(max_tries):
        if todo.size == 0 or M == 0:
            break
        s = np.exp(rng.uniform(np.log(lo), np.log(hi), size=todo.size))
        draws = np.stack([rng.dirichlet(si * M * p) for si in s]) if todo.size else np.zeros((0, M))
        draws = np.where(np.isfinite(draws), draws, 1.0 / M)
        out[todo] = draws
        ok = np.all(draws * mass <= bounds.upper[free] + 1e-12, axis=1) & np.all(
            draws * mass >= bounds.lower[free] - 1e-12, axis=1)
        todo = todo[~ok]
    return _assemble(bounds, free, mass, out)


# ---------------------------------------------------------------- space filling and perturbation


def vertices(bounds: SimplexBounds) -> np.ndarray:
    """The projection of every simplex vertex e_j onto the bounds: (M, M) (rows may repeat)."""
    return bounds.project(np.eye(bounds.n_domains))


def space_filling(bounds: SimplexBounds, n: int, *, seed: int, n_pool: int = 4096,
                  existing: np.ndarray | None = None) -> np.ndarray:
    """``n`` mixtures spread over the bounded simplex (greedy maximin, Euclidean): (n, M).

    Starts from the centre (or, with ``existing`` (k, M) mixtures, from the pool
    point farthest from them) and adds the pool point whose distance to the
    nearest chosen (or existing) mixture is largest. Pool: the projected
    vertices and ``n_pool`` Dirichlet(1) draws.
    """
    pool = np.concatenate([bounds.centre()[None], vertices(bounds),
                           dirichlet(bounds, n_pool, seed=seed, concentration=1.0)])
    pool = np.unique(np.round(pool, 12), axis=0)
    chosen: list[int] = []
    if existing is not None and len(existing):
        nearest = simplex_distance(pool, existing).min(axis=1)
    else:
        first = int(np.argmin(simplex_distance(pool, bounds.centre()[None])[:, 0]))
        chosen.append(first)
        nearest = simplex_distance(pool, pool[first][None])[:, 0]
    while len(chosen) < min(n, pool.shape[0]):
        k = int(np.argmax(nearest))
        chosen.append(k)
        nearest = np.minimum(nearest, simplex_distance(pool, pool[k][None])[:, 0])
    return pool[chosen[:n]]


def perturb(centres: np.ndarray, bounds: SimplexBounds, n: int, *, scale: float = 0.05, seed: int) -> np.ndarray:
    """``n`` mixtures around ``centres`` (k, M) (cycled): ``P(c + scale * e)``, e standard
    normal with its mean removed (a step within the simplex plane): (n, M)."""
    centres = np.atleast_2d(np.asarray(centres, float))
    if centres.shape[0] == 0 or n == 0:
        return np.zeros((0, bounds.n_domains))
    rng = np.random.default_rng(seed)
    base = centres[np.arange(n) % centres.shape[0]]
    e = rng.standard_normal(base.shape)
    e -= e.mean(axis=1, keepdims=True)
    return bounds.project(base + scale * e)


# ---------------------------------------------------------------- labels


def mixtures_frame(r: np.ndarray, domains: Sequence[str], *, labels: Sequence[str] | None = None,
                   prefix: str = "c") -> pd.DataFrame:
    """Mixtures (n, M) as a frame: ``mixture`` label (default ``<prefix><i>``) + ``mix.<domain>`` columns."""
    r = np.atleast_2d(np.asarray(r, float))
    frame = pd.DataFrame(r, columns=[MIX_PREFIX + d for d in domains])
    frame.insert(0, "mixture", list(labels) if labels is not None else [f"{prefix}{i}" for i in range(r.shape[0])])
    return frame


def tv_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Total-variation distance ``0.5 sum_j |a_j - b_j|`` between every row of a (n, M) and b (m, M):
    (n, m), in [0, 1]: the share of the token budget that would change hands."""
    a = np.atleast_2d(np.asarray(a, float))
    b = np.atleast_2d(np.asarray(b, float))
    return 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(-1)


__all__ = ["ZERO_KEEP", "algorithm2", "algorithm2_enumerate", "diminishing_levels", "dirichlet", "mixtures_frame",
           "perturb", "space_filling", "tv_distance", "vertices"]
