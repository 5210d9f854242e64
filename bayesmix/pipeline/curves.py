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

from bayesmix.inference import quadrature as qd
from bayesmix.inference.lanes import LaneSampler, LaneSamples
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.laws import LawData
from bayesmix.laws.base import pad_groups
from bayesmix.laws.annealing import annealed_curves, annealing_mean
from bayesmix.laws.pooled_size import curve_eval
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



# --- the exact grid posterior of the same curves (no Markov chain) -------------------------

SHARE_SD_MIN = {"floor": 0.05, "anneal": 0.05}  # least population sd of floor / y_ref and anneal / y_ref
GRID_DRAWS = 400  # joint draws per curve
PILOT_DRAWS = 256  # draws per curve of the first pass, reweighted to find the population (reweighted_em)


def power_basis(x, alpha):
    """Design X (n, 2) of the power law given the exponent, ``x`` (n,): the mean is X @ (level, floor),

        floor + (level - floor) x^-alpha = level t + floor (1 - t),  t = x^-alpha
    """
    t = jnp.power(x, -alpha)
    return jnp.stack([t, 1.0 - t], axis=1)


def linear_basis(x, alpha):
    """Design X (n, 3) of the step law given the exponent: ``x`` (n, 2) holds x1 and x2 (the
    annealing area; zeros for the power law), and the mean is X @ (level, floor, anneal):
    :func:`power_basis` of x1, then - anneal x2."""
    return jnp.concatenate([power_basis(x[:, 0], alpha), -x[:, 1:2]], axis=1)


def _spread(transform, loc: float, sd: float) -> tuple[float, float]:
    """(transform(loc), half the width of transform(loc +- sd)): a prior on an unbounded scale as a
    Gaussian on the scale the grid law is linear in."""
    return float(transform(loc)), float(transform(loc + sd) - transform(loc - sd)) / 2


def wide_population(priors: dict) -> dict[str, float]:
    """The first pass's population, from the priors alone: share of the floor and of the anneal
    (in units of y_ref) and log exponent."""
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    f_mu, f_sd = _spread(sigmoid, priors["floor_logit_loc"], priors["floor_logit_sd"])
    g_mu, g_sd = _spread(np.exp, priors.get("anneal_log_loc", np.log(0.2)), priors.get("anneal_log_sd", 1.5))
    return {"floor_share_mu": f_mu, "floor_share_sd": f_sd, "anneal_share_mu": g_mu, "anneal_share_sd": g_sd,
            "exponent_log_mu": priors["exponent_log_loc"], "exponent_log_tau": priors["exponent_log_sd"]}


def em_location_scale(draws: np.ndarray, scale_min: float) -> tuple[float, float]:
    """Population (mu, tau) of a per-curve quantity from its posterior draws (draws, C): mu the
    median of the posterior means and tau^2 = (1.4826 MAD of the means)^2 + the median posterior
    variance, at least ``scale_min``. The spread of posterior means alone understates the
    population's, by the shrinkage the first pass's prior applied (the law of total variance;
    one EM step of a Gaussian hierarchy)."""
    mu, spread = robust_location_scale(draws.mean(axis=0), 0.0)
    return mu, max(float(np.sqrt(spread**2 + np.median(draws.var(axis=0)))), scale_min)


EM_TOL = 1e-5  # the population's EM stops when no location or scale moves more than this
EM_ITERATIONS = 1000


def _log_normal(x, mu, sd):
    """log N(x; mu, sd) up to the constant -log sqrt(2 pi)."""
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


def reweighted_em(draws: dict[str, np.ndarray], group: np.ndarray, wide: dict[str, tuple[float, float]],
                  scale_min: dict[str, float]) -> tuple[dict[str, tuple[np.ndarray, float]], float]:
    """Type-II maximum likelihood of a grouped Gaussian population, by EM on a pilot's draws:

        q_c ~ N(mu_q[g_c], tau_q)      for every quantity q (e.g. log exponent, floor / y_ref)

    ``draws[q]`` (draws, C): the pilot's posterior draws under the wide prior ``wide[q]`` = (mu, tau)
    (one location for all curves); ``group`` (C,) the group (eval domain) of each curve. The
    posterior under a population is the pilot's reweighted by w_ci ∝ p_pop(q_ci) / p_wide(q_ci) (the
    likelihood is the same), so each EM step is exact up to Monte Carlo error: E, every curve's
    posterior mean and variance of each q under the current population; M, mu_g = mean over the
    group's curves of the means, tau^2 = mean over all curves of (mean - mu_g)^2 + variance, at
    least ``scale_min[q]``. Unlike one step from the wide prior (whose posteriors lean to the
    shallow, low-floor end of each curve's floor-exponent ridge), the fixed point is the population's
    maximum marginal likelihood. Returns {q: (mu (G,), tau)} and the smallest effective number of
    pilot draws of a curve under the final weights."""
    groups = int(group.max()) + 1
    count = np.bincount(group, minlength=groups)
    if np.any(count == 0):
        raise ValueError("every group of curves needs at least one curve")
    base = sum(_log_normal(draws[q], *wide[q]) for q in draws)
    group_mean = lambda v: np.bincount(group, weights=v, minlength=groups) / count  # noqa: E731
    pop = {q: (np.full(groups, float(wide[q][0])), float(wide[q][1])) for q in draws}
    for _ in range(EM_ITERATIONS):
        log_w = sum(_log_normal(draws[q], mu[group], tau) for q, (mu, tau) in pop.items()) - base
        w = np.exp(log_w - log_w.max(axis=0))
        w /= w.sum(axis=0)
        new, moved = {}, 0.0
        for q, (mu, tau) in pop.items():
            mean = (w * draws[q]).sum(axis=0)
            var = (w * (draws[q] - mean) ** 2).sum(axis=0)
            mu_new = group_mean(mean)
            tau_new = max(float(np.sqrt(np.mean((mean - mu_new[group]) ** 2 + var))), scale_min[q])
            new[q] = (mu_new, tau_new)
            moved = max(moved, float(np.abs(mu_new - mu).max()), abs(tau_new - tau))
        pop = new
        if moved < EM_TOL:
            break
    return pop, float(np.min(1.0 / (w**2).sum(axis=0)))


def grid_population(draws: dict[str, np.ndarray], y_ref: np.ndarray, group: np.ndarray, informative: np.ndarray,
                    wide: dict, groups: list[str]) -> dict:
    """Empirical-Bayes population from the pilot's draws under ``wide``: exponent and floor share per
    group (eval domain) by :func:`reweighted_em`; the anneal from the ``informative`` curves only
    (:func:`em_location_scale`; none: ``wide``'s). JSON-able; ``groups`` names the groups."""
    pop, ess = reweighted_em({"exponent": np.log(draws["exponent"]), "floor": draws["floor"] / y_ref[None, :]}, group,
                             {"exponent": (wide["exponent_log_mu"], wide["exponent_log_tau"]),
                              "floor": (wide["floor_share_mu"], wide["floor_share_sd"])},
                             {"exponent": TAU_MIN["exponent"], "floor": SHARE_SD_MIN["floor"]})
    out = dict(wide, exponent_log_mu=pop["exponent"][0].tolist(), exponent_log_tau=pop["exponent"][1],
               floor_share_mu=pop["floor"][0].tolist(), floor_share_sd=pop["floor"][1], ess_min=ess, groups=list(groups))
    if informative.any() and "anneal" in draws:
        g_mu, g_sd = em_location_scale((draws["anneal"] / draws["level"])[:, informative], SHARE_SD_MIN["anneal"])
        out.update(anneal_share_mu=g_mu, anneal_share_sd=g_sd)
    return out


def per_curve_population(population: dict, group: np.ndarray) -> dict:
    """``population`` with every per-group list expanded to one value per curve (C,) by ``group``."""
    return {k: (np.asarray(v, float)[group] if isinstance(v, list) and k != "groups" else v)
            for k, v in population.items()}


def grid_inputs(batch: dict, priors: dict, population: dict, annealing: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-curve inputs of :mod:`bayesmix.inference.quadrature` (each curve a group of one) and the grid's box (lo, hi) (C, 2):
    log exponent within max(6 tau, 3) of the population's, log sigma from 1e-6 y_ref to 6 times
    the HalfNormal scale (its mass beyond: 2e-9). The power law's anneal coefficient is pinned at 0 (sd 1e-9, x2 = 0)."""
    y_ref = np.asarray(batch["y_ref"], float)
    C = y_ref.size
    per_curve = lambda v: np.broadcast_to(np.asarray(v, float), (C,))  # noqa: E731  a scalar or one value per curve
    x2 = batch["x_anneal"] if annealing else np.zeros_like(batch["x"])
    m = y_ref[:, None] * np.stack([np.ones(C), per_curve(population["floor_share_mu"]),
                                   per_curve(population["anneal_share_mu"]) * annealing], axis=1)
    s = y_ref[:, None] * np.stack([np.full(C, priors["level_sd"]), per_curve(population["floor_share_sd"]),
                                   per_curve(population["anneal_share_sd"]) if annealing else np.full(C, 1e-9)], axis=1)
    sigma_scale = priors["noise_scale"] * y_ref
    alpha_mu, alpha_tau = per_curve(population["exponent_log_mu"]), per_curve(population["exponent_log_tau"])
    curves = {"x": np.stack([batch["x"], x2], axis=-1)[:, None], "y": batch["y"][:, None],
              "mask": batch["mask"][:, None], "m": m[:, None], "s": s[:, None],  # every curve a group of one
              "alpha_mu": alpha_mu, "alpha_tau": alpha_tau, "sigma_scale": sigma_scale}
    half = np.maximum(6 * alpha_tau, 3.0)
    lo = np.stack([alpha_mu - half, np.log(1e-6 * y_ref)], axis=1)
    hi = np.stack([alpha_mu + half, np.log(6 * sigma_scale)], axis=1)
    return curves, lo, hi


def _grid_pass(batch: dict, priors: dict, population: dict, annealing: bool, n_draws: int, seed: int):
    """One grid posterior of every curve: parameter draws (n_draws, C) by name and the checks."""
    curves, lo, hi = grid_inputs(batch, priors, population, annealing)
    coarse, fine = qd.grid_posterior(linear_basis, curves, lo, hi)
    d = qd.draw(linear_basis, curves, fine, n_draws, seed)
    beta = d["beta"][:, :, 0]  # (n_draws, C, p): the one curve of each group
    params = {"level": beta[..., 0], "floor": beta[..., 1], "exponent": d["alpha"], "sigma": d["sigma"]}
    if annealing:
        params["anneal"] = beta[..., 2]
    return params, qd.grid_checks(coarse, fine)


def grid_curves(data: LawData, priors: dict, *, seed: int, n_draws: int = GRID_DRAWS,
                y: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, float], dict]:
    """The step law's curves by exact quadrature over (exponent, noise sd), Normal likelihood and
    Gaussian priors on (level, floor, anneal) given the exponent (:mod:`bayesmix.inference.quadrature`):

        level_c ~ N(y_ref_c, (level_sd y_ref_c)^2)        floor_c ~ N(y_ref_c mu_f, (y_ref_c tau_f)^2)
        anneal_c ~ N(y_ref_c mu_g, (y_ref_c tau_g)^2)     log exponent_c ~ N(mu_a[e_c], tau_a)
        sigma_c ~ HalfNormal(noise_scale y_ref_c)         y_ci ~ N(mean_ci, sigma_c^2)

    (mu_f and mu_a per eval domain e_c.) Two passes: a pilot under the population from the priors
    alone (:func:`wide_population`), whose draws, reweighted, give the population's maximum marginal
    likelihood (:func:`grid_population`, :func:`reweighted_em`: empirical Bayes); then the posterior
    under it. Returns draws (n_draws, C) of ``level``, ``floor``, ``exponent``,
    ``sigma`` (and ``anneal``), the population and the checks per curve (``edge_mass``,
    ``resolution``, ``ok``)."""
    annealing = "x_anneal" in data.arrays
    wide = wide_population(priors)
    batch = curve_batch(data, data.y if y is None else y, {})
    group = curve_eval(data)
    pilot, _ = _grid_pass(batch, priors, wide, annealing, PILOT_DRAWS, seed)
    population = grid_population(pilot, np.asarray(batch["y_ref"], float), group, annealed_curves(data), wide,
                                 list(data.coords["eval"]))
    params, checks = _grid_pass(batch, priors, per_curve_population(population, group), annealing, n_draws, seed + 1)
    return params, population, checks


def grid_summary(checks: dict) -> dict:
    """JSON-able diagnostics of :func:`grid_curves`, in the keys of a lane summary: ``lanes`` the
    curves, ``fail_fraction`` the share failing a grid check, and the worst ``edge_mass`` and
    coarsest ``resolution`` (posterior sd in cells)."""
    return {"lanes": int(checks["ok"].size), "sampler": "grid", "fail_fraction": float(1.0 - checks["ok"].mean()),
            "rhat_pooled": float("nan"), "divergences": 0, "lanes_with_divergences": 0,
            "edge_mass_max": float(np.max(checks["edge_mass"])), "resolution_min": float(np.min(checks["resolution"])),
            "failed_curves": np.flatnonzero(~checks["ok"]).tolist()}
