"""Stacking of chains that do not mix (Yao, Vehtari and Gelman 2022, JMLR 23).

When a posterior is multimodal and NUTS cannot move between the modes, chains
started apart settle in different modes and the pooled draws are not a sample
of the posterior (R-hat across chains stays far above 1). Stacking keeps each
chain as a sample of its own local mode and weights the chains by how well
they predict left-out data:

    w = argmax_{w in simplex} sum_i log sum_k w_k p(y_i | y_-i, chain k)

where ``p(y_i | y_-i, chain k)`` is chain k's PSIS-LOO predictive density of
observation i (``arviz.loo`` on that chain alone); the weights come from
``arviz.compare(method="stacking")``. The predictive distribution is the
mixture ``sum_k w_k p(y~ | chain k)``.

A chain is used only when it passes its own checks: the split R-hat of its two
halves and its bulk ESS on the checked variables (:class:`ChainThresholds`),
and no divergent transition. A chain that fails gets weight 0 and is named; a
stacked fit whose chains all fail has no sample to stand on and is a failed fit.
When the chains do mix (the pooled R-hat passes) they sample one posterior, the
stacking optimum is flat, and the passing chains get equal weights instead.

Shapes: ``idata.posterior`` has dims (chain, draw, ...); weights are one per chain.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayesmix.inference.diagnostics import Diagnostics, adequacy_problems, worst

COMBINE_MODES = ("pooled", "stacking")
CARRIED_SHARE = 0.9  # "the chains carrying 90% of the weight"


@dataclasses.dataclass(frozen=True)
class ChainThresholds:
    """One chain's own checks: split R-hat of its halves <= ``rhat_max`` and bulk ESS >=
    ``ess_min`` on every checked variable, at most ``divergences_max`` divergent transitions.

    R-hat 1.05 rather than the pooled gate's 1.01: two halves of one chain are a
    small sample of R-hat; ESS 100 is Vehtari et al.'s (2021) per-chain minimum.
    """

    rhat_max: float = 1.05
    ess_min: float = 100.0
    divergences_max: int = 0


def split_halves(chain: xr.Dataset) -> xr.Dataset:
    """One chain's draws (draw, ...) as two pseudo-chains, its first and second halves (2, draw/2, ...)."""
    half = chain.sizes["draw"] // 2
    first = chain.isel(draw=slice(0, half)).assign_coords(draw=np.arange(half))
    second = chain.isel(draw=slice(half, 2 * half)).assign_coords(draw=np.arange(half))
    return xr.concat([first, second], dim="chain").assign_coords(chain=[0, 1])


def chain_checks(idata: az.InferenceData, var_names, thresholds: ChainThresholds = ChainThresholds()) -> pd.DataFrame:
    """Each chain judged on its own: one row per chain (index ``chain``) with ``rhat_max``
    (split R-hat of its halves, worst variable), ``ess_bulk_min``, ``divergences``, ``ok``
    and ``reason`` (empty when ok)."""
    post = idata.posterior
    stats = getattr(idata, "sample_stats", None)
    rows = []
    for chain in post["chain"].to_numpy():
        halves = split_halves(post[list(var_names)].sel(chain=chain))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rhat = worst(az.rhat(halves), np.nanmax)
            ess = worst(az.ess(halves, method="bulk"), np.nanmin)
        divergences = int(stats["diverging"].sel(chain=chain).sum()) if stats is not None and "diverging" in stats else 0
        reasons = []
        if not rhat <= thresholds.rhat_max:
            reasons.append(f"split R-hat {rhat:.3f} > {thresholds.rhat_max}")
        if not ess >= thresholds.ess_min:
            reasons.append(f"bulk ESS {ess:.0f} < {thresholds.ess_min:.0f}")
        if divergences > thresholds.divergences_max:
            reasons.append(f"{divergences} divergent transitions")
        rows.append({"chain": int(chain), "rhat_max": rhat, "ess_bulk_min": ess, "divergences": divergences,
                     "ok": not reasons, "reason": "; ".join(reasons)})
    return pd.DataFrame(rows).set_index("chain")


def chain_loo(idata: az.InferenceData, chains=None) -> dict[int, az.ELPDData]:
    """PSIS-LOO of each chain alone (``arviz.loo`` with pointwise values), keyed by chain."""
    chains = idata.posterior["chain"].to_numpy() if chains is None else chains
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {int(c): az.loo(idata.sel(chain=[c]), pointwise=True) for c in chains}


def stacking_weights(elpds: dict) -> pd.Series:
    """Stacking weights of LOO results ``{name: ELPDData}`` (``arviz.compare(method="stacking")``),
    in the order given; one entry gets weight 1."""
    if len(elpds) == 1:
        return pd.Series({name: 1.0 for name in elpds}, name="weight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(dict(elpds), method="stacking")
    weights = table["weight"].reindex(list(elpds)).astype(float).clip(lower=0.0)
    return (weights / weights.sum()).rename("weight")


def carried_by(weights, share: float = CARRIED_SHARE) -> int:
    """The fewest chains whose weights add up to ``share`` of the total."""
    w = np.sort(np.asarray(weights, dtype=float))[::-1]
    return int(np.searchsorted(np.cumsum(w) / w.sum(), share - 1e-12) + 1)


@dataclasses.dataclass(frozen=True)
class Stacking:
    """The outcome of stacking: ``weights`` (per chain, 0 for a failed chain), each chain's
    ``checks`` (:func:`chain_checks`) and PSIS-LOO ``elpd`` (per chain)."""

    weights: pd.Series
    checks: pd.DataFrame
    elpd: pd.Series
    loos: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    mixed: bool = False  # the chains agree (pooled R-hat passes): equal weights, stacking not needed

    def loo(self) -> az.ELPDData:
        """PSIS-LOO of the stacked predictive (:func:`stacked_loo`)."""
        return stacked_loo(self.loos, self.weights)

    @property
    def failed(self) -> list[int]:
        return [int(c) for c in self.checks.index[~self.checks["ok"].astype(bool)]]

    @property
    def ok(self) -> bool:
        """At least one chain passes its own checks."""
        return bool(self.checks["ok"].any())

    @property
    def n_carrying(self) -> int:
        return carried_by(self.weights) if self.weights.sum() > 0 else 0

    def summary(self) -> str:
        """The line the diagnostics print."""
        if not self.ok:
            return (f"chains do not mix, and each of the {len(self.checks)} chains fails its own checks, "
                    "so stacking has nothing to combine: " + self._failures()
                    + " (each chain drifts instead of sitting in a mode: longer chains, a larger max_tree_depth "
                      "or a law with better-identified parameters is the remedy)")
        if self.mixed:
            line = (f"chains mix (pooled R-hat passes), so stacking is not needed: equal weights over the "
                    f"{len(self.checks) - len(self.failed)} chains that pass their own checks")
            return line + (f"; weight 0 for {self._failures()}" if self.failed else "")
        shown = ", ".join(f"chain {c}: {w:.2f}" for c, w in self.weights.sort_values(ascending=False).items() if w >= 0.005)
        line = (f"chains do not mix; combined by stacking (weights {shown}; {self.n_carrying} of "
                f"{len(self.weights)} chains carry {CARRIED_SHARE:.0%} of the weight)")
        return line + (f"; weight 0 for chains that fail their own checks: {self._failures()}" if self.failed else "")

    def _failures(self) -> str:
        return "; ".join(f"chain {c} ({self.checks.loc[c, 'reason']})" for c in self.failed)

    def to_dict(self) -> dict:
        return {"weights": {int(k): float(v) for k, v in self.weights.items()}, "mixed": self.mixed,
                "n_carrying": self.n_carrying, "failed": self.failed, "ok": self.ok,
                "checks": {int(c): {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                           for c, row in self.checks.iterrows()},
                "elpd": {int(k): float(v) for k, v in self.elpd.items()}}


def stack_chains(idata: az.InferenceData, var_names, thresholds: ChainThresholds = ChainThresholds(), *,
                 mixed: bool = False) -> Stacking:
    """Judge every chain on its own, then stack the chains that pass by their PSIS-LOO densities.

    With ``mixed`` (the chains agree: the pooled R-hat passes) the passing chains get equal
    weights instead. Chains that sample one posterior predict alike, so the stacking optimum
    is flat and its optimiser would put all the weight on one chain at random, throwing the
    other chains' draws away."""
    checks = chain_checks(idata, var_names, thresholds)
    passing = [int(c) for c in checks.index[checks["ok"].astype(bool)]]
    loos = chain_loo(idata)
    elpd = pd.Series({c: float(loo.elpd_loo) for c, loo in loos.items()}, name="elpd_loo")
    weights = pd.Series(0.0, index=checks.index, name="weight")
    if passing:
        weights.loc[passing] = (np.full(len(passing), 1.0 / len(passing)) if mixed
                                else stacking_weights({c: loos[c] for c in passing}).to_numpy())
    return Stacking(weights, checks, elpd, loos, mixed)


def allocate_draws(weights, n_per_chain: int) -> list[np.ndarray]:
    """Draw indices per chain whose counts follow the weights: the stacked mixture as
    ``n_chains * n_per_chain`` equally weighted draws, deterministic.

    Counts come from the largest-remainder rounding of ``w_k * n_chains * n_per_chain``;
    a chain's draws are taken evenly spaced along it (repeated when its count exceeds
    ``n_per_chain``).
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(w >= 0) or not w.sum() > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w}")
    total = len(w) * int(n_per_chain)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]] += 1
    return [np.floor(np.arange(n) * n_per_chain / n).astype(int) if n else np.zeros(0, int) for n in counts]


def stacked_draws(posterior: xr.Dataset, names, weights) -> dict[str, np.ndarray]:
    """Named variables of the stacked mixture, chains flattened: name -> (draws, ...)."""
    chains = posterior["chain"].to_numpy()
    picks = allocate_draws(np.asarray(pd.Series(weights).reindex(chains).fillna(0.0)), posterior.sizes["draw"])
    out = {}
    for name in names:
        values = posterior[name].transpose("chain", "draw", ...).to_numpy()
        out[name] = np.concatenate([values[i, idx] for i, idx in enumerate(picks)], axis=0)
    return out


def stacked_diagnostics(pooled: Diagnostics, stacking: Stacking) -> Diagnostics:
    """The diagnostics of a stacked fit: the pooled gate's R-hat, ESS, divergence and E-BFMI
    problems are replaced by the chains' own checks (chains are not expected to agree; a
    failed chain is left out with weight 0). The stacking line is a note when some chain
    passes, and the one convergence problem when none does; other problems (the law's
    adequacy) are kept."""
    kept = adequacy_problems(pooled.loo_r2 or {})  # the only problems fit_diagnostics adds to the sampler's
    problems = kept if stacking.ok else (stacking.summary(), *kept)
    notes = (stacking.summary(),) if stacking.ok else ()
    return dataclasses.replace(pooled, problems=problems, notes=pooled.notes + notes, stacking=stacking.to_dict())


def predictive_loo(idata: az.InferenceData, stacking: Stacking | None = None) -> az.ELPDData:
    """PSIS-LOO of a fit's predictive: the stacked mixture's when ``stacking`` worked, else the
    pooled chains' (``arviz.loo`` on site ``obs``, pointwise)."""
    if stacking is not None and stacking.ok:
        return stacking.loo()
    return az.loo(idata, pointwise=True, var_name="obs")


def stacked_loo(loos: dict, weights) -> az.ELPDData:
    """PSIS-LOO of the stacked mixture: ``elpd_i = log sum_k w_k p(y_i | y_-i, chain k)``.

    ``loos``: chain -> ELPDData (pointwise); ``weights``: chain -> weight. ``p_loo`` is the
    weighted mean of the chains' and ``pareto_k`` the worst k of the weighted chains, per
    observation; ``se`` = sqrt(n var(elpd_i)), as ArviZ computes it.
    """
    weights = pd.Series(weights, dtype=float)
    used = [c for c in loos if weights.get(c, 0.0) > 0]
    if not used:
        raise ValueError("stacked_loo needs at least one chain with positive weight")
    w = weights[used].to_numpy() / weights[used].sum()
    lpd = np.stack([np.asarray(loos[c].loo_i) for c in used], axis=1)
    pointwise = logsumexp(lpd + np.log(w), axis=1)
    best = used[int(np.argmax(w))]
    out = copy.deepcopy(loos[best])
    out["loo_i"] = out["loo_i"].copy(data=pointwise)
    out["pareto_k"] = out["pareto_k"].copy(data=np.max(np.stack([np.asarray(loos[c].pareto_k) for c in used]), axis=0))
    out["elpd_loo"] = float(pointwise.sum())
    out["se"] = float(np.sqrt(len(pointwise) * np.var(pointwise)))
    out["p_loo"] = float(np.sum(w * np.array([float(loos[c].p_loo) for c in used])))
    return out
