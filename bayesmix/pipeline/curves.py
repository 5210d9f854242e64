"""Many power-law curves fitted at once: one NUTS lane per curve, pooled through an
empirical-Bayes population prior.

The step stage of the pipeline has one curve per (run, eval domain): hundreds of
curves with a few precise checkpoints each. In one joint hierarchical model
such data put each curve's (floor, exponent) on a narrow ridge and the
non-centred hierarchy in a funnel, so NUTS runs at its maximum tree depth on
every iteration. Here instead each curve c is its own model,

    level_c    = y_ref_c * exp(level_sd * z_c),            z_c ~ Normal(0, 1)
    floor_c    = level_c * sigmoid(f_c),                    f_c ~ Normal(mu_f, tau_f)
    exponent_c = exp(a_c),                                  a_c ~ Normal(mu_a, tau_a)
    sigma_c    ~ HalfNormal(noise_scale * y_ref_c)
    y_ci       ~ StudentT(df, floor_c + (level_c - floor_c) x_ci^-exponent_c, sigma_c)

(x scaled by the largest x of the table), and the population (mu, tau) of the
floor share and the exponent are estimated from the curves' multi-start point
fits (median and 1.4826 MAD, with lower bounds on tau): partial pooling by
empirical Bayes.

With the schedule-aware step law (:mod:`bayesmix.laws.annealing`; the batch
carries the annealing area ``x_anneal``) each curve also has

    anneal_c   = level_c * exp(g_c),                       g_c ~ Normal(mu_g, tau_g)
    mean       = floor_c + (level_c - floor_c) x1^-exponent_c - anneal_c x2

and the population of g is estimated from the point fits of the curves that
saw an anneal (:func:`anneal_population`): a run stopped early in its schedule
barely constrains its own g and borrows it. Curves are then independent given the population, so a joint
posterior draw takes draw i of every curve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesmix.inference.lanes import LaneSampler, LaneSamples
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.laws import LawData
from bayesmix.laws.base import pad_groups
from bayesmix.laws.annealing import annealed_curves, annealing_mean
from bayesmix.laws.powerlaw import likelihood, power_law_mean

TAU_MIN = {"floor": 0.3, "exponent": 0.15, "anneal": 0.3}
PARAMS = ("level", "floor", "exponent", "sigma")


def robust_location_scale(values: np.ndarray, scale_min: float) -> tuple[float, float]:
    """(median, max(1.4826 * MAD, scale_min)) of finite values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite point estimates to build the population prior from")
    mid = float(np.median(values))
    return mid, max(1.4826 * float(np.median(np.abs(values - mid))), scale_min)


def population_prior(point: dict[str, np.ndarray], informative: np.ndarray | None = None) -> dict[str, float]:
    """Empirical-Bayes population of logit(floor / level) and log(exponent) from point fits,
    and of log(anneal / level) when the point fits carry ``anneal``: from the curves
    flagged ``informative`` (C,) bool (those that saw an anneal; all when None)."""
    share = np.clip(point["floor"] / point["level"], 0.01, 0.99)
    mu_f, tau_f = robust_location_scale(np.log(share / (1 - share)), TAU_MIN["floor"])
    mu_a, tau_a = robust_location_scale(np.log(np.clip(point["exponent"], 1e-3, 10.0)), TAU_MIN["exponent"])
    out = {"floor_logit_mu": mu_f, "floor_logit_tau": tau_f, "exponent_log_mu": mu_a, "exponent_log_tau": tau_a}
    if "anneal" in point:
        out.update(anneal_population(point, informative))
    return out


def anneal_population(point: dict[str, np.ndarray], informative: np.ndarray | None) -> dict[str, float]:
    """(mu_g, tau_g) of g = log(anneal / level) from the informative curves' point fits;
    without any, the prior's wide default (mu from the curves, tau 1.5)."""
    g = np.log(np.clip(point["anneal"] / point["level"], 1e-4, 5.0))
    informative = np.ones(g.size, bool) if informative is None else np.asarray(informative, bool)
    if not informative.any():
        return {"anneal_log_mu": float(np.median(g)), "anneal_log_tau": 1.5}
    mu, tau = robust_location_scale(g[informative], TAU_MIN["anneal"])
    return {"anneal_log_mu": mu, "anneal_log_tau": tau}


def curve_model(batch: dict, priors: dict):
    """numpyro model of one curve; batch: ``x`` (n,), ``y`` (n,), ``mask`` (n,), ``y_ref``,
    and the population ``floor_logit_mu``/``_tau``, ``exponent_log_mu``/``_tau`` (scalars);
    with ``x_anneal`` (n,) also ``anneal_log_mu``/``_tau`` (the schedule-aware law)."""
    z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
    f = numpyro.sample("floor_logit", dist.Normal(batch["floor_logit_mu"], batch["floor_logit_tau"]))
    a = numpyro.sample("exponent_log", dist.Normal(batch["exponent_log_mu"], batch["exponent_log_tau"]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * batch["y_ref"]))
    level = numpyro.deterministic("level", batch["y_ref"] * jnp.exp(priors["level_sd"] * z))
    floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(f))
    exponent = numpyro.deterministic("exponent", jnp.exp(a))
    if "x_anneal" in batch:
        g = numpyro.sample("anneal_log", dist.Normal(batch["anneal_log_mu"], batch["anneal_log_tau"]))
        anneal = numpyro.deterministic("anneal", level * jnp.exp(g))
        mean = annealing_mean(batch["x"], batch["x_anneal"], level, floor, exponent, anneal)
    else:
        mean = power_law_mean(batch["x"], level, floor, exponent)
    with numpyro.handlers.mask(mask=batch["mask"]):
        numpyro.sample("obs", likelihood(mean, sigma, priors["student_df"], batch["y"]), obs=batch["y"])


def curve_batch(data: LawData, y: np.ndarray, population: dict[str, float]) -> dict[str, np.ndarray]:
    """One row per curve: padded ``x``, ``y``, ``mask`` (C, n_max), ``y_ref`` and the population (C,)."""
    a = data.arrays
    n_curves = len(data.coords["curve"])
    x, yy, mask = pad_groups(a["curve"], n_curves, a["x_scaled"], np.asarray(y, float))
    batch = {"x": x, "y": yy, "mask": mask, "y_ref": np.asarray(a["y_ref"], float)}
    if "x_anneal" in a:
        batch["x_anneal"] = pad_groups(a["curve"], n_curves, a["x_anneal"])[0]
    batch.update({k: np.full(n_curves, v) for k, v in population.items()})
    return batch


def fit_curves(data: LawData, priors: dict, point: dict[str, np.ndarray], *, config: SamplerConfig,
               seed: int, y: np.ndarray | None = None, progress: bool | None = False
               ) -> tuple[LaneSamples, dict[str, float]]:
    """NUTS on every curve of a power-law ``data`` at once; returns lanes (one per curve)
    and the population prior used (``progress``: a bar of the iterations, ``None``: when
    interactive). Run inside ``jax.enable_x64(True)``."""
    population = population_prior(point, annealed_curves(data))
    batch = curve_batch(data, data.y if y is None else y, population)

    def model(one):
        curve_model(one, priors)

    init = {"level_z": 0.0, "floor_logit": population["floor_logit_mu"],
            "exponent_log": population["exponent_log_mu"],
            "sigma": 0.2 * priors["noise_scale"] * float(np.median(batch["y_ref"]))}
    keep = PARAMS
    if "x_anneal" in batch:
        init["anneal_log"] = population["anneal_log_mu"]
        keep = PARAMS + ("anneal",)
    example = {k: v[0] for k, v in batch.items()}
    key = ("curve", tuple(sorted(priors.items())), "x_anneal" in batch)
    sampler = LaneSampler(model, example, config=config, init_values=init, keep=keep, seed=seed, cache_key=key)
    return sampler(batch, seed=seed + 1, progress=progress, desc="step curves"), population


def curve_draws(lanes: LaneSamples) -> dict[str, np.ndarray]:
    """Per-curve draws as (draws, curves), draw i of every curve forming one joint draw."""
    return {k: v.reshape(v.shape[0], -1).T for k, v in lanes.samples.items()}

