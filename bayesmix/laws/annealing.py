"""Schedule-aware step law (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"):

    L(s) = E + A * S1(s)^-alpha - C * S2(s)

S1 is the forward area of the run's learning-rate schedule up to step s (the
summed learning rate) and S2 its annealing area (the summed drops of the rate,
accumulated with momentum); both come from the run's schedule spec in units of
steps at the peak rate (:meth:`bayesmix.data.schedule.Schedule.areas`). A power law
in steps cannot see the drop that a decaying learning rate brings late in a
run; this law can, since S2 grows where the rate falls.

For sampling, both areas are scaled by the largest S1 of the table (x1 = S1 /
S1_ref, x2 = S2 / S1_ref) and the law is written like the power law
(:mod:`bayesmix.laws.powerlaw`) with one more term:

    L = floor + (level - floor) x1^-exponent - anneal * x2,    anneal = level * exp(g)

(``level`` is the loss at x1 = 1 before the anneal). Hierarchy over curves c
(one run and eval domain) as the power law's, with the annealing coefficient
partially pooled on the log scale:

    g_c ~ Normal(mu_g, tau_g),  mu_g ~ Normal(anneal_log_loc, anneal_log_sd),  tau_g ~ HalfNormal(anneal_log_tau)

Predictions at a target step use the areas of each run's own schedule (its plan;
the rate stays at its final value beyond the plan), or of one ``schedule`` named
for the target run.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from bayesmix.data.table import RunTableError
from bayesmix.laws.base import LawData, Query, pad_groups
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import curve_sites, likelihood, noise_scale_site, observation_scale
from bayesmix.laws.step import StepLaw
from bayesmix.data.schedule import ANNEAL_MOMENTUM, Schedule, has_schedule, run_schedules

ANNEAL_MIN, ANNEAL_MAX = 1e-4, 5.0  # bounds of the point fit's anneal / level
ANNEALED = 0.5  # a curve "saw an anneal" when its rate fell below this share of the peak


def annealed_curves(data: LawData) -> np.ndarray:
    """Per curve (C,): whether it saw an anneal (its last checkpoint's learning rate below
    ``ANNEALED`` of the peak); from the per-observation flag ``annealed`` of the arrays
    (all False for data without it, such as the power law's)."""
    out = np.zeros(len(data.coords["curve"]), bool)
    if "annealed" in data.arrays:
        np.logical_or.at(out, data.arrays["curve"], np.asarray(data.arrays["annealed"], bool))
    return out


def annealed_at(schedules: list[Schedule], curve: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per observation (n,): whether its curve's last step has a rate below ``ANNEALED`` of the peak."""
    last = np.zeros(len(schedules))
    np.maximum.at(last, curve, steps.astype(float))
    seen = np.array([float(s.rate_share(t)) < ANNEALED for s, t in zip(schedules, last)])
    return seen[curve]


def annealing_mean(x1, x2, level, floor, exponent, anneal):
    """``floor + (level - floor) x1^-exponent - anneal x2``; broadcasts over all arguments."""
    return floor + (level - floor) * jnp.power(x1, -exponent) - anneal * x2


def annealing_model(data: dict, priors: dict, y=None):
    """Hierarchical numpyro model of many schedule-aware curves (module docstring).

    data: the power law's arrays (``x_scaled`` (n,) = x1, ``curve``, ``eval``, ``y_ref``
    (C,), ``n_evals``, ``loss_scale``) plus ``x_anneal`` (n,) = x2.
    """
    level, floor, exponent = curve_sites(data, priors)
    mu_g = numpyro.sample("anneal_log_mu", dist.Normal(priors["anneal_log_loc"], priors["anneal_log_sd"]))
    tau_g = numpyro.sample("anneal_log_tau", dist.HalfNormal(priors["anneal_log_tau"]))
    with numpyro.plate("curve", data["y_ref"].shape[0]):
        w = numpyro.sample("anneal_z", dist.Normal(0.0, 1.0))
        anneal = numpyro.deterministic("anneal", level * jnp.exp(mu_g + tau_g * w))
    sigma = noise_scale_site(data, priors, data["n_evals"])
    c = data["curve"]
    mu = annealing_mean(data["x_scaled"], data["x_anneal"], level[c], floor[c], exponent[c], anneal[c])
    with numpyro.plate("obs_dim", mu.shape[0]):
        numpyro.sample("obs", likelihood(mu, observation_scale(sigma[data["eval"]], data), priors["student_df"], y),
                       obs=y)


def _point_mean(theta, x):
    log_floor, log_reducible, log_exponent, log_anneal = theta
    return (jnp.exp(log_floor) + jnp.exp(log_reducible) * jnp.power(x[..., 0], -jnp.exp(log_exponent))
            - jnp.exp(log_anneal) * x[..., 1])


def _point_init(key, x, y, mask):
    k1, k2, k3 = jax.random.split(key, 3)
    y_last = jnp.min(jnp.where(mask, y, jnp.inf))
    share = jax.random.uniform(k1, minval=0.2, maxval=0.98)
    log_exponent = jax.random.uniform(k2, minval=jnp.log(0.05), maxval=jnp.log(2.0))
    log_anneal = jax.random.uniform(k3, minval=jnp.log(0.01), maxval=jnp.log(1.0)) + jnp.log(y_last)
    return jnp.stack([jnp.log(share * y_last), jnp.log((1 - share) * y_last), log_exponent, log_anneal])


def curve_areas(schedules: list[Schedule], curve: np.ndarray, steps: np.ndarray,
                momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) of each point (n,): curve ``curve[i]``'s schedule at ``steps[i]``."""
    s1, s2 = np.empty(steps.size), np.empty(steps.size)
    for c in np.unique(curve):
        idx = np.flatnonzero(curve == c)
        s1[idx], s2[idx] = schedules[c].areas(steps[idx].astype(int), momentum)
    return s1, s2


class AnnealingStepLaw(StepLaw):
    """The step law of a table that records its runs' schedules (module docstring)."""

    name = "anneal"
    param_dims = {"level": ["curve"], "floor": ["curve"], "exponent": ["curve"], "anneal": ["curve"],
                  "sigma": ["eval"]}

    def prepare(self, runs: pd.DataFrame, *, min_step: int = 1, evals: list[str] | None = None,
                momentum: float = ANNEAL_MOMENTUM) -> LawData:
        """Step-law curves (:meth:`StepLaw.prepare`) with the areas of each run's schedule."""
        if not has_schedule(runs):
            raise RunTableError("law 'anneal' needs every run's learning-rate schedule (columns schedule.shape, "
                                "schedule.peak_lr, schedule.warmup, schedule.final_ratio, schedule.plan_steps); "
                                "without them use law 'step'")
        data = super().prepare(runs, min_step=min_step, evals=evals)
        by_run = run_schedules(runs)
        labels = pd.DataFrame(data.meta["curve_labels"])
        schedules = [by_run[r] for r in labels["run"]]
        steps = data.obs_index["step"].to_numpy()
        s1, s2 = curve_areas(schedules, data.arrays["curve"], steps, momentum)
        s1_ref = float(s1.max())
        arrays = dict(data.arrays, x_scaled=s1 / s1_ref, x_anneal=s2 / s1_ref,
                      annealed=annealed_at(schedules, data.arrays["curve"], steps))
        meta = dict(data.meta, s1_ref=s1_ref, momentum=float(momentum),
                    schedules=[dataclasses.asdict(s) for s in schedules])
        return dataclasses.replace(data, arrays=arrays, meta=meta)

    def model(self, data: dict, priors: dict, y=None):
        annealing_model(data, priors, y)

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16, **fit_options) -> dict[str, np.ndarray]:
        """Huber fit of every curve; natural parameters per curve.

        Curves that saw an anneal (:func:`annealed_curves`) fit all four parameters; the
        others cannot tell the annealing term from the power law, so their ``anneal``
        is fixed at the curve's lowest loss times the median anneal / level of the annealed curves' g = log(anneal / level)
        (``ANNEAL_MIN`` when no curve saw an anneal) and the power law is fitted to
        ``y + anneal * x2``."""
        a = data.arrays
        x = np.stack([a["x_scaled"], a["x_anneal"]], axis=-1)
        x, y, mask = pad_groups(a["curve"], len(data.coords["curve"]), x, data.y)
        theta, _ = multistart_fit(_point_mean, _point_init, jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask),
                                  seed=seed, n_starts=n_starts, **fit_options)
        theta = np.asarray(theta)
        floor = np.exp(theta[:, 0])
        level = floor + np.exp(theta[:, 1])
        anneal = np.clip(np.exp(theta[:, 3]), ANNEAL_MIN * level, ANNEAL_MAX * level)
        out = {"floor": floor, "level": level, "exponent": np.exp(theta[:, 2]), "anneal": anneal}
        seen = annealed_curves(data)
        if seen.all():
            return out
        share = float(np.median(anneal[seen] / level[seen])) if seen.any() else ANNEAL_MIN
        fixed = share * np.min(np.where(mask, y, np.inf), axis=1)  # the curve's lowest loss
        y_free = data.y + fixed[a["curve"]] * a["x_anneal"]
        power = StepLaw.point_fit(self, dataclasses.replace(data, y=y_free), seed=seed, n_starts=n_starts,
                                  **fit_options)
        rest = ~seen
        for k in ("floor", "level", "exponent"):
            out[k] = np.where(rest, power[k], out[k])
        out["anneal"] = np.where(rest, fixed, anneal)
        return out

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """The power law's start values plus the annealing coefficient's."""
        init = super().init_values(data, point, priors)
        g = np.log(point["anneal"] / point["level"])
        sd = max(float(np.std(g)), 0.1)
        return dict(init, anneal_log_mu=np.mean(g), anneal_log_tau=sd, anneal_z=(g - np.mean(g)) / sd)

    def query(self, data: LawData, *, steps, schedule: Schedule | None = None) -> Query:
        """Every curve at ``steps``, with the areas of its run's schedule or of ``schedule``."""
        query = super().query(data, steps=steps)
        n_curves = len(data.meta["curve_labels"]["curve"])
        schedules = ([Schedule(**s) for s in data.meta["schedules"]] if schedule is None
                     else [schedule] * n_curves)
        target = query.labels["step"].to_numpy()
        s1, s2 = curve_areas(schedules, query.arrays["curve"], target, data.meta["momentum"])
        arrays = dict(query.arrays, x_scaled=s1 / data.meta["s1_ref"], x_anneal=s2 / data.meta["s1_ref"])
        return dataclasses.replace(query, arrays=arrays)

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """Law mean at the query points for every draw: (draws, points)."""
        c = query.arrays["curve"]
        return np.asarray(annealing_mean(query.arrays["x_scaled"][None, :], query.arrays["x_anneal"][None, :],
                                         params["level"][:, c], params["floor"][:, c], params["exponent"][:, c],
                                         params["anneal"][:, c]))

    def fitted(self, params: dict[str, np.ndarray], data: LawData) -> np.ndarray:
        """Law mean at the observations for every draw: (draws, n_obs)."""
        a, c = data.arrays, data.arrays["curve"]
        return np.asarray(annealing_mean(a["x_scaled"][None, :], a["x_anneal"][None, :], params["level"][:, c],
                                         params["floor"][:, c], params["exponent"][:, c], params["anneal"][:, c]))
