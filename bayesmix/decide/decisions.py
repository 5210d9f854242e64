"""Decisions from posterior draws: the best mixture, and how sure we are about it.

Every function works on labelled draws, so it can be checked on hand-built
posteriors; the ``*_from`` helpers at the end read them off a fitted
:class:`bayesmix.pipeline.result.PipelineResult`.

* :func:`prob_beats`, :func:`rank_mixtures`: P(L_m < L_baseline) from joint
  draws; ranking by posterior mean, upper quantile and CVaR.
* :func:`optimum`: minimise a statistic of the predicted loss over the simplex
  within :class:`bayesmix.decide.simplex.SimplexBounds` (Dirichlet candidates, projected-Adam refinement,
  constraints checked).
* :func:`compute_multiplier`: the effective compute multiplier (the paper's
  "as good as 1.48x more steps"): the k with ``L_base(k S*) = L_m(S*)`` through
  the baseline's step law.
* :func:`critical_proportion`: for continual pretraining, the largest share of
  new data whose original-domain loss stays at or below a level with
  probability >= p.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.decide.simplex import SimplexBounds, minimise_on_simplex
from bayesmix.laws.mixtures import MIX_PREFIX

# ---------------------------------------------------------------- comparisons


def _by_mixture(draws: xr.DataArray, eval: str | None) -> xr.DataArray:
    """Draws (draw, mixture) of one eval domain from predict(draws=True) output."""
    if "eval" in draws.coords:
        evals = list(dict.fromkeys(draws["eval"].to_numpy().tolist()))
        if eval is None:
            eval = "overall" if "overall" in evals else evals[0]
        if eval not in evals:
            raise ValueError(f"unknown eval {eval!r}; the draws have {evals}")
        draws = draws.isel(point=np.flatnonzero(draws["eval"].to_numpy() == eval))
    labels = draws["mixture"].to_numpy().astype(str)
    if len(set(labels)) != labels.size:
        raise ValueError("mixture labels repeat within one eval domain")
    return xr.DataArray(draws.to_numpy(), dims=("draw", "mixture"), coords={"mixture": labels})


def prob_beats(draws: xr.DataArray, baseline: str, *, eval: str | None = None, prob: float = 0.9) -> pd.DataFrame:
    """P(L_m < L_baseline) for every mixture m from joint draws (same draw index = same world).

    ``draws``: (draw, point) with ``mixture`` (and ``eval``) coords, as returned
    by ``predict(..., draws=True)``. Also the gain ``L_baseline - L_m``: mean and
    central ``prob`` interval. Returns one row per mixture.
    """
    by_mix = _by_mixture(draws, eval)
    if baseline not in by_mix["mixture"].values:
        raise ValueError(f"baseline {baseline!r} is not among the mixtures {by_mix['mixture'].values.tolist()}")
    base = by_mix.sel(mixture=baseline).to_numpy()[:, None]
    gain = base - by_mix.to_numpy()
    alpha = (1 - prob) / 2
    return pd.DataFrame({
        "mixture": by_mix["mixture"].to_numpy(),
        "prob_beats": (gain > 0).mean(axis=0),
        "gain_mean": gain.mean(axis=0),
        "gain_lower": np.quantile(gain, alpha, axis=0),
        "gain_upper": np.quantile(gain, 1 - alpha, axis=0),
    })


def cvar(values: np.ndarray, level: float = 0.9, axis: int = 0) -> np.ndarray:
    """Conditional value at risk: mean of the values at or above their ``level`` quantile."""
    q = np.quantile(values, level, axis=axis, keepdims=True)
    upper = np.where(values >= q, values, np.nan)
    return np.nanmean(upper, axis=axis)


def rank_mixtures(draws: xr.DataArray, *, baseline: str | None = None, eval: str | None = None,
                  quantile: float = 0.9, by: str = "mean") -> pd.DataFrame:
    """Rank mixtures by predicted loss: mean, sd, ``quantile`` (upper), CVaR at that level,
    and P(beats baseline) when ``baseline`` is given. ``by``: column to sort on
    (ascending, except ``prob_beats``: descending)."""
    by_mix = _by_mixture(draws, eval)
    values = by_mix.to_numpy()
    table = pd.DataFrame({
        "mixture": by_mix["mixture"].to_numpy(),
        "mean": values.mean(axis=0),
        "sd": values.std(axis=0, ddof=1),
        f"q{int(round(quantile * 100))}": np.quantile(values, quantile, axis=0),
        "cvar": cvar(values, quantile),
    })
    if baseline is not None:
        table = table.merge(prob_beats(draws, baseline, eval=eval)[["mixture", "prob_beats"]], on="mixture")
    if by not in table:
        raise ValueError(f"cannot rank by {by!r}; columns are {list(table.columns)}")
    ranked = table.sort_values(by, ascending=by != "prob_beats", kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


# ---------------------------------------------------------------- constrained simplex


@dataclasses.dataclass(frozen=True)
class Optimum:
    """The best mixture found: ``mixture`` (domain -> proportion), the objective
    ``value`` there, the ``start`` it was refined from and its value, whether
    refinement ``moved`` it, and whether it is ``feasible`` (bounds, sum to 1)."""

    mixture: pd.Series
    value: float
    start: pd.Series
    start_value: float
    moved: bool
    feasible: bool

    def to_dict(self) -> dict:
        return {"mixture": self.mixture.to_dict(), "value": self.value, "start": self.start.to_dict(),
                "start_value": self.start_value, "moved": self.moved, "feasible": self.feasible}


STATS = ("mean", "quantile")


def _statistic(stat: str, q: float) -> Callable:
    if stat == "mean":
        return lambda d: jnp.mean(d, axis=0)
    if stat == "quantile":
        return lambda d: jnp.quantile(d, q, axis=0)
    raise ValueError(f"stat must be one of {STATS}, got {stat!r}")


CHUNK = 256  # candidates per evaluation of the objective


def chunked(fn: Callable, points: np.ndarray, size: int = CHUNK) -> np.ndarray:
    """``fn`` over ``points`` (n, ...) in chunks of ``size`` rows, the last one padded by
    repeating its final row so that every call has one shape (one compilation of a jitted
    ``fn``); (n, ...) numpy."""
    n = len(points)
    n_pad = -n % size
    padded = np.concatenate([points, np.repeat(points[-1:], n_pad, axis=0)]) if n_pad else points
    out = [np.asarray(fn(jnp.asarray(padded[i:i + size]))) for i in range(0, len(padded), size)]
    return np.concatenate(out)[:n]


def optimum(loss_fn: Callable, domains: list[str], *, bounds: SimplexBounds | None = None, stat: str = "mean",
            q: float = 0.9, n_candidates: int = 2048, n_refine: int = 8, steps: int = 200, lr: float = 0.02,
            seed: int = 0, known: np.ndarray | None = None) -> Optimum:
    """Minimise ``stat`` of the predicted loss over the simplex within ``bounds`` (default: none).

    ``loss_fn(r (n, M)) -> (draws, n)`` must be a JAX function (e.g.
    ``PipelineResult.loss_fn()``). Candidates: Dirichlet(1) draws, the uniform mixture and the
    ``known`` mixtures (k, M) if given (e.g. the tried ones, so the result is never worse than
    the best of them), projected onto the bounds; the ``n_refine`` best are refined by
    :func:`bayesmix.decide.simplex.minimise_on_simplex` (``steps`` steps of projected Adam,
    step ``lr``) and the best point visited is returned.
    Run inside ``jax.enable_x64(True)`` for float64.
    """
    statistic = _statistic(stat, q)
    bounds = SimplexBounds(domains) if bounds is None else bounds
    if list(bounds.domains) != list(domains):
        raise ValueError(f"bounds are over domains {bounds.domains}, the loss over {list(domains)}")
    M = len(domains)
    rng = np.random.default_rng(seed)
    # no vertices among the starts: an optimum at a corner is reached by refinement, so a
    # result equal to a random start keeps meaning "refinement did nothing" (a bug signal); a
    # result equal to a known mixture means nothing near it is better
    known = np.zeros((0, M)) if known is None else np.atleast_2d(np.asarray(known, float))
    cands = bounds.project(np.concatenate([rng.dirichlet(np.ones(M), size=n_candidates), np.full((1, M), 1.0 / M),
                                           known]))
    def batch_objective(r):  # (n, M) -> (n,)
        return statistic(loss_fn(r))

    def objective(r):  # (M,) -> scalar
        return batch_objective(r[None, :])[0]

    values = chunked(jax.jit(batch_objective), cands)
    starts = cands[np.argsort(values, kind="stable")[:n_refine]]

    r, value, info = minimise_on_simplex(objective, bounds, starts, steps=steps, learning_rate=lr, seed=seed,
                                         warn_unmoved=False)
    return Optimum(pd.Series(r, index=domains, name="proportion"), value,
                   pd.Series(info.start, index=domains, name="proportion"), info.start_value, info.moved,
                   bool(bounds.is_feasible(r[None])[0]))


def hull_optimum(loss_fn: Callable, domains: list[str], tried: np.ndarray, *, stat: str = "mean", q: float = 0.9,
                 n_candidates: int = 2048, n_refine: int = 8, steps: int = 200, lr: float = 0.02,
                 seed: int = 0) -> Optimum:
    """Minimise ``stat`` of the predicted loss over the convex hull of the tried mixtures
    (k, M), the trust region's interpolation part (:mod:`bayesmix.decide.support`).

    The hull is parameterised by weights on the tried mixtures, ``r = lambda^T tried`` with
    lambda on the k-simplex, and :func:`optimum` searches lambda (Dirichlet(1) starts, projected
    Adam); every point it visits is a mixture inside the hull. The returned mixture and start
    are in ``domains``. Run inside ``jax.enable_x64(True)`` for float64.
    """
    tried = np.atleast_2d(np.asarray(tried, float))
    if tried.ndim != 2 or tried.shape[1] != len(domains) or len(tried) == 0:
        raise ValueError(f"tried must have shape (k >= 1, {len(domains)}), got {tried.shape}")
    vertices = jnp.asarray(tried)
    weights = [f"tried{i}" for i in range(len(tried))]
    best = optimum(lambda lam: loss_fn(lam @ vertices), weights, stat=stat, q=q, n_candidates=n_candidates,
                   n_refine=n_refine, steps=steps, lr=lr, seed=seed)

    def mixture(lam: pd.Series) -> pd.Series:
        return pd.Series(lam.to_numpy() @ tried, index=domains, name="proportion")

    r = mixture(best.mixture)
    feasible = bool(np.all(r >= -1e-12) and abs(r.sum() - 1.0) < 1e-9 and best.feasible)
    return Optimum(r, best.value, mixture(best.start), best.start_value, best.moved, feasible)


# ---------------------------------------------------------------- compute multiplier


def power_sum(k: np.ndarray, floor: np.ndarray, reducible: np.ndarray, exponent: np.ndarray,
              weights: np.ndarray) -> np.ndarray:
    """``sum_e w_e (floor_e + reducible_e k^-exponent_e)`` for draws: k (n,), others (n, E)."""
    return (floor + reducible * np.power(k[:, None], -exponent)) @ weights


def compute_multiplier(target: np.ndarray, level: np.ndarray, reducible: np.ndarray, exponent: np.ndarray,
                       weights: np.ndarray | None = None, *, k_range: tuple[float, float] = (1e-3, 1e6),
                       iters: int = 200) -> np.ndarray:
    """Steps multiplier k per draw: the baseline reaches the mixture's loss at k S*.

    The baseline's step law at the target scale, per eval e, is
    ``L_e(k S*) = level_e - reducible_e + reducible_e k^-exponent_e`` (``level_e``:
    its loss at S*, ``reducible_e``: the part still falling with steps). The
    overall loss is ``sum_e w_e L_e``. k solves ``sum_e w_e L_e(k S*) = target``;
    with one eval domain, ``k = ((target - floor) / reducible)^(-1/exponent)``.
    Shapes: target (n,), level/reducible/exponent (n, E) or (n,). Returns k (n,):
    ``inf`` when the target is at or below the baseline's floor (never reached),
    clipped to ``k_range`` otherwise.
    """
    target = np.asarray(target, float)
    level, reducible, exponent = (np.asarray(a, float).reshape(target.size, -1) for a in (level, reducible, exponent))
    E = level.shape[1]
    w = np.full(E, 1.0 / E) if weights is None else np.asarray(weights, float)
    floor = level - reducible
    if E == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            k = ((target - floor[:, 0]) / reducible[:, 0]) ** (-1.0 / exponent[:, 0])
        return np.where(target <= floor[:, 0], np.inf, np.clip(k, *k_range))
    lo = np.full(target.size, np.log(k_range[0]))
    hi = np.full(target.size, np.log(k_range[1]))
    for _ in range(iters):  # bisection in log k; the loss falls with k
        mid = 0.5 * (lo + hi)
        above = power_sum(np.exp(mid), floor, reducible, exponent, w) > target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    k = np.exp(0.5 * (lo + hi))
    return np.where(target <= floor @ w, np.inf, k)


def quantile_with_infinite_atom(k: np.ndarray, q: float) -> float:
    """The q-quantile (numpy's linear interpolation) of draws that may hold +inf (a target no
    compute reaches): +inf where the quantile falls in, or interpolates into, the atom at +inf,
    where ``np.quantile`` computes inf - inf (or inf x 0) and returns NaN."""
    x = np.sort(np.asarray(k, float).ravel())
    if np.isnan(x).any():
        raise ValueError("multiplier draws must not be NaN")
    position = q * (x.size - 1)  # numpy's default ("linear"): x[i] + t (x[i + 1] - x[i])
    i = int(np.floor(position))
    t = position - i
    if t == 0 or i + 1 >= x.size:
        return float(x[i])
    return float("inf") if np.isinf(x[i + 1]) else float(x[i] + t * (x[i + 1] - x[i]))


def summarise_multiplier(k: np.ndarray, prob: float = 0.9) -> dict:
    """Median, mean (finite draws), central interval, and P(k > 1) of multiplier draws."""
    alpha = (1 - prob) / 2
    finite = k[np.isfinite(k)]
    return {"median": quantile_with_infinite_atom(k, 0.5), "mean": float(finite.mean()) if finite.size else float("inf"),
            "lower": quantile_with_infinite_atom(k, alpha), "upper": quantile_with_infinite_atom(k, 1 - alpha),
            "prob_above_1": float((k > 1).mean()), "share_unreachable": float(np.mean(~np.isfinite(k)))}


# ---------------------------------------------------------------- critical proportion


def critical_proportion(shares: np.ndarray, draws: np.ndarray, level: float, prob: float = 0.9) -> float:
    """Largest new-data share whose loss stays <= ``level`` with probability >= ``prob``.

    ``shares`` (K,) increasing from the smallest share considered; ``draws`` (n, K)
    the original-domain loss at each share. P(L <= level) >= prob is the
    ``prob``-quantile q(share) <= level; the answer is where q first crosses
    ``level`` (linear interpolation between grid points), the last share when it
    never does, and NaN when even the first share fails.
    """
    shares = np.asarray(shares, float)
    if shares.ndim != 1 or np.any(np.diff(shares) <= 0):
        raise ValueError("shares must be a strictly increasing 1-d grid")
    draws = np.asarray(draws, float)
    if draws.ndim != 2 or draws.shape[1] != shares.size:
        raise ValueError(f"draws must have shape (n, {shares.size}), got {draws.shape}")
    q = np.quantile(draws, prob, axis=0)
    over = np.flatnonzero(q > level)
    if over.size == 0:
        return float(shares[-1])
    i = int(over[0])
    if i == 0:
        return float("nan")
    frac = (level - q[i - 1]) / (q[i] - q[i - 1])
    return float(shares[i - 1] + frac * (shares[i] - shares[i - 1]))


# ---------------------------------------------------------------- from a pipeline result


def _mixture_row(result, mixture) -> pd.DataFrame:
    """One labelled mixture (``mixture`` + ``mix.*``) from a label or proportions."""
    observed = result.observed_mixtures()
    if isinstance(mixture, str):
        row = observed[observed["mixture"].astype(str) == mixture]
        if row.empty:
            raise ValueError(f"unknown mixture {mixture!r}; observed mixtures are {observed['mixture'].tolist()}")
        return row.reset_index(drop=True)
    values = dict(mixture)
    frame = pd.DataFrame([{MIX_PREFIX + str(k).removeprefix(MIX_PREFIX): float(v) for k, v in values.items()}])
    frame.insert(0, "mixture", "query")
    return frame


REGIONS = ("simplex", "hull")


def predicted_optimum(result, *, bounds: SimplexBounds | None = None, region: str = "simplex", stat: str = "mean",
                      q: float = 0.9, baseline: str | None = None, eval: str | None = None, prob: float = 0.9,
                      seed: int = 0, **options) -> tuple[Optimum, pd.DataFrame]:
    """The optimum of a pipeline's predicted target-scale loss over the bounded simplex
    (``region="simplex"``, :func:`optimum`; ``bounds``: see there) or over the convex hull of
    the mixtures its mixing law saw (``region="hull"``, :func:`hull_optimum`), and its
    prediction (per eval and overall, with intervals; P(beats baseline) and the gain when
    ``baseline`` names an observed mixture)."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if region == "hull" and bounds is not None:
        raise ValueError("bounds apply to the simplex region; the hull region is the tried mixtures' own")
    with jax.enable_x64(True):
        f = result.loss_fn(eval, seed=seed)
        if region == "hull":
            best = hull_optimum(f, result.domains, result.tried_mixtures(), stat=stat, q=q, seed=seed, **options)
        else:
            best = optimum(f, result.domains, bounds=bounds, stat=stat, q=q, seed=seed,
                           known=result.tried_mixtures(), **options)
    rows = pd.DataFrame([best.mixture.rename(lambda d: MIX_PREFIX + d)]).assign(mixture="optimum")
    if baseline is not None:
        rows = pd.concat([rows, _mixture_row(result, baseline)], ignore_index=True)
    draws = result.predict(rows, draws=True, seed=seed)
    table = result.predict(rows, prob=prob, seed=seed)
    if baseline is not None:
        beats = prob_beats(draws, baseline, eval=eval, prob=prob)
        table = table.merge(beats[["mixture", "prob_beats", "gain_mean", "gain_lower", "gain_upper"]],
                            on="mixture", how="left")
    return best, table


def effective_compute_multiplier(result, mixture, baseline: str, *, eval: str | None = None,
                                 prob: float = 0.9) -> dict:
    """Compute multiplier of ``mixture`` over the observed mixture ``baseline`` at the target scale.

    The baseline's target-scale step law keeps, per eval domain, the reducible
    loss at S* and exponent of its step-law fit at the largest proxy size it was
    run at (the Chinchilla form ``E(N) + A S^-alpha``: the step term does not
    depend on N), and is anchored at the pipeline's predicted target-scale loss of
    the baseline. Draws are joint: final draw j uses the upstream dataset it
    descends from.
    """
    from bayesmix.laws.mixing import OVERALL

    if result.step_shape is None:
        raise ValueError("the compute multiplier needs the step law: fit the pipeline on runs with several "
                         "checkpoints and a target step beyond them")
    evals = result.evals
    eval = eval or (OVERALL if len(evals) > 1 else evals[0])
    base_row = _mixture_row(result, baseline)
    label = str(base_row["mixture"].iloc[0])
    rows = pd.concat([_mixture_row(result, mixture).assign(mixture="mixture"), base_row], ignore_index=True)
    draws = result.predict(rows, draws=True)  # (n, points): mixture then baseline, evals (+ overall)
    point_eval = draws["eval"].to_numpy()
    point_mix = draws["mixture"].to_numpy().astype(str)
    values = draws.to_numpy()
    per_eval = [e for e in evals] if eval == OVERALL else [eval]

    def per_eval_draws(name: str) -> np.ndarray:  # (draws, len(per_eval)) of one mixture
        return np.stack([values[:, (point_mix == name) & (point_eval == e)][:, 0] for e in per_eval], axis=1)

    level = per_eval_draws(label)
    weights = np.asarray(result.stages["mix"].data.meta["weights"]) if eval == OVERALL else None
    # the target from the same per-domain draws as the baseline's level (each domain with its own
    # discrepancy), so that the baseline over itself is exactly 1
    target = per_eval_draws("mixture") @ (np.ones(1) if weights is None else weights)
    shape = result.step_shape
    labels = shape["labels"]
    mine = labels["mixture"].astype(str) == label
    if not mine.any():
        raise ValueError(f"baseline {label!r} has no step-law curves")
    largest = labels.loc[mine, "size"].max()
    lane = result.lane_of_draw % shape["reducible"].shape[0]
    reducible, exponent = [], []
    for e in per_eval:
        cols = np.flatnonzero((mine & (labels["size"] == largest) & (labels["eval"].astype(str) == e)).to_numpy())
        reducible.append(shape["reducible"][:, cols].mean(axis=1)[lane])
        exponent.append(shape["exponent"][:, cols].mean(axis=1)[lane])
    k = compute_multiplier(target, level, np.stack(reducible, 1), np.stack(exponent, 1), weights)
    return {"baseline": label, "eval": eval, "size_of_step_law": int(largest), **summarise_multiplier(k, prob)}


def critical_proportion_from(result, base, new_domain: str, *, level: float, eval: str, prob: float = 0.9,
                             shares=None) -> tuple[float, pd.DataFrame]:
    """Continual pretraining: mix ``base`` (label or proportions) with ``new_domain``,
    ``r(s) = (1 - s) r_base + s e_new``; the critical share for ``eval`` (the
    original domain) at ``level``, and the table (share, mean, lower, upper,
    prob_below) over the grid ``shares`` (default 0..1 in steps of 0.01)."""
    domains = result.domains
    if new_domain not in domains:
        raise ValueError(f"unknown domain {new_domain!r}; domains are {domains}")
    shares = np.linspace(0, 1, 101) if shares is None else np.asarray(shares, float)
    r0 = _mixture_row(result, base)[[MIX_PREFIX + d for d in domains]].to_numpy(float)[0]
    e_new = np.eye(len(domains))[domains.index(new_domain)]
    grid = (1 - shares)[:, None] * r0 + shares[:, None] * e_new
    frame = pd.DataFrame(grid, columns=[MIX_PREFIX + d for d in domains])
    frame.insert(0, "mixture", [f"s{i}" for i in range(len(shares))])
    draws = result.predict(frame, draws=True)
    pick = draws["eval"].to_numpy() == eval
    if not pick.any():
        raise ValueError(f"unknown eval {eval!r}; the pipeline has {result.evals}")
    values = draws.to_numpy()[:, pick]
    alpha = (1 - prob) / 2
    table = pd.DataFrame({"share": shares, "mean": values.mean(axis=0),
                          "lower": np.quantile(values, alpha, axis=0), "upper": np.quantile(values, 1 - alpha, axis=0),
                          "prob_below": (values <= level).mean(axis=0)})
    return critical_proportion(shares, values, level, prob), table
