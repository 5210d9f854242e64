"""Mixing law M4 with explicit aggregation (Ye et al. 2024, eq. 4).

    L_e(r) = c_e + exp(b_e + t_e . r),            overall(r) = sum_e w_e L_e(r)

Since sum_j r_j = 1, b_e and a common shift of t_e are not identifiable. We
centre at a reference mixture r0 (the mean observed mixture) and constrain t_e
to sum to zero:

    L_e(r) = floor_e + (level_e - floor_e) * exp(t_e . (r - r0)),   sum_j t_ej = 0
    b_e = log(level_e - floor_e) - t_e . r0,   c_e = floor_e

Hierarchy: t_e = mu + tau * z_e with mu, z_e ~ ZeroSumNormal (interaction terms
partially pooled across eval domains; with a single eval domain t = mu).
level_e = y_ref_e * exp(level_sd * w_e), floor_e = level_e * sigmoid(f_e);
Student-t noise with a scale per eval domain. Negative t_ej: domain j helps e.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from bayesmix.data.table import RunTableError, select_evals
from bayesmix.laws.base import LawData, Query, category_codes, pad_groups
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns
from bayesmix.laws.overall import OVERALL, one_size, weighted_overall
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import likelihood, noise_scale_site, observation_scale
from bayesmix.laws.size import rows_at_step



def m4_mean(r_centered, level, floor, t):
    """Per-eval loss (n, E) at centred mixtures r_centered (n, M); level, floor (E,), t (E, M)."""
    return floor + (level - floor) * jnp.exp(r_centered @ t.T)


def m4_draws(r_centered, level, floor, t, xp=jnp):
    """M4 for every posterior draw: (draws, n, E) at centred mixtures r_centered (n, M), with
    level, floor (draws, E) and t (draws, E, M):
    ``floor[d, e] + (level[d, e] - floor[d, e]) * exp(sum_j r[n, j] t[d, e, j])``.
    ``xp``: the array namespace, ``jax.numpy`` (differentiable in r, traceable) or ``numpy``
    (no compilation: for predictions at many query shapes)."""
    level, floor = level[:, None, :], floor[:, None, :]
    return floor + (level - floor) * xp.exp(xp.einsum("nm,dem->dne", r_centered, t))


def m4_numpy(r_centered, params: dict) -> np.ndarray:
    """:func:`m4_draws` in numpy for the draws ``params`` (level, floor, t): (draws, n, E)."""
    return m4_draws(np.asarray(r_centered), *(np.asarray(params[k]) for k in ("level", "floor", "t")), np)


def m4_model(data: dict, priors: dict, y=None):
    """numpyro model of M4; data: ``r_centered`` (n_runs, M), ``run`` (n,), ``eval`` (n,),
    ``y_ref`` (E,), ``loss_scale``; optional ``meas_sd`` (n,) known measurement sd."""
    n_evals = data["y_ref"].shape[0]
    n_domains = data["r_centered"].shape[1]
    mu = numpyro.sample("interaction_mu", dist.ZeroSumNormal(priors["interaction_scale"], event_shape=(n_domains,)))
    if n_evals > 1:
        tau = numpyro.sample("interaction_tau", dist.HalfNormal(priors["interaction_tau"]))
        with numpyro.plate("eval", n_evals):
            z = numpyro.sample("interaction_z", dist.ZeroSumNormal(1.0, event_shape=(n_domains,)))
        t = numpyro.deterministic("t", mu + tau * z)
    else:
        t = numpyro.deterministic("t", mu[None, :])
    with numpyro.plate("eval", n_evals):
        level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
        floor_logit = numpyro.sample("floor_logit", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
        level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * level_z))
        floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(floor_logit))
    sigma = noise_scale_site(data, priors, n_evals)
    run, e = data["run"], data["eval"]
    mean = floor[e] + (level[e] - floor[e]) * jnp.exp(jnp.sum(data["r_centered"][run] * t[e], axis=-1))
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, observation_scale(sigma[e], data), priors["student_df"], y), obs=y)


def _point_mean(theta, r_centered):
    log_floor, log_reducible, t = theta[0], theta[1], theta[2:]
    t = t - jnp.mean(t)
    return jnp.exp(log_floor) + jnp.exp(log_reducible + r_centered @ t)


def _point_init(key, r_centered, y, mask):
    k1, k2 = jax.random.split(key)
    y_min = jnp.min(jnp.where(mask, y, jnp.inf))
    y_mean = jnp.sum(jnp.where(mask, y, 0.0)) / jnp.sum(mask)
    floor = jax.random.uniform(k1, minval=0.05, maxval=0.95) * y_min
    t = jax.random.normal(k2, (r_centered.shape[-1],))
    return jnp.concatenate([jnp.stack([jnp.log(floor), jnp.log(y_mean - floor)]), t])


def _weights(weights, evals: list[str]) -> list[float]:
    if weights is None:
        return [1.0 / len(evals)] * len(evals)
    unknown = sorted(set(weights) - set(evals))
    missing = sorted(set(evals) - set(weights))
    if unknown or missing:
        raise ValueError(f"weights must name every eval domain {evals}; unknown {unknown}, missing {missing}")
    w = [float(weights[e]) for e in evals]
    if any(not np.isfinite(v) or v < 0 for v in w):
        raise ValueError(f"weights must be finite and non-negative, got {dict(zip(evals, w))}")
    return w


class MixingLaw:
    """M4 mixing law at one (size, step); explicit aggregation with weights ``w_e``."""

    name = "mix"
    param_dims = {"t": ["eval", "domain"], "level": ["eval"], "floor": ["eval"], "sigma": ["eval"]}
    fit_group = "eval"
    mean_sites = ("level", "floor", "t")
    dense_lanes = True  # level, floor and interactions trade off
    downstream = True

    def model(self, data: dict, priors: dict, y=None):
        m4_model(data, priors, y)

    def prepare(self, runs: pd.DataFrame, *, size: int | None = None, step: int | None = None,
                evals: list[str] | None = None, weights: dict[str, float] | None = None) -> LawData:
        """Rows at one model size and one checkpoint per run, as M4 observations."""
        rows = rows_at_step(one_size(runs, size, "mix", hint=" (or use the nested pipeline)"), step)
        rows = select_evals(rows, evals, law=self.name)
        cols = mix_columns(rows)
        domains = [c[len(MIX_PREFIX):] for c in cols]
        n_mix = len(rows.drop_duplicates(cols))
        needed = len(domains) + 2
        if n_mix < needed:
            raise RunTableError(
                f"law 'mix' needs at least {needed} distinct mixtures for {len(domains)} domains, "
                f"the table has {n_mix}"
            )
        rows = rows.reset_index(drop=True)
        run_idx, runs_seen = category_codes(rows["run"])
        eval_idx, evals_seen = category_codes(rows["eval"])
        r = rows.drop_duplicates("run").set_index("run").loc[runs_seen, cols].to_numpy(float)
        r0 = r.mean(axis=0)
        y = rows["loss"].to_numpy(float)
        y_ref = rows.groupby("eval", sort=False)["loss"].mean().loc[evals_seen].to_numpy(float)
        return LawData(
            arrays={"r_centered": r - r0, "run": run_idx, "eval": eval_idx, "y_ref": y_ref,
                    "loss_scale": float(y.mean())},
            y=y,
            coords={"run": runs_seen, "eval": evals_seen, "domain": domains},
            meta={"r0": r0.tolist(), "domains": domains, "weights": _weights(weights, evals_seen),
                  "size": int(rows["size"].iloc[0]), "step": int(rows["step"].max())},
            obs_index=rows[["run", "eval", "size", "step", *cols]],
        )

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16, **fit_options) -> dict[str, np.ndarray]:
        """Independent Huber fit per eval domain; natural parameters (level, floor, t).

        ``fit_options`` (``max_iter``, ``tol``, ``delta``) go to ``multistart_fit``."""
        a = data.arrays
        x, y, mask = pad_groups(a["eval"], len(data.coords["eval"]), a["r_centered"][a["run"]], data.y)
        theta, _ = multistart_fit(_point_mean, _point_init, jnp.asarray(x), jnp.asarray(y),
                                  jnp.asarray(mask), seed=seed, n_starts=n_starts, **fit_options)
        theta = np.asarray(theta)
        floor = np.exp(theta[:, 0])
        t = theta[:, 2:] - theta[:, 2:].mean(axis=1, keepdims=True)
        return {"floor": floor, "level": floor + np.exp(theta[:, 1]), "t": t}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """Sample-site values reproducing the point fit (clipped to sane ranges)."""
        share = np.clip(point["floor"] / point["level"], 0.02, 0.98)
        t = np.clip(point["t"], -20, 20)
        t = t - t.mean(axis=1, keepdims=True)
        mu = t.mean(axis=0)
        values = {
            "interaction_mu": mu,
            "level_z": np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3),
            "floor_logit": np.log(share / (1 - share)),
        }
        if t.shape[0] > 1:
            tau = max(float(np.std(t - mu)), 0.1)
            values.update(interaction_tau=tau, interaction_z=(t - mu) / tau)
        return values

    def query(self, data: LawData, **inputs) -> Query:
        """Predict per-eval (and overall, with several evals) loss at ``mixtures=``."""
        if set(inputs) != {"mixtures"}:
            raise ValueError(f"law 'mix' predicts at mixtures=...; got {sorted(inputs) or 'nothing'}")
        domains = data.meta["domains"]
        r, frame = as_mixture_matrix(inputs["mixtures"], domains)
        evals = list(data.coords["eval"]) + ([OVERALL] if len(data.coords["eval"]) > 1 else [])
        labels = frame.loc[np.repeat(np.arange(len(frame)), len(evals))].reset_index(drop=True)
        labels.insert(1, "eval", evals * len(frame))
        return Query(arrays={"r_centered": r - np.asarray(data.meta["r0"])}, labels=labels, evals=evals)

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): per-eval means, plus the weighted overall when present."""
        return self.mean_from_per_eval(self.per_eval_draws(params, query), query, meta)

    @staticmethod
    def fitted(params: dict[str, np.ndarray], data: LawData) -> np.ndarray:
        """The mean at the law's own observations for every draw: (draws, n_obs)."""
        a = data.arrays
        per_run = m4_numpy(a["r_centered"], params)  # (draws, runs, E)
        return per_run[:, a["run"], a["eval"]]

    @staticmethod
    def per_eval_draws(params: dict[str, np.ndarray], query: Query) -> np.ndarray:
        """(draws, n, E): every eval's mean at the query's mixtures for every draw."""
        return m4_numpy(query.arrays["r_centered"], params)

    @classmethod
    def mean_from_per_eval(cls, per_eval: np.ndarray, query: Query, meta: dict) -> np.ndarray:
        """(draws, points) from per-eval means (draws, n, E): the overall is sum_e w_e L_e."""
        return cls._with_overall(per_eval, query, meta, weighted_overall)

    def noise_scale(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): sigma_e per eval; sqrt(sum w_e^2 sigma_e^2) for the overall."""
        n_q = query.arrays["r_centered"].shape[0]
        sigma = np.broadcast_to(params["sigma"][:, None, :], (params["sigma"].shape[0], n_q, params["sigma"].shape[1]))
        return self._with_overall(sigma, query, meta, lambda s, w: np.sqrt((s**2) @ (w**2)))

    @staticmethod
    def _with_overall(per_eval: np.ndarray, query: Query, meta: dict, combine) -> np.ndarray:
        """(draws, points) from per-eval values (draws, n, E): the evals of each mixture, then
        ``combine(per_eval, weights)`` as the overall when the query has it."""
        if OVERALL in query.evals:
            w = np.asarray(meta["weights"])
            per_eval = np.concatenate([per_eval, combine(per_eval, w)[..., None]], axis=-1)
        return per_eval.reshape(per_eval.shape[0], -1)

    @staticmethod
    def natural_parameters(params: dict[str, np.ndarray], r0) -> dict[str, np.ndarray]:
        """(c, b, t) of ``c_e + exp(b_e + t_e . r)`` from the centred parameterisation."""
        return {"c": params["floor"], "b": np.log(params["level"] - params["floor"]) - params["t"] @ np.asarray(r0),
                "t": params["t"]}
