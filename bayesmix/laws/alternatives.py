"""The alternative mixing-law forms the paper compared with M4 (Ye et al. 2024, Table 1).

For one target loss L (one eval domain, or a weighted overall of several) and
mixture r on the simplex:

    M1:  L = c + k sum_j exp(t_j r_j)            (separable, one scale k)
    M2:  L = c + sum_j k_j exp(t_j r_j)          (separable, one scale per domain)
    M3:  L = c + k exp(t prod_j r_j)             (one interaction of all domains)

(M4, ``c + k exp(sum_j t_j r_j)``, is :mod:`bayesmix.laws.mixing`.) As for M4,
each law is written through its value at the mean observed mixture r0,
``level = L(r0)``, and its floor ``c = level * sigmoid(f)``, so the priors are
scale-free:

    M1:  L = c + (level - c) * sum_j exp(t_j r_j) / sum_j exp(t_j r0_j)
    M2:  L = c + (level - c) * sum_j w_j exp(t_j (r_j - r0_j)),   w = softmax(a)
    M3:  L = c + (level - c) * exp(u (p(r) - 1)),                  p(r) = prod_j r_j / r0_j

so that k = (level - c) / sum_j exp(t_j r0_j) (M1), k_j = (level - c) w_j exp(-t_j r0_j)
(M2), and k = (level - c) exp(-u), t = u / prod_j r0_j (M3). In M3 only the product
t prod_j r_j enters, so a single coefficient is identifiable; with many domains
and zero proportions the product is 0 for most mixtures, which is why the paper
found this form poor. Priors (law names ``"m1"``, ``"m2"``, ``"m3"`` in
``bayesmix.laws.priors``): t_j, u ~ N(0, interaction_scale), a_j ~ N(0,
weight_logit_sd), Student-t noise with sigma ~ HalfNormal(noise_scale * mean loss).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesmix.data.table import RunTableError
from bayesmix.laws.base import LawData
from bayesmix.laws.overall import OverallMixtureLaw
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import likelihood


def m1_mean(r, r0, level, floor, t):
    """M1 at mixtures r (n, M): floor + (level - floor) * sum_j e^{t_j r_j} / sum_j e^{t_j r0_j}."""
    return floor + (level - floor) * jnp.sum(jnp.exp(r * t), axis=-1) / jnp.sum(jnp.exp(r0 * t))


def m2_mean(r, r0, level, floor, weight, t):
    """M2 at mixtures r (n, M): floor + (level - floor) * sum_j w_j e^{t_j (r_j - r0_j)}."""
    return floor + (level - floor) * (jnp.exp((r - r0) * t) @ weight)


def product_feature(r, r0):
    """p(r) = prod_j r_j / r0_j for mixtures r (n, M): (n,)."""
    return jnp.exp(jnp.sum(jnp.log(jnp.clip(r, 1e-300, None)) - jnp.log(r0), axis=-1)) * jnp.all(r > 0, axis=-1)


def m3_mean(r, r0, level, floor, t):
    """M3 at mixtures r (n, M): floor + (level - floor) * exp(t (p(r) - 1)), t the scaled coefficient u."""
    return floor + (level - floor) * jnp.exp(t * (product_feature(r, r0) - 1.0))


def _level_floor(data: dict, priors: dict):
    level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
    floor_logit = numpyro.sample("floor_logit", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
    level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * level_z))
    return level, numpyro.deterministic("floor", level * jax.nn.sigmoid(floor_logit))


def _observe(mean, data: dict, priors: dict, y):
    sigma = numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * data["loss_scale"]))
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, sigma, priors["student_df"], y), obs=y)


def m1_model(data: dict, priors: dict, y=None):
    level, floor = _level_floor(data, priors)
    n_domains = data["r"].shape[1]
    t = numpyro.sample("t", dist.Normal(0.0, priors["interaction_scale"]).expand([n_domains]).to_event(1))
    _observe(m1_mean(data["r"], data["r0"], level, floor, t), data, priors, y)


def m2_model(data: dict, priors: dict, y=None):
    level, floor = _level_floor(data, priors)
    n_domains = data["r"].shape[1]
    t = numpyro.sample("t", dist.Normal(0.0, priors["interaction_scale"]).expand([n_domains]).to_event(1))
    a = numpyro.sample("weight_logit", dist.Normal(0.0, priors["weight_logit_sd"]).expand([n_domains]).to_event(1))
    weight = numpyro.deterministic("weight", jax.nn.softmax(a))
    _observe(m2_mean(data["r"], data["r0"], level, floor, weight, t), data, priors, y)


def m3_model(data: dict, priors: dict, y=None):
    level, floor = _level_floor(data, priors)
    t = numpyro.sample("t", dist.Normal(0.0, priors["interaction_scale"]))
    _observe(m3_mean(data["r"], data["r0"], level, floor, t), data, priors, y)


# Point fits: theta = [log floor, log(level - floor), law-specific...]; x = (n, 2, M) holds (r, r0).
def _m1_point_mean(theta, x):
    return m1_mean(x[:, 0], x[0, 1], jnp.exp(theta[0]) + jnp.exp(theta[1]), jnp.exp(theta[0]), theta[2:])


def _m2_point_mean(theta, x):
    m = x.shape[-1]
    return m2_mean(x[:, 0], x[0, 1], jnp.exp(theta[0]) + jnp.exp(theta[1]), jnp.exp(theta[0]),
                   jax.nn.softmax(theta[2:2 + m]), theta[2 + m:])


def _m3_point_mean(theta, x):
    return m3_mean(x[:, 0], x[0, 1], jnp.exp(theta[0]) + jnp.exp(theta[1]), jnp.exp(theta[0]), theta[2])


def _floor_start(key, y, mask):
    y_min = jnp.min(jnp.where(mask, y, jnp.inf))
    y_mean = jnp.sum(jnp.where(mask, y, 0.0)) / jnp.sum(mask)
    floor = jax.random.uniform(key, minval=0.05, maxval=0.95) * y_min
    return jnp.stack([jnp.log(floor), jnp.log(y_mean - floor)])


def _m1_point_init(key, x, y, mask):
    k1, k2 = jax.random.split(key)
    return jnp.concatenate([_floor_start(k1, y, mask), jax.random.normal(k2, (x.shape[-1],))])


def _m2_point_init(key, x, y, mask):
    k1, k2 = jax.random.split(key)
    return jnp.concatenate([_floor_start(k1, y, mask), jnp.zeros(x.shape[-1]),
                            jax.random.normal(k2, (x.shape[-1],))])


def _m3_point_init(key, x, y, mask):
    k1, k2 = jax.random.split(key)
    return jnp.concatenate([_floor_start(k1, y, mask), jax.random.normal(k2, (1,))])


class _AlternativeLaw(OverallMixtureLaw):
    """Shared prepare/point fit of M1-M3 (subclasses name the functions)."""

    point_mean: staticmethod
    point_init: staticmethod

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16) -> dict[str, np.ndarray]:
        """Multi-start Huber fit; returns the natural parameters of the centred form."""
        r = np.asarray(data.arrays["r"])
        x = np.stack([r, np.broadcast_to(data.arrays["r0"], r.shape)], axis=1)[None]
        y = jnp.asarray(data.y)[None]
        theta, _ = multistart_fit(self.point_mean, self.point_init, jnp.asarray(x), y,
                                  jnp.ones_like(y, dtype=bool), seed=seed, n_starts=n_starts)
        theta = np.asarray(theta)[0]
        floor = float(np.exp(theta[0]))
        return {"level": np.asarray(floor + np.exp(theta[1])), "floor": np.asarray(floor),
                **self._law_point(theta[2:], r.shape[1])}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        share = float(np.clip(point["floor"] / point["level"], 0.02, 0.98))
        values = {
            "level_z": float(np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3)),
            "floor_logit": float(np.log(share / (1 - share))),
            "t": np.clip(point["t"], -4 * priors["interaction_scale"], 4 * priors["interaction_scale"]),
        }
        if "weight" in point:
            a = np.log(np.clip(point["weight"], 1e-8, None))
            values["weight_logit"] = np.clip(a - a.mean(), -3 * priors["weight_logit_sd"], 3 * priors["weight_logit_sd"])
        return values


class M1Law(_AlternativeLaw):
    """M1: ``c + k sum_j exp(t_j r_j)``."""

    name = "m1"
    param_dims = {"level": [], "floor": [], "t": ["domain"], "sigma": []}
    mean_params = ("level", "floor", "t")
    point_mean = staticmethod(_m1_point_mean)
    point_init = staticmethod(_m1_point_init)

    def model(self, data: dict, priors: dict, y=None):
        m1_model(data, priors, y)

    def mean(self, p, r, meta):
        return m1_mean(r, jnp.asarray(meta["r0"]), p["level"], p["floor"], p["t"])

    @staticmethod
    def _law_point(rest, m):
        return {"t": rest}

    @staticmethod
    def natural_parameters(params, r0):
        """(c, k, t) of ``c + k sum_j exp(t_j r_j)``."""
        level, floor, t = (np.asarray(params[k]) for k in ("level", "floor", "t"))
        k = (level - floor) / np.sum(np.exp(t * np.asarray(r0)), axis=-1)
        return {"c": floor, "k": k, "t": t}


class M2Law(_AlternativeLaw):
    """M2: ``c + sum_j k_j exp(t_j r_j)``."""

    name = "m2"
    param_dims = {"level": [], "floor": [], "weight": ["domain"], "t": ["domain"], "sigma": []}
    mean_params = ("level", "floor", "weight", "t")
    point_mean = staticmethod(_m2_point_mean)
    point_init = staticmethod(_m2_point_init)

    def model(self, data: dict, priors: dict, y=None):
        m2_model(data, priors, y)

    def mean(self, p, r, meta):
        return m2_mean(r, jnp.asarray(meta["r0"]), p["level"], p["floor"], p["weight"], p["t"])

    @staticmethod
    def _law_point(rest, m):
        a = rest[:m]
        w = np.exp(a - a.max())
        return {"weight": w / w.sum(), "t": rest[m:]}

    @staticmethod
    def natural_parameters(params, r0):
        """(c, k_j, t_j) of ``c + sum_j k_j exp(t_j r_j)``."""
        level, floor, w, t = (np.asarray(params[k]) for k in ("level", "floor", "weight", "t"))
        k = (level - floor)[..., None] * w * np.exp(-t * np.asarray(r0))
        return {"c": floor, "k": k, "t": t}


class M3Law(_AlternativeLaw):
    """M3: ``c + k exp(t prod_j r_j)``."""

    name = "m3"
    param_dims = {"level": [], "floor": [], "t": [], "sigma": []}
    mean_params = ("level", "floor", "t")
    point_mean = staticmethod(_m3_point_mean)
    point_init = staticmethod(_m3_point_init)

    def model(self, data: dict, priors: dict, y=None):
        m3_model(data, priors, y)

    def prepare(self, runs, **options) -> LawData:
        data = super().prepare(runs, **options)
        unused = [d for d, v in zip(data.meta["domains"], data.arrays["r0"]) if v <= 0]
        if unused:
            raise RunTableError(f"law 'm3' multiplies every domain's proportion; domain(s) {unused} are 0 in "
                                "every run: drop their mix.<domain> columns")
        return data

    def mean(self, p, r, meta):
        return m3_mean(r, jnp.asarray(meta["r0"]), p["level"], p["floor"], p["t"])

    @staticmethod
    def _law_point(rest, m):
        return {"t": np.asarray(rest[0])}

    @staticmethod
    def natural_parameters(params, r0):
        """(c, k, t) of ``c + k exp(t prod_j r_j)``."""
        level, floor, u = (np.asarray(params[k]) for k in ("level", "floor", "t"))
        return {"c": floor, "k": (level - floor) * np.exp(-u), "t": u / np.prod(np.asarray(r0))}
