"""Saturating power laws of one input: the step law and the size law.

    L(x) = E + A x^-alpha

For sampling, x is scaled by a reference x_ref (the largest x in the fit) and
the law is written through its value at x_ref, ``level = L(x_ref)``:

    L(x) = floor + (level - floor) * (x / x_ref)^-exponent,
    E = floor,  A = (level - floor) * x_ref^exponent,  alpha = exponent.

Hierarchy over curves c (a curve is one run and eval domain for the step law,
one mixture and eval domain for the size law):

    level_c    = y_ref_c * exp(level_sd * z_c)                   (y_ref_c: loss observed at the curve's last x)
    floor_c    = level_c * sigmoid(mu_f + tau_f * u_c)           (partial pooling of the irreducible share)
    exponent_c = exp(mu_a + tau_a * v_c)                         (partial pooling of the exponent)
    y_i ~ StudentT(df, L_c(x_i), sigma_e)                        (sigma per eval domain)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from bayesmix.laws.base import LawData, Query, category_codes, pad_groups
from bayesmix.laws.pointfit import multistart_fit


def power_law_mean(x_scaled, level, floor, exponent):
    """``floor + (level - floor) * x_scaled^-exponent``; broadcasts over all arguments."""
    return floor + (level - floor) * jnp.power(x_scaled, -exponent)


def likelihood(mu, sigma, df, y):
    """Student-t observation model (Normal when ``df`` is infinite)."""
    if np.isinf(df):
        return dist.Normal(mu, sigma)
    return dist.StudentT(df, mu, sigma)


def observation_scale(sigma, data: dict):
    """Noise sd per observation: ``sigma``, or ``sqrt(sigma^2 + meas_sd^2)`` when ``data``
    carries a known measurement sd ``meas_sd`` (n,) (upstream uncertainty in the
    nested pipeline's ``moments`` mode)."""
    meas = data.get("meas_sd")
    return sigma if meas is None else jnp.sqrt(sigma**2 + meas**2)


def noise_scale_site(data: dict, priors: dict, n_evals: int):
    """Noise sd per eval domain, (E,): ``sigma_e ~ HalfNormal(noise_scale * loss_scale)``."""
    with numpyro.plate("eval", n_evals):
        return numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * data["loss_scale"]))


def curve_sites(data: dict, priors: dict):
    """The curves' hierarchy of the module docstring: (level, floor, exponent), each (C,)."""
    n_curves = data["y_ref"].shape[0]
    mu_f = numpyro.sample("floor_logit_mu", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
    tau_f = numpyro.sample("floor_logit_tau", dist.HalfNormal(priors["floor_logit_tau"]))
    mu_a = numpyro.sample("exponent_log_mu", dist.Normal(priors["exponent_log_loc"], priors["exponent_log_sd"]))
    tau_a = numpyro.sample("exponent_log_tau", dist.HalfNormal(priors["exponent_log_tau"]))
    with numpyro.plate("curve", n_curves):
        z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
        u = numpyro.sample("floor_z", dist.Normal(0.0, 1.0))
        v = numpyro.sample("exponent_z", dist.Normal(0.0, 1.0))
        level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * z))
        floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(mu_f + tau_f * u))
        exponent = numpyro.deterministic("exponent", jnp.exp(mu_a + tau_a * v))
    return level, floor, exponent


def power_law_model(data: dict, priors: dict, y=None):
    """Hierarchical numpyro model of many power-law curves; see module docstring.

    data: ``x_scaled`` (n,), ``curve`` (n,) int, ``eval`` (n,) int,
    ``y_ref`` (C,), ``n_evals`` int, ``loss_scale`` float; optional ``meas_sd`` (n,).
    """
    level, floor, exponent = curve_sites(data, priors)
    sigma = noise_scale_site(data, priors, data["n_evals"])
    c = data["curve"]
    mu = power_law_mean(data["x_scaled"], level[c], floor[c], exponent[c])
    with numpyro.plate("obs_dim", mu.shape[0]):
        numpyro.sample("obs", likelihood(mu, observation_scale(sigma[data["eval"]], data), priors["student_df"], y), obs=y)


def _point_mean(theta, x_scaled):
    log_floor, log_reducible, log_exponent = theta
    return jnp.exp(log_floor) + jnp.exp(log_reducible) * jnp.power(x_scaled, -jnp.exp(log_exponent))


def _point_init(key, x, y, mask):
    k1, k2 = jax.random.split(key)
    y_last = jnp.min(jnp.where(mask, y, jnp.inf))
    share = jax.random.uniform(k1, minval=0.2, maxval=0.98)
    log_exponent = jax.random.uniform(k2, minval=jnp.log(0.05), maxval=jnp.log(2.0))
    return jnp.stack([jnp.log(share * y_last), jnp.log((1 - share) * y_last), log_exponent])


class PowerLaw:
    """Shared machinery of the step and size laws (``x_column`` is ``step`` or ``size``)."""

    name: str
    x_column: str
    curve_keys: tuple[str, ...]
    param_dims = {"level": ["curve"], "floor": ["curve"], "exponent": ["curve"], "sigma": ["eval"]}
    fit_group = "curve"  # the groups a stacked (bootstrap) point fit copies
    mean_sites = ("level", "floor", "exponent")  # the sites the mean at the observations needs
    dense_lanes = False  # whether lanes of this law sample with a dense mass matrix
    downstream = False  # whether the pipeline refits it on upstream draws (one lane per draw)

    def model(self, data: dict, priors: dict, y=None):
        power_law_model(data, priors, y)

    def _curve_frame(self, rows: pd.DataFrame) -> LawData:
        """Build LawData from rows that carry ``curve`` labels and the x column."""
        curve, curves = category_codes(rows["curve"])
        eval_idx, evals = category_codes(rows["eval"])
        x = rows[self.x_column].to_numpy(dtype=float)
        y = rows["loss"].to_numpy(dtype=float)
        x_ref = float(x.max())
        last = rows.loc[rows.groupby("curve", sort=False)[self.x_column].idxmax()]
        y_ref = last.set_index("curve").loc[curves, "loss"].to_numpy(dtype=float)
        curve_table = rows.drop_duplicates("curve").set_index("curve").loc[curves]
        return LawData(
            arrays={
                "x_scaled": x / x_ref,
                "curve": curve,
                "eval": eval_idx,
                "y_ref": y_ref,
                "n_evals": len(evals),
                "loss_scale": float(np.mean(y)),
            },
            y=y,
            coords={"curve": curves, "eval": evals},
            meta={
                "x_ref": x_ref,
                "x_column": self.x_column,
                "curve_labels": curve_table.reset_index()[["curve", *self.curve_keys]]
                .astype({k: str for k in ("curve", "eval")})
                .to_dict(orient="list"),
            },
            obs_index=rows[["curve", *self.curve_keys, self.x_column]].reset_index(drop=True),
        )

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16, **fit_options) -> dict[str, np.ndarray]:
        """Independent Huber fit of every curve; returns natural parameters per curve.

        ``fit_options`` (``max_iter``, ``tol``, ``delta``) go to ``multistart_fit``."""
        a = data.arrays
        x, y, mask = pad_groups(a["curve"], len(data.coords["curve"]), a["x_scaled"], data.y)
        theta, _ = multistart_fit(_point_mean, _point_init, jnp.asarray(x), jnp.asarray(y),
                                  jnp.asarray(mask), seed=seed, n_starts=n_starts, **fit_options)
        theta = np.asarray(theta)
        floor = np.exp(theta[:, 0])
        return {"floor": floor, "level": floor + np.exp(theta[:, 1]), "exponent": np.exp(theta[:, 2])}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """Unconstrained sample-site values that reproduce the point fit (clipped to sane ranges)."""
        share = np.clip(point["floor"] / point["level"], 0.02, 0.98)
        log_exponent = np.log(np.clip(point["exponent"], 1e-3, 5.0))
        level_z = np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"]
        logit = np.log(share / (1 - share))
        return {
            "floor_logit_mu": np.mean(logit),
            "floor_logit_tau": max(float(np.std(logit)), 0.1),
            "floor_z": (logit - np.mean(logit)) / max(float(np.std(logit)), 0.1),
            "exponent_log_mu": np.mean(log_exponent),
            "exponent_log_tau": max(float(np.std(log_exponent)), 0.05),
            "exponent_z": (log_exponent - np.mean(log_exponent)) / max(float(np.std(log_exponent)), 0.05),
            "level_z": np.clip(level_z, -3, 3),
        }

    def query(self, data: LawData, **inputs) -> Query:
        """Predict every fitted curve at the given x values (``steps=`` or ``sizes=``)."""
        key = self.x_column + "s"
        unknown = set(inputs) - {key}
        if unknown or key not in inputs:
            raise ValueError(f"law {self.name!r} predicts at {key}=[...]; got {sorted(inputs) or 'nothing'}")
        xs = np.atleast_1d(np.asarray(inputs[key], dtype=float))
        if np.any(~np.isfinite(xs)) or np.any(xs <= 0):
            raise ValueError(f"{key} must be positive and finite, got {xs.tolist()}")
        labels = pd.DataFrame(data.meta["curve_labels"])
        n_curves = len(labels)
        grid = labels.loc[np.repeat(np.arange(n_curves), xs.size)].reset_index(drop=True)
        grid[self.x_column] = np.tile(xs, n_curves)
        curve_idx = np.repeat(np.arange(n_curves), xs.size)
        eval_lookup = {e: i for i, e in enumerate(data.coords["eval"])}
        return Query(
            arrays={
                "x_scaled": grid[self.x_column].to_numpy(float) / data.meta["x_ref"],
                "curve": curve_idx,
                "eval": grid["eval"].map(eval_lookup).to_numpy(),
            },
            labels=grid,
            evals=data.coords["eval"],
        )

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """Law mean at the query points for every draw: (draws, points)."""
        c = query.arrays["curve"]
        return np.asarray(
            power_law_mean(query.arrays["x_scaled"][None, :], params["level"][:, c],
                           params["floor"][:, c], params["exponent"][:, c])
        )

    def fitted(self, params: dict[str, np.ndarray], data: LawData) -> np.ndarray:
        """Law mean at the observations for every draw: (draws, n_obs)."""
        a, c = data.arrays, data.arrays["curve"]
        return np.asarray(power_law_mean(a["x_scaled"][None, :], params["level"][:, c], params["floor"][:, c],
                                         params["exponent"][:, c]))

    def noise_scale(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """Observation noise sd at the query points: (draws, points)."""
        return params["sigma"][:, query.arrays["eval"]]

    @staticmethod
    def natural_parameters(params: dict[str, np.ndarray], x_ref: float) -> dict[str, np.ndarray]:
        """(E, A, alpha) of ``L = E + A x^-alpha`` from the sampled parameterisation."""
        return {
            "E": params["floor"],
            "A": (params["level"] - params["floor"]) * np.power(x_ref, params["exponent"]),
            "alpha": params["exponent"],
        }
