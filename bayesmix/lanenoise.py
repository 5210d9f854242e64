"""Draws-mode lanes count the upstream error once: each lane's spread is brought to the stage's own noise.

A draws-mode lane d fits a stage's law to one upstream dataset y_d, a posterior
draw of the upstream predictions (see :mod:`bayesmix.pipeline`). With m_i the
upstream posterior mean of point i and mu_i its true value, the lane's data
scatter about the law by the stage's own noise e_i and by the upstream error
twice: the upstream mean's error m_i - mu_i, and the draw's spread y_di - m_i,
each of variance v_i for a calibrated upstream. A lane that learns its noise
takes both into it (sigma_d^2 ~ sigma_own^2 + 2 v), so its posterior is too wide,
and the spread between lanes carries the upstream error once more: the pooled
intervals over-cover.

For a law whose lane posterior is near Gaussian, the posterior spread about the
lane's mean scales with the noise sd (a Laplace argument: the mode does not
depend on sigma, the curvature goes as 1 / sigma^2). Each lane's draws are
therefore moved towards the lane's mean by the ratio of the own noise sd to the
lane's noise sd, per eval domain e:

    V_de = mean_s sigma_des^2 * df / (df - 2)             lane noise variance (Student-t df; 1 for a Normal)
    v_e  = mean_(i in e) Var_d(y_di - fhat_di)            upstream spread the lanes' fits do not absorb
    k_de = sqrt(max(V_de - 2 v_e, K_MIN^2 V_de) / V_de)
    theta'_des = mean_s theta_des + k_de (theta_des - mean_s theta_des),   sigma'_des = k_de sigma_des

fhat_d is lane d's posterior mean at its observations. v_e is measured on the
residuals, not on the raw datasets: an error that every point of a dataset shares
(the size law's exponent moves all mixtures together) moves the lane's fit, not
its residuals, so it stays whole in the spread between lanes.

After the correction the within-lane spread carries the stage's own noise and the
between-lane spread the upstream error, the split the moments fit makes for
independent errors. ``K_MIN`` keeps a lane whose noise is explained entirely by
the upstream spread from collapsing to a point.

Shapes: ``samples[name]`` (D, chains, draws, ...) as in
:class:`bayesmix.batched.LaneSamples`; ``values`` (D, n_obs) the datasets.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bayesmix.batched import LaneSamples
from bayesmix.laws import m4_mean, power_law_mean

K_MIN = 0.1
MEAN_SITES = {"size": ("level", "floor", "exponent"), "mix": ("level", "floor", "t")}


def fitted_at_observations(stage, params: dict[str, np.ndarray]) -> np.ndarray:
    """Law mean at the stage's own observations for every draw: (draws, n_obs). Run inside x64."""
    a = stage.data.arrays
    if stage.name == "size":
        c = a["curve"]
        return np.asarray(power_law_mean(a["x_scaled"][None, :], params["level"][:, c], params["floor"][:, c],
                                         params["exponent"][:, c]))
    if stage.name == "mix":
        r = jnp.asarray(a["r_centered"])[a["run"]]
        per_eval = np.asarray(jax.vmap(m4_mean, in_axes=(None, 0, 0, 0))(r, params["level"], params["floor"],
                                                                          params["t"]))
        return per_eval[:, np.arange(r.shape[0]), a["eval"]]
    raise ValueError(f"no lane noise correction for stage {stage.name!r}; expected one of {sorted(MEAN_SITES)}")


def residual_spread(values: np.ndarray, fitted_mean: np.ndarray, obs_eval: np.ndarray, n_evals: int) -> np.ndarray:
    """v_e: mean over eval e's observations of the variance across lanes of
    ``values - fitted_mean`` (both (D, n_obs)); (E,)."""
    if values.shape != fitted_mean.shape or values.shape[0] < 2:
        raise ValueError(f"values and fitted means must both be (D >= 2, n_obs), got {values.shape} and "
                         f"{fitted_mean.shape}")
    spread = np.var(values - fitted_mean, axis=0, ddof=1)
    return np.array([spread[obs_eval == e].mean() if np.any(obs_eval == e) else 0.0 for e in range(n_evals)])


def noise_variance_factor(df: float) -> float:
    """Variance of a unit-scale Student-t with ``df`` degrees of freedom (1 for a Normal, df = inf)."""
    if np.isinf(df):
        return 1.0
    if df <= 2:
        raise ValueError(f"a Student-t with df = {df} has no variance; the lane correction needs df > 2")
    return df / (df - 2.0)


def own_noise_ratio(sigma: np.ndarray, spread: np.ndarray, df: float, k_min: float = K_MIN) -> np.ndarray:
    """k_de = sqrt(max(V_de - 2 v_e, k_min^2 V_de) / V_de) from the lanes' noise draws
    ``sigma`` (D, chains, draws, E) and ``spread`` v (E,); (D, E)."""
    lane_var = np.mean(sigma**2, axis=(1, 2)) * noise_variance_factor(df)
    own = np.maximum(lane_var - 2.0 * spread[None, :], k_min**2 * lane_var)
    return np.sqrt(own / lane_var)


def shrink_towards_lane_mean(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """x' = mean_s x + k (x - mean_s x) per lane: x (D, chains, draws, *event), k (D, *event)
    broadcast over chains and draws."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + k[:, None, None] * (x - mean)


def eval_of_sites(stage) -> dict[str, np.ndarray]:
    """Eval index of every element of the sites in ``MEAN_SITES`` (per curve for the size law,
    per eval for M4's level and floor, rows of M4's t)."""
    if stage.name == "size":
        from bayesmix.stages import curve_eval

        ce = curve_eval(stage.data)
        return {name: ce for name in MEAN_SITES["size"]}
    n = len(stage.data.coords["eval"])
    return {name: np.arange(n) for name in MEAN_SITES["mix"]}


def correct_lanes(stage, lanes: LaneSamples, values: np.ndarray, k_min: float = K_MIN) -> tuple[LaneSamples, dict]:
    """Lanes whose draws are brought to the stage's own noise (module docstring), and a summary
    {"own_noise_ratio": k (D, E) quantiles, "residual_spread": v (E,)}. Run inside x64."""
    s = lanes.samples
    n_lanes = lanes.n_lanes
    draws_per_lane = int(np.prod(s["sigma"].shape[1:3]))
    fitted = fitted_at_observations(stage, lanes.pooled(MEAN_SITES[stage.name]))
    fitted_mean = fitted.reshape(n_lanes, draws_per_lane, -1).mean(axis=1)
    n_evals = s["sigma"].shape[-1]
    v = residual_spread(values, fitted_mean, np.asarray(stage.data.arrays["eval"]), n_evals)
    k = own_noise_ratio(s["sigma"], v, stage.priors["student_df"], k_min)
    samples = dict(s)
    for name, ev in eval_of_sites(stage).items():
        k_site = k[:, ev]
        k_site = k_site.reshape(k_site.shape + (1,) * (s[name].ndim - 3 - k_site.ndim + 1))
        samples[name] = shrink_towards_lane_mean(s[name], k_site)
    samples["sigma"] = s["sigma"] * k[:, None, None, :]
    summary = {"own_noise_ratio": {q: float(np.quantile(k, p)) for q, p in (("min", 0), ("median", 0.5),
                                                                           ("max", 1))},
               "residual_spread": v.tolist()}
    return dataclasses.replace(lanes, samples=samples), summary
