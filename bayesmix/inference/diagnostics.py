"""Convergence diagnostics of a NUTS fit, with a gate that warns or raises.

Thresholds follow Vehtari et al. (2021) and common practice: R-hat <= 1.01,
bulk and tail ESS >= 100 per chain (400 for 4 chains), no divergent
transitions, E-BFMI >= 0.3 in every chain.

Beside the gate, the share of transitions whose tree reached
``max_tree_depth`` is reported (as Stan does). It is an efficiency signal, not
a validity one, so it does not fail a fit; but when a fit fails and most
trajectories were cut at the maximum depth, NUTS was moving as a random walk,
and the warning says so.

A fit can converge and still explain nothing: :func:`loo_r2` is the PSIS-LOO
predictive R^2 (Q^2) of each group of observations (an eval domain of a
mixing law): one minus the law's leave-one-out squared error over that of a
constant (the mean of the other observations of the group). Q^2 <= 0 means
the law predicts a held-out loss no better than a constant would;
:func:`adequacy_problems` turns that into a diagnostics problem.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import arviz as az
import numpy as np


class DiagnosticsWarning(UserWarning):
    """A fit's convergence diagnostics failed (non-strict mode)."""


class DiagnosticsError(RuntimeError):
    """A fit's convergence diagnostics failed (strict mode)."""


@dataclasses.dataclass(frozen=True)
class Thresholds:
    rhat_max: float = 1.01
    ess_per_chain_min: float = 100.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Worst-case summaries over the checked variables."""

    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    ebfmi_min: float
    n_draws: int
    problems: tuple[str, ...]
    treedepth_saturation: float = float("nan")
    max_tree_depth: int | None = None
    loo_r2: dict | None = None  # held-out R^2 per eval domain (mixing-law fits), see loo_r2
    stacking: dict | None = None  # chains combined by stacking: bayesmix.inference.stacking.Stacking.to_dict
    notes: tuple[str, ...] = ()  # what the reader should know that is not a failure (e.g. the stacking line)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"ok": self.ok}


def worst(ds, fn) -> float:
    """The worst value over every variable of an ArviZ result Dataset (``fn``: np.nanmax or np.nanmin);
    NaN when no variable has a finite value."""
    values = [float(fn(ds[v].to_numpy())) for v in ds.data_vars if np.isfinite(ds[v].to_numpy()).any()]
    return float(fn(np.array(values))) if values else float("nan")


def diagnose(idata: az.InferenceData, var_names=None, thresholds: Thresholds = Thresholds()) -> Diagnostics:
    """Compute R-hat, bulk/tail ESS, divergences and E-BFMI; list what fails."""
    post = idata.posterior
    names = var_names or [v for v in post.data_vars if post[v].dtype.kind == "f"]
    n_chains = post.sizes["chain"]
    rhat = az.rhat(post, var_names=names)
    ess_bulk = az.ess(post, var_names=names, method="bulk")
    ess_tail = az.ess(post, var_names=names, method="tail")

    rhat_max = worst(rhat, np.nanmax)
    ess_bulk_min = worst(ess_bulk, np.nanmin)
    ess_tail_min = worst(ess_tail, np.nanmin)
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    ebfmi_min = float(np.min(az.bfmi(idata))) if "energy" in stats else float("nan")
    max_depth = _max_tree_depth(post.attrs)
    saturation = treedepth_saturation(stats, max_depth)
    ess_min = thresholds.ess_per_chain_min * n_chains
    problems = []
    if n_chains > 1 and not rhat_max <= thresholds.rhat_max:
        problems.append(f"R-hat {rhat_max:.3f} > {thresholds.rhat_max}")
    if not ess_bulk_min >= ess_min:
        problems.append(f"bulk ESS {ess_bulk_min:.0f} < {ess_min:.0f}")
    if not ess_tail_min >= ess_min:
        problems.append(f"tail ESS {ess_tail_min:.0f} < {ess_min:.0f}")
    if divergences > thresholds.divergences_max:
        problems.append(f"{divergences} divergent transitions")
    if not ebfmi_min >= thresholds.ebfmi_min:
        problems.append(f"E-BFMI {ebfmi_min:.2f} < {thresholds.ebfmi_min}")
    return Diagnostics(rhat_max, ess_bulk_min, ess_tail_min, divergences, ebfmi_min,
                       n_chains * post.sizes["draw"], tuple(problems), saturation, max_depth)


def loo_predictions(idata: az.InferenceData) -> np.ndarray:
    """E[y_i | y_-i] for every observation: posterior predictive draws weighted by PSIS-LOO weights."""
    log_lik = idata.log_likelihood["obs"].to_numpy()
    replicated = idata.posterior_predictive["obs"].to_numpy()
    n_obs = log_lik.shape[-1]
    log_lik, replicated = log_lik.reshape(-1, n_obs).T, replicated.reshape(-1, n_obs).T  # (obs, samples)
    log_w, _ = az.psislw(-log_lik)
    return (np.exp(log_w) * replicated).sum(axis=1)


def loo_r2(idata: az.InferenceData, groups) -> dict[str, float]:
    """PSIS-LOO predictive R^2 per group: ``1 - sum (y - E[y | others])^2 / sum (y - mean of others)^2``.

    ``groups``: one label per observation (e.g. the eval domain). Groups with
    fewer than 3 observations or no spread are left out. 1 is a perfect
    held-out prediction; 0 or less is no better than a constant.
    """
    y = idata.observed_data["obs"].to_numpy().ravel()
    predicted = loo_predictions(idata)
    groups = np.asarray(groups).astype(str)
    out = {}
    for group in dict.fromkeys(groups.tolist()):
        mask = groups == group
        n = int(mask.sum())
        if n < 3:
            continue
        others = (y[mask].sum() - y[mask]) / (n - 1)
        constant = float(((y[mask] - others) ** 2).sum())
        if constant > 0:
            out[group] = 1.0 - float(((y[mask] - predicted[mask]) ** 2).sum()) / constant
    return out


def adequacy_problems(r2: dict[str, float], what: str = "eval domain") -> tuple[str, ...]:
    """The problem line when some group's LOO R^2 is 0 or less (the law explains less than a constant)."""
    bad = {g: v for g, v in r2.items() if not v > 0}
    if not bad:
        return ()
    listed = ", ".join(f"{g} {v:.2f}" for g, v in bad.items())
    return (f"the law explains less than a constant for {what}(s) {list(bad)}: held-out (PSIS-LOO) R^2 {listed} "
            "<= 0, so the losses do not follow the mixture as the law says; do not trust its recommendation",)


def treedepth_saturation(sample_stats, max_tree_depth: int | None) -> float:
    """Share of transitions whose tree reached the maximum depth.

    A NUTS tree of depth d takes up to 2**d - 1 leapfrog steps; ArviZ stores
    ``tree_depth`` = floor(log2(n_steps)) + 1, so a tree cut at the limit has
    ``tree_depth == max_tree_depth``. NaN when the depth or the limit is unknown.
    """
    if max_tree_depth is None or sample_stats is None or "tree_depth" not in sample_stats:
        return float("nan")
    depth = np.asarray(sample_stats["tree_depth"])
    return float(np.mean(depth >= max_tree_depth))


def _max_tree_depth(attrs) -> int | None:
    """The sampler's ``max_tree_depth`` recorded on the posterior (JSON ``sampler`` attribute), if any."""
    try:
        return int(json.loads(attrs["sampler"])["max_tree_depth"])
    except (KeyError, TypeError, ValueError):
        return None


def check(diagnostics: Diagnostics, *, strict: bool = False, what: str = "fit") -> Diagnostics:
    """Warn (or raise when ``strict``) with the numbers when diagnostics fail."""
    if diagnostics.ok:
        return diagnostics
    message = f"{what}: convergence diagnostics failed: " + "; ".join(diagnostics.problems)
    if diagnostics.treedepth_saturation >= 0.5:
        message += (f"; {diagnostics.treedepth_saturation:.0%} of transitions hit max_tree_depth="
                    f"{diagnostics.max_tree_depth}, so NUTS moved as a random walk (a larger max_tree_depth, "
                    "or a better-conditioned parameterisation, is the remedy)")
    if strict:
        raise DiagnosticsError(message)
    warnings.warn(message + " (treat the intervals with caution; more draws or a reparameterisation may help)",
                  DiagnosticsWarning, stacklevel=3)
    return diagnostics
