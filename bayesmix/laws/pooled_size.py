"""The pipeline's size law: ``L(N) = E + B N^-beta`` per (mixture, eval) curve, with one
exponent per eval domain (:class:`PooledSizeLaw`, registered as ``size_pooled``).

It shares :class:`bayesmix.laws.size.SizeLaw`'s data, point fit and predictions and differs in
its hierarchy: with three or four model sizes a per-mixture exponent is not identified, so
the exponent is pooled per eval domain (see :func:`pooled_size_model`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from bayesmix.laws.base import LawData
from bayesmix.laws.powerlaw import likelihood, noise_scale_site, observation_scale, power_law_mean
from bayesmix.laws.size import SizeLaw


def pooled_size_model(data: dict, priors: dict, y=None):
    """The pipeline's size law: curves c = (mixture, eval), exponent pooled per eval domain.

        level_c = y_ref_c exp(level_sd z_c),  z_c ~ N(0, 1)
        floor_c = level_c sigmoid(f_c),       f_c ~ N(mu_f, tau_f)     (centred: data inform f_c)
        beta_e  = exp(a_e),                   a_e ~ N(exponent_log_loc, exponent_log_sd)
        y_i ~ StudentT(df, floor_c + (level_c - floor_c) x_i^-beta_e, sigma_e [+ meas_sd_i])

    With three or four model sizes a per-mixture exponent is not identified (its
    posterior is wider than the spread across mixtures) and a hierarchy on it
    puts NUTS in a funnel at the maximum tree depth; one exponent per eval domain
    keeps the geometry simple (dense mass matrix: about 25 leapfrog steps).
    data: the size law's arrays plus ``curve_eval`` (C,).
    """
    n_curves = data["y_ref"].shape[0]
    mu_f = numpyro.sample("floor_logit_mu", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
    tau_f = numpyro.sample("floor_logit_tau", dist.HalfNormal(priors["floor_logit_tau"]))
    with numpyro.plate("eval", data["n_evals"]):
        a = numpyro.sample("exponent_log", dist.Normal(priors["exponent_log_loc"], priors["exponent_log_sd"]))
    sigma = noise_scale_site(data, priors, data["n_evals"])
    with numpyro.plate("curve", n_curves):
        z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
        f = numpyro.sample("floor_logit", dist.Normal(mu_f, tau_f))
        level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * z))
        floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(f))
        exponent = numpyro.deterministic("exponent", jnp.exp(a)[data["curve_eval"]])
    c, e = data["curve"], data["eval"]
    mean = power_law_mean(data["x_scaled"], level[c], floor[c], exponent[c])
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, observation_scale(sigma[e], data), priors["student_df"], y), obs=y)


def curve_eval(data: LawData) -> np.ndarray:
    """Eval index of every curve of a power-law ``data``: (C,)."""
    out = np.zeros(len(data.coords["curve"]), dtype=np.int32)
    out[data.arrays["curve"]] = data.arrays["eval"]
    return out


def pooled_size_init(data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
    """Start values of :func:`pooled_size_model` from a point fit (clipped to sane ranges)."""
    share = np.clip(point["floor"] / point["level"], 0.05, 0.95)
    logit = np.log(share / (1 - share))
    log_exponent = np.log(np.clip(point["exponent"], 0.02, 3.0))
    ce = curve_eval(data)
    return {
        "floor_logit_mu": float(np.median(logit)),
        "floor_logit_tau": max(float(np.std(logit)), 0.1),
        "floor_logit": logit,
        "level_z": np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3),
        "exponent_log": np.array([np.median(log_exponent[ce == e]) for e in range(data.arrays["n_evals"])]),
        "sigma": np.full(data.arrays["n_evals"], 0.005 * data.arrays["loss_scale"]),
    }


class PooledSizeLaw(SizeLaw):
    """The size law the nested pipeline samples: :class:`SizeLaw` with the exponent pooled per
    eval domain; its data carry ``curve_eval`` (C,), the eval index of every curve."""

    name = "size_pooled"
    dense_lanes = True  # the per-eval exponents couple every curve
    downstream = True

    def prepare(self, runs: pd.DataFrame, **options) -> LawData:
        data = super().prepare(runs, **options)
        return dataclasses.replace(data, arrays={**data.arrays, "curve_eval": curve_eval(data)})

    def model(self, data: dict, priors: dict, y=None):
        pooled_size_model(data, priors, y)

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        return pooled_size_init(data, point, priors)


__all__ = ["PooledSizeLaw", "curve_eval", "pooled_size_init", "pooled_size_model"]
