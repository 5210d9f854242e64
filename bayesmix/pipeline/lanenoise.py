"""Draws-mode lanes count the upstream error once: each lane's spread is brought to the stage's own noise.

A draws-mode lane d fits a stage's law to one upstream dataset y_d, a posterior
draw of the upstream predictions (see :mod:`bayesmix.pipeline.nested`). With m_i the
upstream posterior mean of point i and mu_i its true value, the lane's data
scatter about the law by the stage's own noise e_i and by the upstream error
twice: the upstream mean's error m_i - mu_i, and the draw's spread y_di - m_i,
each of variance v_i for a calibrated upstream. A lane that learns its noise
takes both into it (sigma_d^2 ~ sigma_own^2 + 2 v), so its posterior is too wide,
and the spread between lanes carries the upstream error once more: the pooled
intervals over-cover.

For a law whose lane posterior is near Gaussian, the posterior spread about the
lane's mean scales with the noise sd (a Laplace argument: the mode does not
depend on sigma, the curvature goes as 1 / sigma^2). Each lane's predictions
are therefore moved towards the lane's mean prediction by the ratio of the own
noise sd to the lane's noise sd, per eval domain e:

    V_de = mean_s sigma_des^2 * df / (df - 2)             lane noise variance (Student-t df; 1 for a Normal)
    v_e  = mean_(i in e) Var_d(y_di - fhat_di)            upstream spread the lanes' fits do not absorb
    k_de = sqrt(max(V_de - 2 v_e, K_MIN^2 V_de) / V_de)
    L'_des(x) = mean_s L_des(x) + k_de (L_des(x) - mean_s L_des(x)),   sigma'_des = k_de sigma_des

The shrink acts on predictions, not parameters: the laws are nonlinear in their
parameters (the size law's N^-beta far beyond the observed sizes, M4's level and
floor against its interactions), and shrinking parameters changes their
covariances and so moves the mean predictions (by 0.02-0.05 nats in development
runs on simulated campaigns).

fhat_d is lane d's posterior mean at its observations. v_e is measured on the
residuals, not on the raw datasets: an error that every point of a dataset shares
(the size law's exponent moves all mixtures together) moves the lane's fit, not
its residuals, so it stays whole in the spread between lanes.

After the correction the within-lane spread carries the stage's own noise and the
between-lane spread the upstream error, the split the moments fit makes for
independent errors. ``K_MIN`` keeps a lane whose noise is explained entirely by
the upstream spread from collapsing to a point.

Shapes: ``samples[name]`` (D, chains, draws, ...) as in
:class:`bayesmix.inference.lanes.LaneSamples`; ``values`` (D, n_obs) the datasets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesmix.inference.lanes import LaneSamples
from bayesmix.pipeline.stages import Stage, fitted_at_obs, predict_stage

K_MIN = 0.1


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


def segment_sum(values, segment, n_segments: int, xp=jnp):
    """Sums of ``values`` (n, ...) over rows with equal ``segment`` (n,) in 0..n_segments-1:
    (n_segments, ...); ``xp``: ``jax.numpy`` (traceable) or ``numpy``."""
    if xp is jnp:
        return jax.ops.segment_sum(values, jnp.asarray(segment), num_segments=n_segments)
    out = np.zeros((n_segments,) + np.shape(values)[1:], dtype=np.result_type(values, float))
    np.add.at(out, np.asarray(segment), values)
    return out


def shrink_by_lane(values, lane_of_draw, k, n_lanes: int, xp=jnp):
    """Draws brought towards their lane's mean: ``values`` (n, ...) draws of any lanes
    (``lane_of_draw`` (n,) in 0..D-1, any number of draws per lane), ``k`` (D, ...)
    broadcastable against one draw; (n, ...):

        out_i = mean_{lane(i)} + k_{lane(i)} (values_i - mean_{lane(i)})

    Lane means are over the draws present, so a subsample of draws works. ``xp``: ``jax.numpy``
    (usable inside a jitted loss function) or ``numpy`` (no compilation)."""
    lane_of_draw = xp.asarray(lane_of_draw)
    sums = segment_sum(values, lane_of_draw, n_lanes, xp)
    counts = segment_sum(xp.ones(values.shape[0]), lane_of_draw, n_lanes, xp)
    means = (sums / xp.maximum(counts, 1.0).reshape((-1,) + (1,) * (values.ndim - 1)))[lane_of_draw]
    return means + xp.asarray(k)[lane_of_draw] * (values - means)


def shrink_predictions(pred: np.ndarray, k_points: np.ndarray) -> np.ndarray:
    """Predictions brought towards each lane's mean prediction: ``pred`` (D * draws, P)
    lane-major, ``k_points`` (D, P) the ratio of each point's eval domain; (D * draws, P).

    Shrinking the predictions themselves (not the parameters) keeps each lane's mean
    prediction: a law that is convex in its parameters (the size law's N^-beta far
    beyond the observed sizes) would otherwise move its predictions down."""
    n_lanes = k_points.shape[0]
    lane_of_draw = np.repeat(np.arange(n_lanes), pred.shape[0] // n_lanes)
    return shrink_by_lane(np.asarray(pred), lane_of_draw, np.asarray(k_points), n_lanes, np)


def lane_ratios(stage, lanes: LaneSamples, values: np.ndarray, k_min: float = K_MIN) -> tuple[np.ndarray, dict]:
    """k (D, E) of the module docstring for lanes fitted to ``values`` (D, n_obs), and a summary
    {"own_noise_ratio": min / median / max of k, "residual_spread": v (E,)}. Run inside x64."""
    if not stage.law.downstream:  # only laws refitted on upstream draws (lanes) have a lane noise
        raise ValueError(f"no lane noise correction for stage {stage.name!r} (law {stage.law.name!r})")
    s = lanes.samples
    draws_per_lane = int(np.prod(s["sigma"].shape[1:3]))
    fitted = fitted_at_obs(stage, lanes.pooled(stage.law.mean_sites))
    fitted_mean = fitted.reshape(lanes.n_lanes, draws_per_lane, -1).mean(axis=1)
    v = residual_spread(values, fitted_mean, np.asarray(stage.data.arrays["eval"]), s["sigma"].shape[-1])
    k = own_noise_ratio(s["sigma"], v, stage.priors["student_df"], k_min)
    summary = {"own_noise_ratio": {q: float(np.quantile(k, p)) for q, p in (("min", 0), ("median", 0.5),
                                                                           ("max", 1))},
               "residual_spread": v.tolist()}
    return k, summary



def mix_predictions(stage: Stage, params: dict[str, np.ndarray], query, lane_of_draw: np.ndarray | None = None,
                    lane_ratio: np.ndarray | None = None) -> np.ndarray:
    """Mixing-law means at ``query`` for every draw: (draws, points). With ``lane_ratio``
    (D, E), each lane's per-eval predictions are brought towards the lane's mean by
    its ratio before the overall is formed (:func:`bayesmix.pipeline.lanenoise.shrink_by_lane`):
    in prediction space, since a shrink of M4's parameters would move its mean
    predictions. Run inside x64."""
    if lane_ratio is None:
        return predict_stage(stage, params, query)
    per_eval = stage.law.per_eval_draws(params, query)
    per_eval = shrink_by_lane(per_eval, lane_of_draw, np.asarray(lane_ratio)[:, None, :], lane_ratio.shape[0], np)
    return stage.law.mean_from_per_eval(per_eval, query, stage.data.meta)
