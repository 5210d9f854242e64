"""The search space of mixtures: the simplex with per-domain bounds, and a
constrained optimiser over it.

    bounds = SimplexBounds(["web", "code", "books"], r_max={"code": 0.3}, fixed={"books": 0.1})
    bounds = SimplexBounds.from_token_budget({"web": 5e9, "code": 1e9, "books": 4e9}, target_tokens=1e10)
    bounds.check(r)              # ValueError naming the violated domain
    r = bounds.project(v)        # nearest feasible mixture (Euclidean)
    r_best, value, info = minimise_on_simplex(objective, bounds, starts, steps=200, learning_rate=0.02, seed=0)

The feasible set is ``{r in R^M: sum_j r_j = 1, lo_j <= r_j <= hi_j}`` with
``lo = r_min`` (default 0), ``hi = r_max`` (default 1) and ``lo_j = hi_j`` for a
fixed domain. It is non-empty iff ``sum lo <= 1 <= sum hi``.

The Euclidean projection of v onto it is ``r_j = clip(v_j - tau, lo_j, hi_j)``
with the scalar tau solving ``sum_j clip(v_j - tau, lo_j, hi_j) = 1`` (the sum
is continuous and non-increasing in tau; KKT conditions of the projection
problem). tau is bracketed by bisection, then solved exactly on the linear
piece it lands on.

The optimiser is projected Adam: from each start r_0 (feasible),
``r_{k+1} = P(r_k - lr_k * adam(grad f(r_k)))`` with a cosine-decayed step,
the best visited point kept per start, all starts vmapped in one compiled
computation. Every returned mixture is projected again in float64 and checked.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

TOL = 1e-8  # feasibility tolerance for bounds and the sum
PG_STEP = 1e-4  # size of the probe step that turns a gradient into a feasible direction


class SimplexBounds:
    """Per-domain bounds on a mixture over ``domains``.

    ``r_min``, ``r_max``: domain -> proportion (missing domains: 0 and 1);
    ``fixed``: domain -> proportion, pinned (lo = hi). Unknown domain names,
    bounds outside [0, 1], ``r_min > r_max`` and an empty feasible set raise
    ValueError. ``lower``/``upper`` are the (M,) arrays.
    """

    def __init__(self, domains: Sequence[str], r_min: Mapping[str, float] | None = None,
                 r_max: Mapping[str, float] | None = None, fixed: Mapping[str, float] | None = None):
        domains = [str(d) for d in domains]
        if not domains:
            raise ValueError("SimplexBounds needs at least one domain")
        if len(set(domains)) != len(domains):
            raise ValueError(f"domain names repeat: {domains}")
        for name, mapping in (("r_min", r_min), ("r_max", r_max), ("fixed", fixed)):
            unknown = sorted(set(mapping or {}) - set(domains))
            if unknown:
                raise ValueError(f"{name} names unknown domain(s) {unknown}; domains are {domains}")
            for d, v in (mapping or {}).items():
                if not (np.isfinite(float(v)) and 0.0 <= float(v) <= 1.0):
                    raise ValueError(f"{name} of domain {d!r} must lie in [0, 1], got {v}")
        lo = np.array([float((r_min or {}).get(d, 0.0)) for d in domains])
        hi = np.array([float((r_max or {}).get(d, 1.0)) for d in domains])
        for j, d in enumerate(domains):
            if lo[j] > hi[j]:
                raise ValueError(f"domain {d!r}: r_min {lo[j]} exceeds r_max {hi[j]}")
            if fixed and d in fixed:
                v = float(fixed[d])
                if not lo[j] - TOL <= v <= hi[j] + TOL:
                    raise ValueError(f"domain {d!r}: fixed proportion {v} lies outside [r_min, r_max] = "
                                     f"[{lo[j]}, {hi[j]}]")
                lo[j] = hi[j] = v
        if lo.sum() > 1 + TOL:
            raise ValueError(f"no mixture satisfies the bounds: lower bounds (r_min and fixed) sum to "
                             f"{lo.sum():.6g} > 1")
        if hi.sum() < 1 - TOL:
            raise ValueError(f"no mixture satisfies the bounds: upper bounds (r_max and fixed) sum to "
                             f"{hi.sum():.6g} < 1")
        self.domains = domains
        self.lower = lo
        self.upper = hi
        self.fixed = {d: float(v) for d, v in (fixed or {}).items()}

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_token_budget(cls, tokens_available: Mapping[str, float], target_tokens: float, *,
                          r_min: Mapping[str, float] | None = None,
                          fixed: Mapping[str, float] | None = None) -> SimplexBounds:
        """Bounds from token budgets: ``r_max_j = min(1, tokens_available_j / target_tokens)``
        (a run of ``target_tokens`` tokens must not repeat a domain's data).
        Domains are the keys of ``tokens_available``, in order."""
        target = float(target_tokens)
        if not (np.isfinite(target) and target > 0):
            raise ValueError(f"target_tokens must be positive, got {target_tokens}")
        r_max = {}
        for d, n in tokens_available.items():
            n = float(n)
            if not (np.isfinite(n) and n >= 0):
                raise ValueError(f"tokens available for domain {d!r} must be finite and >= 0, got {n}")
            r_max[str(d)] = min(1.0, n / target)
        total = float(sum(float(n) for n in tokens_available.values()))
        if total < target * (1 - TOL):
            raise ValueError(f"the domains hold {total:.4g} tokens in all, fewer than the {target:.4g} target "
                             "tokens: no mixture avoids repeating data")
        return cls(list(r_max), r_min=r_min, r_max=r_max, fixed=fixed)

    @classmethod
    def unbounded(cls, domains: Sequence[str]) -> SimplexBounds:
        """The whole simplex."""
        return cls(domains)

    def to_dict(self) -> dict:
        """JSON-ready: domains, r_min, r_max (only where not default), fixed."""
        free = [d for d in self.domains if d not in self.fixed]
        return {"domains": list(self.domains),
                "r_min": {d: float(self.lower[j]) for j, d in enumerate(self.domains) if d in free and self.lower[j] > 0},
                "r_max": {d: float(self.upper[j]) for j, d in enumerate(self.domains) if d in free and self.upper[j] < 1},
                "fixed": dict(self.fixed)}

    @classmethod
    def from_dict(cls, spec: Mapping) -> SimplexBounds:
        """Inverse of :meth:`to_dict`."""
        return cls(spec["domains"], r_min=spec.get("r_min"), r_max=spec.get("r_max"), fixed=spec.get("fixed"))

    def __repr__(self) -> str:
        spec = self.to_dict()
        parts = [f"{k}={spec[k]}" for k in ("r_min", "r_max", "fixed") if spec[k]]
        return f"SimplexBounds({self.domains}{', ' if parts else ''}{', '.join(parts)})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, SimplexBounds) and self.domains == other.domains
                and np.array_equal(self.lower, other.lower) and np.array_equal(self.upper, other.upper))

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    # ------------------------------------------------------------ feasibility

    def _matrix(self, r) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        if r.ndim not in (1, 2) or r.shape[-1] != self.n_domains:
            raise ValueError(f"mixtures must have shape (M,) or (n, M) with M = {self.n_domains} "
                             f"({self.domains}), got {r.shape}")
        return np.atleast_2d(r)

    def violations(self, r, tol: float = TOL) -> list[str]:
        """Every violated constraint of r (M,) or (n, M), one message each (empty: feasible)."""
        rows = self._matrix(r)
        out = []
        for i, row in enumerate(rows):
            where = f"mixture {i}: " if rows.shape[0] > 1 or np.ndim(r) == 2 else ""
            if not np.all(np.isfinite(row)):
                bad = [d for d, v in zip(self.domains, row) if not np.isfinite(v)]
                out.append(f"{where}non-finite proportion for domain(s) {bad}")
                continue
            for j, d in enumerate(self.domains):
                if row[j] < self.lower[j] - tol:
                    what = "fixed at" if d in self.fixed else "below r_min"
                    out.append(f"{where}domain {d!r} has proportion {row[j]:.6g}, {what} {self.lower[j]:.6g}")
                elif row[j] > self.upper[j] + tol:
                    what = "fixed at" if d in self.fixed else "above r_max"
                    out.append(f"{where}domain {d!r} has proportion {row[j]:.6g}, {what} {self.upper[j]:.6g}")
            if abs(row.sum() - 1.0) > tol * self.n_domains:
                out.append(f"{where}proportions sum to {row.sum():.10g}, not 1")
        return out

    def is_feasible(self, r, tol: float = TOL) -> np.ndarray:
        """Boolean (n,) (or scalar for (M,)): r satisfies every bound and sums to 1."""
        rows = self._matrix(r)
        ok = (np.all(np.isfinite(rows), axis=1)
              & np.all(rows >= self.lower - tol, axis=1) & np.all(rows <= self.upper + tol, axis=1)
              & (np.abs(rows.sum(axis=1) - 1.0) <= tol * self.n_domains))
        return bool(ok[0]) if np.ndim(r) == 1 else ok

    def check(self, r, tol: float = TOL) -> np.ndarray:
        """Return r unchanged when feasible; raise ValueError naming the first violated
        domain (and how many other violations there are) otherwise."""
        problems = self.violations(r, tol)
        if problems:
            more = f" (and {len(problems) - 1} more violation(s))" if len(problems) > 1 else ""
            raise ValueError(f"infeasible mixture: {problems[0]}{more}; bounds {self!r}")
        return np.asarray(r, dtype=float)

    # ------------------------------------------------------------ projection

    def project(self, v) -> np.ndarray:
        """Euclidean projection of v (M,) or (n, M) onto the bounded simplex (float64, exact
        up to rounding); see :func:`project_box_simplex`."""
        rows = self._matrix(v)
        if not np.all(np.isfinite(rows)):
            raise ValueError("cannot project non-finite proportions")
        out = project_box_simplex(rows, self.lower, self.upper)
        return out[0] if np.ndim(v) == 1 else out

    def centre(self) -> np.ndarray:
        """The projection of the uniform mixture 1/M: a feasible interior-ish point."""
        return self.project(np.full(self.n_domains, 1.0 / self.n_domains))


def project_box_simplex(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int = 200) -> np.ndarray:
    """Exact Euclidean projection of rows v (n, M) onto {sum r = 1, lo <= r <= hi} (numpy, float64).

    ``r = clip(v - tau, lo, hi)``, ``g(tau) = sum clip(v - tau, lo, hi)`` is
    non-increasing and piecewise linear with breakpoints ``v - hi`` and ``v - lo``.
    Bisection brackets tau within a piece; on it ``g`` is linear in tau:
    ``g(tau) = sum_{free} (v_j - tau) + sum_{at lo} lo_j + sum_{at hi} hi_j``,
    solved exactly for ``g = 1``. Pinned domains (lo = hi) are never free.
    """
    v = np.atleast_2d(np.asarray(v, dtype=float))
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    a = np.min(v - hi, axis=1) - 1.0  # g(a) = sum hi >= 1
    b = np.max(v - lo, axis=1) + 1.0  # g(b) = sum lo <= 1
    for _ in range(iters):
        mid = 0.5 * (a + b)
        big = np.clip(v - mid[:, None], lo, hi).sum(axis=1) > 1.0
        a, b = np.where(big, mid, a), np.where(big, b, mid)
        if np.all(b - a < 1e-15):
            break
    tau = 0.5 * (a + b)
    shifted = v - tau[:, None]
    free = (shifted > lo) & (shifted < hi)
    at_bound = np.where(shifted <= lo, lo, np.where(shifted >= hi, hi, 0.0))  # pinned (lo = hi) counted once
    n_free = free.sum(axis=1)
    exact = np.where(n_free > 0, (np.where(free, v, 0.0).sum(axis=1) + at_bound.sum(axis=1) - 1.0)
                     / np.maximum(n_free, 1), tau)
    # keep the exact tau only when it stays on the same linear piece and sums to 1
    still = np.all((v - exact[:, None] >= lo) | ~free, axis=1) & np.all((v - exact[:, None] <= hi) | ~free, axis=1)
    still &= np.abs(np.clip(v - exact[:, None], lo, hi).sum(axis=1) - 1.0) <= 1e-12
    tau = np.where(still, exact, tau)
    return np.clip(v - tau[:, None], lo, hi)


def project_jax(v: jax.Array, lo: jax.Array, hi: jax.Array, iters: int = 64) -> jax.Array:
    """JAX version of the projection of one v (M,) (bisection on tau, then the exact
    solve on its linear piece); jit- and vmap-friendly, for use inside optimisers."""
    a = jnp.min(v - hi) - 1.0
    b = jnp.max(v - lo) + 1.0

    def body(_, ab):
        a, b = ab
        mid = 0.5 * (a + b)
        big = jnp.sum(jnp.clip(v - mid, lo, hi)) > 1.0
        return jnp.where(big, mid, a), jnp.where(big, b, mid)

    a, b = jax.lax.fori_loop(0, iters, body, (a, b))
    tau = 0.5 * (a + b)
    shifted = v - tau
    free = (shifted > lo) & (shifted < hi)
    at_bound = jnp.sum(jnp.where(shifted <= lo, lo, jnp.where(shifted >= hi, hi, 0.0)))  # pinned counted once
    n_free = jnp.sum(free)
    exact = (jnp.sum(jnp.where(free, v, 0.0)) + at_bound - 1.0) / jnp.maximum(n_free, 1)
    ok = (n_free > 0) & jnp.all(~free | ((v - exact >= lo) & (v - exact <= hi)))
    ok &= jnp.abs(jnp.sum(jnp.clip(v - exact, lo, hi)) - 1.0) <= 1e-6
    return jnp.clip(v - jnp.where(ok, exact, tau), lo, hi)


# ---------------------------------------------------------------- optimiser


@dataclasses.dataclass(frozen=True)
class SimplexOptimum:
    """What :func:`minimise_on_simplex` found, besides the best mixture and value.

    ``start``/``start_value``: the start the best result came from; ``moved``:
    whether refinement changed it (max abs difference > 1e-9); ``stationarity``:
    the norm of the projected gradient at the result, ``||r - P(r - h g)|| / h``
    (0 at a constrained local minimum); ``values`` (S,) the best value from every start and
    ``start_values`` (S,) their starting values; ``n_nonfinite``: starts whose
    objective was never finite; ``feasible``: the final constraint check passed;
    ``descent_gain``: for an unmoved result, how much a short projected-gradient
    step would still lower the objective (> 0 is a bug signal).
    """

    start: np.ndarray
    start_value: float
    moved: bool
    stationarity: float
    values: np.ndarray
    start_values: np.ndarray
    n_nonfinite: int
    steps: int
    feasible: bool
    descent_gain: float = 0.0

    def to_dict(self) -> dict:
        return {"start": self.start.tolist(), "start_value": self.start_value, "moved": self.moved,
                "stationarity": self.stationarity, "values": self.values.tolist(),
                "start_values": self.start_values.tolist(), "n_nonfinite": self.n_nonfinite,
                "steps": self.steps, "feasible": self.feasible, "descent_gain": self.descent_gain}


class UnmovedOptimumWarning(UserWarning):
    """The optimiser returned its start although the projected gradient there is not zero."""


@functools.lru_cache(maxsize=8)
def _refiner(objective: Callable, steps: int, learning_rate: float):
    """Compiled vmapped projected-Adam refinement of a batch of starts (S, M): ``refine(starts,
    (lo, hi, args))`` with ``objective(r, *args)``; kept per (objective, steps, learning rate), so
    that new ``args`` of the same shapes reuse one compilation."""
    schedule = optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=0.02)
    opt = optax.adam(schedule)

    def refine(r0, consts):
        lo, hi, args = consts

        def fun(r):
            return objective(r, *args)

        value_and_grad = jax.value_and_grad(fun)
        v0, _ = value_and_grad(r0)
        v0 = jnp.where(jnp.isfinite(v0), v0, jnp.inf)
        state = opt.init(r0)

        def step(carry, _):
            r, state, best_r, best_v = carry
            _, g = value_and_grad(r)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            # feasible descent direction: the projected-gradient step of a tiny normalised size
            h = PG_STEP / jnp.maximum(jnp.max(jnp.abs(g)), 1e-300)
            direction = (r - project_jax(r - h * g, lo, hi)) / h  # the projected gradient
            updates, state = opt.update(direction, state, r)
            r_new = project_jax(r + updates, lo, hi)
            v_new = fun(r_new)
            better = jnp.isfinite(v_new) & (v_new < best_v)
            return (r_new, state, jnp.where(better, r_new, best_r), jnp.where(better, v_new, best_v)), None

        (_, _, best_r, best_v), _ = jax.lax.scan(step, (r0, state, r0, v0), None, length=steps)
        return best_r, best_v, v0

    return jax.jit(jax.vmap(refine, in_axes=(0, None)))


@functools.lru_cache(maxsize=8)
def _value_and_grad(objective: Callable):
    """``(r, args) -> (objective(r, *args), its gradient in r)``, compiled once per objective."""
    return jax.jit(jax.value_and_grad(lambda r, args: objective(r, *args)))


def stationarity(objective: Callable, r: np.ndarray, lo: np.ndarray, hi: np.ndarray, h: float = 1e-6, *,
                 grad: Callable | None = None) -> float:
    """Norm of the projected gradient at r: ``||r - P(r - h g)|| / h``, g = grad objective(r).

    0 at a constrained stationary point (every feasible direction is uphill to
    first order); in the objective's units per unit of proportion. ``grad``: a
    precompiled gradient of ``objective`` (default ``jax.grad(objective)``)."""
    grad = grad or jax.grad(objective)
    g = np.asarray(grad(jnp.asarray(r)), dtype=float)
    if not np.all(np.isfinite(g)):
        return float("nan")
    scale = max(float(np.max(np.abs(g))), 1e-300)
    moved = project_box_simplex(r - (h / scale) * g, lo, hi)[0]
    return float(np.linalg.norm(moved - r) / (h / scale))


def descent_gain(objective: Callable, r: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 sizes=(1e-4, 1e-3, 1e-2, 1e-1), *, grad: Callable | None = None) -> float:
    """How much a step along the projected gradient lowers the objective: ``f(r) - min_h f(P(r - h g/|g|_inf))``
    over the step ``sizes`` (proportion units; <= 0 when none of them helps)."""
    r = np.asarray(r, dtype=float)
    grad = grad or jax.grad(objective)
    g = np.asarray(grad(jnp.asarray(r)), dtype=float)
    if not np.all(np.isfinite(g)) or not np.any(g):
        return 0.0
    g = g / np.max(np.abs(g))
    trial = project_box_simplex(r[None, :] - np.asarray(sizes)[:, None] * g[None, :], lo, hi)
    values = np.asarray(jax.jit(jax.vmap(objective))(jnp.asarray(np.concatenate([r[None], trial]))), dtype=float)
    f0, values = values[0], values[1:][np.isfinite(values[1:])]
    return float(f0 - values.min()) if values.size and np.isfinite(f0) else 0.0


def minimise_on_simplex(objective: Callable, bounds: SimplexBounds, starts, *, args: tuple = (), steps: int = 200,
                        learning_rate: float = 0.02, seed: int = 0,
                        warn_unmoved: bool = True) -> tuple[np.ndarray, float, SimplexOptimum]:
    """Minimise ``objective(r (M,), *args) -> scalar`` (a JAX function) over the bounded simplex.

    ``args``: arrays the objective takes after r, traced rather than baked in: calls with the same
    ``objective`` and arguments of the same shapes compile once (e.g. one pick after another of
    a batch).

    ``starts`` (S, M): starting mixtures (projected onto the bounds first). Each
    is refined by ``steps`` steps of projected Adam (step ``learning_rate`` in
    proportion units, cosine decay), all starts in one vmapped computation;
    the best visited point per start is kept. ``seed`` breaks ties among equal
    values (and is recorded) so the result is reproducible. The best mixture is
    projected again in float64 and checked: ValueError if it is infeasible.
    When the result equals its start while a short step along the projected
    gradient lowers the objective, an :class:`UnmovedOptimumWarning` says so
    (a better point exists: the refinement failed, not the search).

    Returns ``(r_best (M,), value, info)`` with ``info`` a :class:`SimplexOptimum`.
    Run inside ``jax.enable_x64(True)`` for float64 arithmetic.
    """
    if steps < 0 or not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"need steps >= 0 and learning_rate > 0, got steps={steps}, learning_rate={learning_rate}")
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if starts.shape[1] != bounds.n_domains or starts.shape[0] == 0:
        raise ValueError(f"starts must have shape (S, {bounds.n_domains}) with S >= 1, got {starts.shape}")
    starts = bounds.project(starts)
    lo, hi = jnp.asarray(bounds.lower), jnp.asarray(bounds.upper)
    args = tuple(jnp.asarray(a) for a in args)
    best_r, best_v, start_v = _refiner(objective, int(steps), float(learning_rate))(jnp.asarray(starts),
                                                                                   (lo, hi, args))
    best_r, best_v, start_v = (np.asarray(a, dtype=float) for a in (best_r, best_v, start_v))
    finite = np.isfinite(best_v)
    if not finite.any():
        raise ValueError("the objective is not finite at any start or any point visited from it")
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(best_v == best_v[finite].min())
    k = int(rng.choice(candidates))
    r = project_box_simplex(best_r[k], bounds.lower, bounds.upper)[0]
    bounds.check(r)
    value_and_grad = _value_and_grad(objective)  # one compilation for the value and both checks
    value = float(value_and_grad(jnp.asarray(r), args)[0])
    if not np.isfinite(value):
        r, value = best_r[k], float(best_v[k])
    moved = bool(np.max(np.abs(r - starts[k])) > 1e-9)

    def bound(x):
        return objective(x, *args)

    def grad(x):
        return value_and_grad(x, args)[1]

    stat = stationarity(bound, r, bounds.lower, bounds.upper, grad=grad)
    gain = 0.0 if moved or steps == 0 else descent_gain(bound, r, bounds.lower, bounds.upper, grad=grad)
    info = SimplexOptimum(start=starts[k], start_value=float(start_v[k]), moved=moved, stationarity=stat,
                          values=best_v, start_values=start_v, n_nonfinite=int((~finite).sum()),
                          steps=int(steps), feasible=True, descent_gain=gain)
    if warn_unmoved and gain > 1e-12 * max(1.0, abs(value)):
        warnings.warn(f"minimise_on_simplex returned its start unchanged although a step along the projected "
                      f"gradient lowers the objective by {gain:.3g}: try a smaller learning_rate or more steps",
                      UnmovedOptimumWarning, stacklevel=2)
    return r, value, info


def simplex_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between every row of a (n, M) and every row of b (m, M): (n, m)."""
    a = np.atleast_2d(np.asarray(a, float))
    b = np.atleast_2d(np.asarray(b, float))
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


__all__ = [
    "TOL",
    "SimplexBounds",
    "SimplexOptimum",
    "UnmovedOptimumWarning",
    "descent_gain",
    "minimise_on_simplex",
    "project_box_simplex",
    "project_jax",
    "simplex_distance",
    "stationarity",
]
