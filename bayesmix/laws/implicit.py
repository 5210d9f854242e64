"""Mixing law with implicit domain aggregation (Ye et al. 2024, Sec. 3.3).

When only an overall loss is measured and the composition of the validation
set is unknown, the paper assumes K latent eval domains with unknown weights
s (on the simplex), each following M4:

    L(r) = sum_k s_k [c_k + exp(b_k + t_k . r)]                       (K = 30 by default)

a one-hidden-layer network with exp activation. Only C = sum_k s_k c_k and the
products s_k exp(b_k) are identifiable, and since sum_j r_j = 1 a common shift
of t_k is not either. We therefore centre at the mean observed mixture r0:

    L(r) = floor + (level - floor) * sum_k w_k exp(t_k . (r - r0)),   w = softmax(a),  sum_j t_kj = 0

where level = L(r0), floor = C, and w_k is latent domain k's share of the
reducible loss at r0. In the paper's parameters: s_k = w_k, c_k = floor,
b_k = log(level - floor) - t_k . r0 (see :meth:`ImplicitLaw.natural_parameters`).

Priors (``bayesmix.laws.priors``, law ``"implicit"``)::

    level   = y_ref * exp(level_sd * z_level)            floor = level * sigmoid(f),  f ~ N(floor_logit_loc, floor_logit_sd)
    t_kj    = tau * lambda_j * z_kj   (non-centred),     z_kj ~ N(0, 1)
    tau     ~ HalfNormal(interaction_scale)               global size of the interactions
    lambda_j ~ HalfNormal(domain_scale)                   one relevance scale per training domain (ARD)
    a_k ~ N(0, weight_logit_sd)                           exchangeable latent labels, not ordered
    y_i ~ StudentT(student_df, L(r_i), sigma),  sigma ~ HalfNormal(noise_scale * mean loss)

Sampling: what was done about exchangeable latent labels, and what is left
------------------------------------------------------------------------
* The K latent domains are exchangeable: any permutation of (a_k, t_k) gives
  the same law, so the posterior has K! copies of every mode. Every quantity we
  report or gate on (predictions, level, floor, sigma) is the same in all
  copies, so a chain may sit in any copy, or move between them, without harm.
  The weight logits are therefore **not ordered**. Ordering (a_1 < ... < a_K,
  the Stan-manual device for mixtures) identifies the labels only when the
  weights are well separated. Here most of the K weights are small and close, so
  the ordering boundaries a_k = a_(k+1) are always near, and latent domains
  that should trade roles meet a wall instead. On RegMix's Pile-CC (split 0,
  4 chains x 500 draws), dropping the ordering lowered the worst R-hat of the
  predictions from 2.01 to 1.55 at the same cost
  (``benchmarks/bench_laws.py`` documents the full comparison).
* Interactions are **non-centred** (t = tau * lambda * z with z standard normal)
  so NUTS does not meet the funnel between the scale tau and the t_kj; the
  **per-domain scales** lambda_j shrink domains that do not move the loss, which
  is what lets 30 x M interaction terms generalise from a few hundred runs.
* Weights are **logistic-normal** rather than a sparse Dirichlet: a Dirichlet
  with concentration << 1 puts its mass on the simplex's faces, where NUTS
  diverges; a normal prior on the logits with sd 2 still lets a few latent
  domains carry most of the weight.
* Raw t_kj and w_k of different chains need not agree (labels are not
  identified, and several latent domains can trade roles). Convergence is therefore **judged on
  predictions**: the model records ``fitted`` = L(r_i) at every observed mixture
  as a deterministic site, and the fit's diagnostics (R-hat, ESS) are computed on
  ``fitted``, ``level``, ``floor`` and ``sigma`` only, all label-invariant
  (``ImplicitLaw.diagnostic_vars``). Raw ``t`` and ``weight`` are kept in the
  posterior for inspection but are not gated on.
* **Known limit: NUTS mixes slowly on this law.** On RegMix's Pile-CC (614
  training runs, 17 domains) the chains do not mix on the predictions: R-hat
  1.4-1.75 over five splits (4 chains x 500 draws, tree depth 8), and a chain's
  own halves disagree about as much. The predictions stay accurate (MAE 0.027,
  90% coverage 0.88 there), but their intervals miss the spread between chains,
  and the gate reports a failed diagnostic. ``benchmarks/bench_implicit_geometry.py``
  shows where this comes from:

  - It is not the labels, nor a wrong law. The chains also drift on a toy with a
    known 3-latent truth on 3 domains (200 runs), and on a twin of RegMix whose
    losses are drawn from this law itself.
  - In every variant tried, on all three datasets, 98-100% of the NUTS trees
    hit ``max_tree_depth``, so NUTS moved as a random walk. The diagnostics
    report this share (``treedepth_saturation``).
  - The posterior is badly conditioned. Scale the Hessian of the log density by
    one chain's posterior sds (the best diagonal metric). On the toy its largest
    eigenvalue is about 1.4e5, which allows a step of about 0.003. The stiffest
    direction is the product t = tau * lambda_j * z of the latent domains that
    carry weight: the data pin t down, so tau, lambda_j and z can move only
    together, along a curved ridge.
  - Removing the scale hierarchy (t = 5 z), or integrating the scales out (a
    multivariate Student-t on each domain's column of t), removes that ridge but
    not the stiffness. What is left couples a latent domain's interactions with
    the weights and the floor. It is as stiff (largest eigenvalue 3.5e5-5.8e5),
    and it changes by 3-11x along a chain, which no single metric fits. A dense
    metric helps on the toy (R-hat 1.04 against 1.09) but not on RegMix or the
    twin (2.08 and 2.20).
  - On RegMix none of these variants mixes: worst R-hat 1.46-2.08, against 1.39
    for the shipped prior in the same run. On the twin the fixed scale does
    best (1.13, against 1.50), but it is less accurate there (MAE 0.017 against
    0.009) and on RegMix (0.037 against 0.028). The shipped prior is therefore
    kept.
  - What would fix it is a sampler that does not rely on one global metric, or a
    law with fewer, better-identified parameters. For the latter, compare the
    laws by LOO (``bayesmix compare``).
* **Stacking does not rescue it either.** ``fit(..., combine="stacking")``
  (:mod:`bayesmix.inference.stacking`) combines chains that settle in different
  modes, but only chains that mix *within* their mode: each is judged on the split
  R-hat of its halves and its bulk ESS. On this law no chain passes. On RegMix's
  Pile-CC (8 chains x 200 draws after 300 warm-up, depth 8), every chain's own
  halves give split R-hat 1.5-1.9 and bulk ESS 3-5, and the worst variables are
  ``floor``, ``level`` and ``sigma``. On the 3-latent toy (K = 4) it is
  1.3-2.2 and 3-11, even with 1500 warm-up iterations or tree depth 10. So each
  chain drifts along its own ridge; it does not sit in a mode. The stacked fit
  then reports a failure, naming every chain (``benchmarks/bench_stacking.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesmix.laws.base import LawData
from bayesmix.laws.overall import OverallMixtureLaw
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import likelihood

DEFAULT_LATENT = 30  # the paper's K. On RegMix's Pile-CC (split 0, 8 chains), PSIS-LOO elpd is 980 / 1200 / 1251
# for K = 5 / 10 / 30, and held-out MAE is 0.036 / 0.028 / 0.028 (benchmarks/bench_stacking.py --splits 0
# --latent 5,10,30). Those chains do not converge, so the ranking is indicative, not certified.


def implicit_mean(r_centered, level, floor, weight, t):
    """Overall loss (n,) at centred mixtures r_centered (n, M); weight (K,), t (K, M)."""
    return floor + (level - floor) * (jnp.exp(r_centered @ t.T) @ weight)


def ard_interactions(n_latent: int, n_domains: int, priors: dict):
    """The interactions before centring, (K, M): t_kj = tau * lambda_j * z_kj (non-centred ARD prior)."""
    tau = numpyro.sample("interaction_tau", dist.HalfNormal(priors["interaction_scale"]))
    lam = numpyro.sample("domain_scale", dist.HalfNormal(priors["domain_scale"]).expand([n_domains]).to_event(1))
    z = numpyro.sample("interaction_z", dist.Normal(0.0, 1.0).expand([n_latent, n_domains]).to_event(2))
    return tau * lam * z


def implicit_model(data: dict, priors: dict, y=None, interactions=ard_interactions):
    """numpyro model; data: ``r_centered`` (n, M), ``y_ref``, ``loss_scale``, ``n_latent`` (int).

    ``interactions(K, M, priors) -> (K, M)`` samples the uncentred t (the ARD
    prior by default; the geometry benchmark swaps in others).
    """
    x = data["r_centered"]
    n_latent, n_domains = int(data["n_latent"]), x.shape[1]
    level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
    floor_logit = numpyro.sample("floor_logit", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
    level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * level_z))
    floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(floor_logit))
    t_raw = interactions(n_latent, n_domains, priors)
    t = numpyro.deterministic("t", t_raw - jnp.mean(t_raw, axis=1, keepdims=True))
    a = numpyro.sample("weight_logit", dist.Normal(0.0, priors["weight_logit_sd"]).expand([n_latent]).to_event(1))
    weight = numpyro.deterministic("weight", jax.nn.softmax(a))
    sigma = numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * data["loss_scale"]))
    mean = numpyro.deterministic("fitted", implicit_mean(x, level, floor, weight, t))
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, sigma, priors["student_df"], y), obs=y)


@functools.lru_cache(maxsize=8)
def _point_functions(n_latent: int):
    """(mean_fn, init_fn) of the point fit with K latent domains (cached: one compile per K).

    theta = [log floor, log(level - floor), a (K), t (K*M)].
    """

    def mean_fn(theta, x):
        m = x.shape[-1]
        a, t = theta[2:2 + n_latent], theta[2 + n_latent:].reshape(n_latent, m)
        t = t - jnp.mean(t, axis=1, keepdims=True)
        return jnp.exp(theta[0]) + jnp.exp(theta[1]) * (jnp.exp(x @ t.T) @ jax.nn.softmax(a))

    def init_fn(key, x, y, mask):
        k1, k2, k3 = jax.random.split(key, 3)
        y_min = jnp.min(jnp.where(mask, y, jnp.inf))
        y_mean = jnp.sum(jnp.where(mask, y, 0.0)) / jnp.sum(mask)
        floor = jax.random.uniform(k1, minval=0.3, maxval=0.95) * y_min
        a = 0.1 * jax.random.normal(k2, (n_latent,))
        t = jax.random.normal(k3, (n_latent * x.shape[-1],))
        return jnp.concatenate([jnp.stack([jnp.log(floor), jnp.log(y_mean - floor)]), a, t])

    return mean_fn, init_fn


class ImplicitLaw(OverallMixtureLaw):
    """Implicit domain aggregation with K latent eval domains (``latent=``, default 30)."""

    name = "implicit"
    param_dims = {"level": [], "floor": [], "weight": ["latent"], "t": ["latent", "domain"], "sigma": [],
                  "fitted": ["run"]}
    diagnostic_vars = ("fitted", "level", "floor", "sigma")
    mean_params = ("level", "floor", "weight", "t")

    def model(self, data: dict, priors: dict, y=None):
        implicit_model(data, priors, y)

    def prepare(self, runs, *, latent: int = DEFAULT_LATENT, **options) -> LawData:
        """As :meth:`OverallMixtureLaw.prepare`, plus ``latent`` = K, the number of latent eval domains."""
        if int(latent) != latent or latent < 1:
            raise ValueError(f"latent must be a positive integer, got {latent!r}")
        data = super().prepare(runs, **options)
        data.arrays["n_latent"] = int(latent)
        data.coords["latent"] = [f"k{i}" for i in range(int(latent))]
        data.meta["latent"] = int(latent)
        return data

    def mean(self, p, r, meta):
        return implicit_mean(r - jnp.asarray(meta["r0"]), p["level"], p["floor"], p["weight"], p["t"])

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16) -> dict[str, np.ndarray]:
        """Multi-start Huber fit of the K-latent law; natural parameters (level, floor, weight, t)."""
        n_latent = int(data.arrays["n_latent"])
        mean_fn, init_fn = _point_functions(n_latent)
        x = jnp.asarray(data.arrays["r_centered"])[None]
        y = jnp.asarray(data.y)[None]
        theta, _ = multistart_fit(mean_fn, init_fn, x, y, jnp.ones_like(y, dtype=bool), seed=seed,
                                  n_starts=n_starts, max_iter=1000)
        theta = np.asarray(theta)[0]
        m = x.shape[-1]
        t = theta[2 + n_latent:].reshape(n_latent, m)
        a = theta[2:2 + n_latent]
        weight = np.exp(a - a.max())
        floor = float(np.exp(theta[0]))
        return {"level": np.asarray(floor + np.exp(theta[1])), "floor": np.asarray(floor),
                "weight": weight / weight.sum(), "t": t - t.mean(axis=1, keepdims=True)}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """Sample-site values near the point fit: interactions scaled into the non-centred form
        and clipped to +-4 prior sds, weight logits centred."""
        weight = np.clip(point["weight"], 1e-8, None)
        t = np.clip(point["t"], -30.0, 30.0)
        tau = max(float(np.sqrt(np.mean(t**2))), 0.1)
        a = np.log(weight)
        share = float(np.clip(point["floor"] / point["level"], 0.02, 0.98))
        return {
            "level_z": float(np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3)),
            "floor_logit": float(np.log(share / (1 - share))),
            "interaction_tau": tau,
            "domain_scale": np.ones(t.shape[1]),
            "interaction_z": np.clip(t / tau, -4.0, 4.0),
            "weight_logit": a - a.mean(),
        }

    @staticmethod
    def natural_parameters(params: dict[str, np.ndarray], r0) -> dict[str, np.ndarray]:
        """The paper's (s_k, c_k, b_k, t_k) from the centred parameters (c_k = floor for every k)."""
        level, floor = np.asarray(params["level"]), np.asarray(params["floor"])
        t = np.asarray(params["t"])
        b = np.log(level - floor)[..., None] - t @ np.asarray(r0)
        return {"s": np.asarray(params["weight"]), "c": np.broadcast_to(floor[..., None], b.shape), "b": b, "t": t}
