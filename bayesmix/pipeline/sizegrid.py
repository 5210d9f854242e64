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
    floor_c    ~ N(y_ref_c mu_e, (y_ref_c tau)^2)
    log beta_e ~ N(exponent_log_loc, exponent_log_sd)
    sigma_e    ~ HalfNormal(noise_scale loss_scale)

Normal likelihood (the NUTS model's is Student-t). The floor share's population (mu_e per
eval domain, tau shared) is empirical Bayes: a pilot on the datasets' mean under the priors'
wide share, reweighted to the population's maximum marginal likelihood
(:func:`bayesmix.pipeline.curves.reweighted_em`); every dataset then uses it, as NUTS lanes
share the anchor fit's start. Each of the D datasets (lanes) is fitted on its own, and the
draws come back as :class:`bayesmix.inference.lanes.LaneSamples` with one "chain" of exact
draws per lane, so the stage's lane-noise correction and outputs work as for NUTS lanes.

Shapes: values (D, n_obs); a grid per group g = d * E + e (lane-major); K the most curves of
a domain (slots padded by masked curves, which add 0 to the evidence).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bayesmix.inference import quadrature as qd
from bayesmix.inference.lanes import LaneSamples
from bayesmix.laws.base import pad_groups
from bayesmix.pipeline.curves import (PILOT_DRAWS, SHARE_SD_MIN, _spread, power_basis, reweighted_em)
from bayesmix.pipeline.stages import Stage

DRAWS_PER_LANE = 200  # as many as a NUTS lane's 2 chains x 100 draws
EXPONENT_SPAN = 6.0  # the grid spans the log exponent's prior mean +- this many prior sd


def eval_slots(curve_eval: np.ndarray, n_evals: int) -> tuple[np.ndarray, np.ndarray]:
    """The curves of every eval domain in slots: ``slots`` (E, K) curve indices (padding repeats
    the domain's first curve) and ``filled`` (E, K) bool, K the most curves of a domain."""
    slots, filled = pad_groups(np.asarray(curve_eval), n_evals, np.arange(len(curve_eval)))
    return slots, filled


def curve_rows(data) -> tuple[np.ndarray, np.ndarray]:
    """Observation index ``rows`` (C, n) of every curve's points (padding repeats one) and their
    ``mask`` (C, n)."""
    a = data.arrays
    rows, mask = pad_groups(a["curve"], len(data.coords["curve"]), np.arange(data.n_obs))
    return rows, mask


def wide_floor(priors: dict) -> tuple[float, float]:
    """The floor share's (mean, sd) under the priors alone: ``floor_logit_loc`` +- ``floor_logit_sd``
    through the sigmoid."""
    return _spread(lambda v: 1.0 / (1.0 + np.exp(-v)), priors["floor_logit_loc"], priors["floor_logit_sd"])


def grid_inputs(data, values: np.ndarray, priors: dict, share_mu: np.ndarray, share_sd: float
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Quadrature inputs of D datasets ``values`` (D, n_obs): one group per (dataset, eval domain)
    holding the domain's curves in its slots (:func:`eval_slots`); ``share_mu`` (E,) and
    ``share_sd`` the floor share's population. Returns the groups' ``curves`` (G = D E) and their
    boxes ``lo``/``hi`` (G, 2): the log exponent's prior mean +- ``EXPONENT_SPAN`` prior sd, log
    sigma from 1e-6 loss_scale to 6 times the HalfNormal scale."""
    a = data.arrays
    D, E = values.shape[0], int(a["n_evals"])
    ce = np.asarray(a["curve_eval"])
    slots, filled = eval_slots(ce, E)
    rows, mask = curve_rows(data)
    y_ref = np.asarray(a["y_ref"], float)
    m = y_ref[:, None] * np.stack([np.ones_like(y_ref), np.asarray(share_mu, float)[ce]], axis=1)
    s = y_ref[:, None] * np.stack([np.full_like(y_ref, priors["level_sd"]), np.full_like(y_ref, share_sd)], axis=1)

    def per_group(per_curve: np.ndarray) -> np.ndarray:  # (C, ...) -> (G, K, ...), the same in every dataset
        slotted = per_curve[slots]
        return np.broadcast_to(slotted[None], (D,) + slotted.shape).reshape((D * E,) + slotted.shape[1:])

    G = D * E
    sigma_scale = priors["noise_scale"] * float(a["loss_scale"])
    curves = {"x": per_group(np.asarray(a["x_scaled"], float)[rows]),
              "y": np.asarray(values, float)[:, rows][:, slots].reshape((G,) + slots.shape[1:] + rows.shape[1:]),
              "mask": per_group(mask) & np.tile(filled, (D, 1))[:, :, None],
              "m": per_group(m), "s": per_group(s),
              "alpha_mu": np.full(G, priors["exponent_log_loc"]), "alpha_tau": np.full(G, priors["exponent_log_sd"]),
              "sigma_scale": np.full(G, sigma_scale)}
    half = EXPONENT_SPAN * priors["exponent_log_sd"]
    lo = np.tile([priors["exponent_log_loc"] - half, np.log(1e-6 * float(a["loss_scale"]))], (G, 1))
    hi = np.tile([priors["exponent_log_loc"] + half, np.log(6 * sigma_scale)], (G, 1))
    return curves, lo, hi


def grid_pass(data, values: np.ndarray, priors: dict, share_mu: np.ndarray, share_sd: float, n_draws: int,
              seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The exact posterior of every dataset: draws (D, n_draws, ...) of ``level``, ``floor``,
    ``exponent`` (per curve, C) and ``sigma`` (per eval domain, E), and the grid checks (D, E)."""
    a = data.arrays
    D, E, C = values.shape[0], int(a["n_evals"]), len(data.coords["curve"])
    ce = np.asarray(a["curve_eval"])
    slots, filled = eval_slots(ce, E)
    curves, lo, hi = grid_inputs(data, values, priors, share_mu, share_sd)
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


def floor_population(data, values: np.ndarray, priors: dict, *, seed: int) -> dict:
    """Empirical-Bayes floor share per eval domain from a pilot on the mean of ``values`` (D, n_obs)
    under the priors' wide share (:func:`wide_floor`), by :func:`bayesmix.pipeline.curves.reweighted_em`:
    ``floor_share_mu`` (E,) list, ``floor_share_sd``, and the pilot's smallest effective draws ``ess_min``."""
    wide = wide_floor(priors)
    E = int(data.arrays["n_evals"])
    pilot, _ = grid_pass(data, values.mean(axis=0, keepdims=True), priors, np.full(E, wide[0]), wide[1],
                         PILOT_DRAWS, seed)
    share = pilot["floor"][0] / np.asarray(data.arrays["y_ref"], float)[None, :]
    pop, ess = reweighted_em({"floor": share}, np.asarray(data.arrays["curve_eval"]), {"floor": wide},
                             {"floor": SHARE_SD_MIN["floor"]})
    return {"floor_share_mu": pop["floor"][0].tolist(), "floor_share_sd": pop["floor"][1], "ess_min": ess,
            "groups": list(data.coords["eval"])}


def grid_stage(stage: Stage) -> Stage:
    """The stage as the grid fits it: a Normal likelihood (``student_df`` infinite), which the
    lane-noise correction reads (:func:`bayesmix.pipeline.lanenoise.noise_variance_factor`)."""
    return dataclasses.replace(stage, priors={**stage.priors, "student_df": float("inf")})


def fit_size_grid(stage: Stage, values: np.ndarray, *, seed: int, n_draws: int = DRAWS_PER_LANE
                  ) -> tuple[LaneSamples, dict, dict]:
    """The size stage on D datasets ``values`` (D, n_obs) by quadrature (module docstring):
    lanes (D, 1 chain, n_draws), the floor-share population and the checks (D, E) of each grid."""
    values = np.atleast_2d(np.asarray(values, float))
    population = floor_population(stage.data, values, stage.priors, seed=seed)
    params, checks = grid_pass(stage.data, values, stage.priors, np.asarray(population["floor_share_mu"]),
                               population["floor_share_sd"], n_draws, seed + 1)
    D = values.shape[0]
    lanes = LaneSamples(samples={k: v[:, None] for k, v in params.items()},
                        diverging=np.zeros((D, 1, n_draws), bool), num_steps=np.zeros((D, 1, n_draws), int))
    return lanes, population, checks


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


__all__ = ["DRAWS_PER_LANE", "eval_slots", "fit_size_grid", "floor_population", "grid_inputs", "grid_pass",
           "grid_stage", "size_grid_summary", "wide_floor"]
