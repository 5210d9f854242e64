"""The size stage's exact posterior: the pooled size law by quadrature, one grid per (dataset,
eval domain), no Markov chain.

The pipeline's size law (:func:`bayesmix.laws.pooled_size.pooled_size_model`) shares one
exponent beta_e and one noise sd sigma_e per eval domain e. Given them, every curve
c = (mixture, e) is linear in its (level, floor):

    y_ci = level_c t_i + floor_c (1 - t_i) + eps_ci,   t_i = x_i^-beta_e,   eps_ci ~ N(0, sigma_e^2)

(x the size over the table's largest, :func:`bayesmix.pipeline.curves.power_basis`), so with
Gaussian priors on (level, floor) the posterior of (log beta_e, log sigma_e) is known on a
2-D grid whose log evidence is the sum over the domain's curves, and each draw is exact up to
the grid's resolution (:mod:`bayesmix.inference.quadrature`, a group of curves per grid):

    level_c    ~ N(y_ref_c, (level_sd y_ref_c)^2)
    floor_c    ~ N(y_ref_c mu_e, (y_ref_c tau_e)^2)
    log beta_e ~ N(exponent_log_loc, exponent_log_sd)
    sigma_e    ~ HalfNormal(noise_scale loss_scale)

Normal likelihood (the NUTS model's is Student-t). The floor share's population per eval
domain, a mean share mu_e and a logit-scale spread t_e as in the NUTS model (floor share
sigmoid(f_c), f_c ~ N(logit mu_e, t_e)), enters the Gaussian prior to first order: tau_e =
t_e mu_e (1 - mu_e) (:func:`share_sd_of`). Curves that share one share pin each other's floor,
which three or four sizes alone cannot; a population sd bounded away from 0 on the share scale
frees every floor and lets the fit slide along the floor-exponent ridge (measured: a mean share
of 0.53-0.62 where the truth is 0.88-0.91, target misses of -0.06 to -0.14 nats). The population
has a posterior over candidates (mu_e, t_e), from the marginal likelihood of the datasets' mean
(:func:`floor_population`), and each lane draws its own population from it
(:func:`lane_populations`), as each NUTS lane samples its own hyperparameters. Each of the D
datasets (lanes) is fitted on its own, and the draws come back as
:class:`bayesmix.inference.lanes.LaneSamples` with one "chain" of exact draws per lane, so the
stage's lane-noise correction and outputs work as for NUTS lanes.

Shapes: values (D, n_obs); a grid per group g = d * E + e (lane-major); K the most curves of
a domain (slots padded by masked curves, which add 0 to the evidence).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bayesmix.inference import quadrature as qd
from bayesmix.inference.lanes import LaneSamples
from bayesmix.laws.base import pad_groups
from bayesmix.pipeline.curves import power_basis
from bayesmix.pipeline.stages import Stage

DRAWS_PER_LANE = 200  # as many as a NUTS lane's 2 chains x 100 draws
EXPONENT_SPAN = 6.0  # the grid spans the log exponent's prior mean +- this many prior sd


def grid_inputs(data, values: np.ndarray, priors: dict, share_mu, share_sd) -> tuple[dict, np.ndarray, np.ndarray, tuple]:
    """Quadrature inputs of D datasets ``values`` (D, n_obs): one group per (dataset, eval domain)
    holding the domain's curves in its K slots; ``share_mu`` and ``share_sd`` the floor share's
    population, each broadcastable to (D, E). Returns the groups' ``curves`` (G = D E), their
    boxes ``lo``/``hi`` (G, 2) (the log exponent's prior mean +- ``EXPONENT_SPAN`` prior sd, log
    sigma from 1e-6 loss_scale to 6 times the HalfNormal scale) and the ``(slots, filled)`` (E, K)
    of :func:`bayesmix.laws.base.pad_groups`: each domain's curve indices (padding repeats its
    first curve) and which slots hold a curve."""
    a = data.arrays
    D, E = values.shape[0], int(a["n_evals"])
    ce = np.asarray(a["curve_eval"])
    slots, filled = pad_groups(ce, E, np.arange(len(ce)))
    rows, mask = pad_groups(a["curve"], len(data.coords["curve"]), np.arange(data.n_obs))  # (C, n) points per curve
    G, K = D * E, slots.shape[1]
    y_ref = np.broadcast_to(np.asarray(a["y_ref"], float)[slots], (D, E, K))
    mu = np.broadcast_to(np.asarray(share_mu, float), (D, E))[..., None]
    sd = np.broadcast_to(np.asarray(share_sd, float), (D, E))[..., None]
    m = np.stack([y_ref, y_ref * mu], axis=-1).reshape(G, K, 2)
    s = np.stack([y_ref * priors["level_sd"], y_ref * sd], axis=-1).reshape(G, K, 2)

    def per_group(per_curve: np.ndarray) -> np.ndarray:  # (C, ...) -> (G, K, ...), the same in every dataset
        slotted = per_curve[slots]
        return np.broadcast_to(slotted[None], (D,) + slotted.shape).reshape((G,) + slotted.shape[1:])

    sigma_scale = priors["noise_scale"] * float(a["loss_scale"])
    curves = {"x": per_group(np.asarray(a["x_scaled"], float)[rows]),
              "y": np.asarray(values, float)[:, rows][:, slots].reshape((G, K) + rows.shape[1:]),
              "mask": per_group(mask) & np.tile(filled, (D, 1))[:, :, None], "m": m, "s": s,
              "alpha_mu": np.full(G, priors["exponent_log_loc"]), "alpha_tau": np.full(G, priors["exponent_log_sd"]),
              "sigma_scale": np.full(G, sigma_scale)}
    half = EXPONENT_SPAN * priors["exponent_log_sd"]
    lo = np.tile([priors["exponent_log_loc"] - half, np.log(1e-6 * float(a["loss_scale"]))], (G, 1))
    hi = np.tile([priors["exponent_log_loc"] + half, np.log(6 * sigma_scale)], (G, 1))
    return curves, lo, hi, (slots, filled)


def grid_pass(data, values: np.ndarray, priors: dict, share_mu, share_sd, n_draws: int,
              seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The exact posterior of every dataset: draws (D, n_draws, ...) of ``level``, ``floor``,
    ``exponent`` (per curve, C) and ``sigma`` (per eval domain, E), and the grid checks (D, E)."""
    a = data.arrays
    D, E, C = values.shape[0], int(a["n_evals"]), len(data.coords["curve"])
    ce = np.asarray(a["curve_eval"])
    curves, lo, hi, (slots, filled) = grid_inputs(data, values, priors, share_mu, share_sd)
    coarse, fine = qd.grid_posterior(power_basis, curves, lo, hi)
    d = qd.draw(power_basis, curves, fine, n_draws, seed)
    beta = d["beta"].reshape((n_draws, D, E) + slots.shape[1:] + (2,))[:, :, filled]  # (n, D, C in slot order, 2)
    order = slots[filled]  # the curve of each filled slot
    level, floor = np.empty((n_draws, D, C)), np.empty((n_draws, D, C))
    level[:, :, order], floor[:, :, order] = beta[..., 0], beta[..., 1]
    alpha, sigma = d["alpha"].reshape(n_draws, D, E), d["sigma"].reshape(n_draws, D, E)
    lane_major = lambda v: np.moveaxis(v, 0, 1)  # noqa: E731  (n, D, ...) -> (D, n, ...)
    params = {"level": lane_major(level), "floor": lane_major(floor), "exponent": lane_major(alpha[..., ce]),
              "sigma": lane_major(sigma)}
    checks = {k: v.reshape(D, E) for k, v in qd.grid_checks(coarse, fine).items()}
    return params, checks


SHARE_LOGITS = np.linspace(-1.5, 4.5, 25)  # candidate population means of the floor share, on the logit scale
SHARE_LOGIT_TAUS = np.geomspace(0.025, 1.6, 7)  # candidate population sds of the floor share's logit
SHARE_SD_FLOOR = 1e-3  # least population sd of the floor share itself (in units of y_ref)


def share_sd_of(share_mu, logit_tau):
    """The floor share's population sd from its logit's, to first order: tau mu (1 - mu), at least
    ``SHARE_SD_FLOOR``; the grid's Gaussian prior on the floor then has the NUTS model's logit-normal
    spread (:func:`bayesmix.laws.pooled_size.pooled_size_model`)."""
    return np.maximum(np.asarray(logit_tau) * np.asarray(share_mu) * (1.0 - np.asarray(share_mu)), SHARE_SD_FLOOR)


def grid_log_evidence(data, values: np.ndarray, priors: dict, share_mu, share_sd) -> np.ndarray:
    """log p(y_d,e | floor population) (D, E) of every dataset and eval domain: the fine grid's
    integral (:class:`bayesmix.inference.quadrature.Grid`), exponent, noise sd and coefficients
    integrated out; ``share_mu``/``share_sd`` broadcastable to (D, E)."""
    curves, lo, hi, _ = grid_inputs(data, values, priors, share_mu, share_sd)
    _, fine = qd.grid_posterior(power_basis, curves, lo, hi)
    return fine.log_evidence.reshape(values.shape[0], -1)


def floor_population(data, values: np.ndarray, priors: dict) -> dict:
    """The floor share's population per eval domain, integrated over: a posterior over candidate
    (mean, logit sd) pairs (``SHARE_LOGITS`` through the sigmoid x ``SHARE_LOGIT_TAUS``), each
    domain on its own, with the NUTS model's priors (floor_logit_* of the size priors):

        p(mu, t | y_e) ∝ p(y_e | mu, share_sd_of(mu, t)) N(logit mu; floor_logit_loc, floor_logit_sd)
                         HalfNormal(t; floor_logit_tau) t          (t log-spaced: the Jacobian t)

    with p(y_e | mu, tau) (tau the share-scale sd) the marginal likelihood of the mean of ``values`` (D, n_obs)
    (:func:`grid_log_evidence`: exponent, noise sd and coefficients integrated out).

    The marginal likelihood judges a population with every curve of the domain at once; a pilot
    under one wide prior does not: where the floor is weakly identified the wide prior's posterior
    slides to small exponents and low floors (the floor direction escapes its Occam factor there),
    and reweighting its draws cannot move it back. Returns the candidates ``share_mu``,
    ``share_sd`` (N,; on the share scale) and their posterior ``weight`` (N, E), with its mean and sd of the floor
    share's population mean per domain (``floor_share_mu``, ``floor_share_mu_sd``) and its mean
    population sd (``floor_share_sd``), lists of E."""
    logits, taus = (v.ravel() for v in np.meshgrid(SHARE_LOGITS, SHARE_LOGIT_TAUS, indexing="ij"))
    mus = 1.0 / (1.0 + np.exp(-logits))
    sds = share_sd_of(mus, taus)
    mean = np.broadcast_to(values.mean(axis=0), (mus.size, values.shape[1]))
    log_ev = grid_log_evidence(data, mean, priors, mus[:, None], sds[:, None])  # (N, E)
    log_prior = (-0.5 * ((logits - priors["floor_logit_loc"]) / priors["floor_logit_sd"]) ** 2
                 - 0.5 * (taus / priors["floor_logit_tau"]) ** 2 + np.log(taus))  # log-spaced taus: Jacobian tau
    log_post = np.where(np.isfinite(log_ev), log_ev, -np.inf) + log_prior[:, None]
    weight = np.exp(log_post - log_post.max(axis=0))
    weight /= weight.sum(axis=0)
    mu_mean = weight.T @ mus
    return {"share_mu": mus, "share_sd": sds, "weight": weight, "floor_share_mu": mu_mean.tolist(),
            "floor_share_mu_sd": np.sqrt(np.maximum(weight.T @ mus**2 - mu_mean**2, 0.0)).tolist(),
            "floor_share_sd": (weight.T @ sds).tolist(), "groups": list(data.coords["eval"])}


def lane_populations(population: dict, n_lanes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One floor population per lane and eval domain, drawn from :func:`floor_population`'s
    posterior: (share_mu, share_sd) each (D, E). Lanes so carry the population's uncertainty
    between them, as each NUTS lane samples its own hyperparameters."""
    rng = np.random.default_rng(seed)
    weight = population["weight"]
    pick = np.stack([rng.choice(weight.shape[0], size=n_lanes, p=weight[:, e]) for e in range(weight.shape[1])],
                    axis=1)
    return population["share_mu"][pick], population["share_sd"][pick]


def summary_of_population(population: dict) -> dict:
    """The JSON-able part of :func:`floor_population` (no candidate arrays)."""
    return {k: population[k] for k in ("floor_share_mu", "floor_share_mu_sd", "floor_share_sd", "groups")}


def grid_stage(stage: Stage) -> Stage:
    """The stage as the grid fits it: a Normal likelihood (``student_df`` infinite), which the
    lane-noise correction reads (:func:`bayesmix.pipeline.lanenoise.noise_variance_factor`)."""
    return dataclasses.replace(stage, priors={**stage.priors, "student_df": float("inf")})


def fit_size_grid(stage: Stage, values: np.ndarray, *, seed: int, n_draws: int = DRAWS_PER_LANE
                  ) -> tuple[LaneSamples, dict, dict]:
    """The size stage on D datasets ``values`` (D, n_obs) by quadrature (module docstring):
    lanes (D, 1 chain, n_draws), the floor-share population (JSON-able,
    :func:`summary_of_population`) and the checks (D, E) of each grid."""
    values = np.atleast_2d(np.asarray(values, float))
    population = floor_population(stage.data, values, stage.priors)
    share_mu, share_sd = lane_populations(population, values.shape[0], seed)
    params, checks = grid_pass(stage.data, values, stage.priors, share_mu, share_sd, n_draws, seed + 1)
    D = values.shape[0]
    lanes = LaneSamples(samples={k: v[:, None] for k, v in params.items()},
                        diverging=np.zeros((D, 1, n_draws), bool), num_steps=np.zeros((D, 1, n_draws), int))
    return lanes, summary_of_population(population), checks


def size_grid_summary(checks: dict, evals: list[str]) -> dict:
    """JSON-able diagnostics of :func:`fit_size_grid` in the keys of a lane summary: ``lanes`` the
    datasets, ``grids`` one per (dataset, eval domain), ``fail_fraction`` the share of grids failing
    a check, the worst ``edge_mass`` and coarsest ``resolution``, and the ``failed`` grids named
    ``dataset d / eval``."""
    ok = checks["ok"]
    failed = [f"dataset {d} / {evals[e]}" for d, e in zip(*np.nonzero(~ok))]
    return {"lanes": int(ok.shape[0]), "grids": int(ok.size), "grid_unit": "dataset and eval domain",
            "sampler": "grid", "fail_fraction": float(1.0 - ok.mean()), "rhat_pooled": float("nan"), "divergences": 0,
            "lanes_with_divergences": 0, "edge_mass_max": float(np.max(checks["edge_mass"])),
            "resolution_min": float(np.min(checks["resolution"])), "failed": failed}


__all__ = ["DRAWS_PER_LANE", "fit_size_grid", "floor_population", "grid_inputs", "grid_log_evidence",
           "grid_pass", "grid_stage", "lane_populations", "share_sd_of", "size_grid_summary", "summary_of_population"]
