"""BiMix: a bivariate law in an eval domain's own training proportion and the step.

Ge et al. (2024, "BiMix: A Bivariate Data Mixing Law for Language Model
Pretraining", arXiv 2405.14908) model the validation loss of domain e through
its own share r_e of the training mixture and the training step S:

    L_e(r_e, S) = A_e r_e^-alpha_e (B_e S^-beta_e + C_e)

Only A_e B_e and A_e C_e are identifiable, so we fix the normalisation
B_e S_ref^-beta_e + C_e = 1 and write the law through its value at a reference
point (r_ref_e = geometric mean of the observed r_e, S_ref = the last step):

    L_e = level_e (r_e / r_ref_e)^-alpha_e (share_e + (1 - share_e) (S / S_ref)^-beta_e)
    A_e = level_e r_ref_e^alpha_e,   B_e = (1 - share_e) S_ref^beta_e,   C_e = share_e

Every checkpoint of every run is an observation (fitted jointly over proportions
and steps). With fewer than ``MIN_STEPS`` distinct checkpoints the step factor
is not identifiable and is dropped (share_e = 1): the law is then
``level_e (r_e / r_ref_e)^-alpha_e`` at the one step observed, and predicting
another step is an error.

The law needs r_e > 0: a run that did not train on e at all has an infinite
predicted loss. Rows with r_e = 0 are refused unless ``epsilon=`` is given, in
which case proportions below epsilon are raised to epsilon (for tables whose
proportions are rounded, epsilon = the rounding step is natural).

Hierarchy (law ``"bimix"`` in ``bayesmix.laws.priors``), with E > 1 eval domains:
log alpha_e, log beta_e and logit share_e are partially pooled across eval domains
(centred, population mean and HalfNormal spread: every eval domain has many
observations, so the centred form samples better than the non-centred one); level_e = y_ref_e exp(level_sd z_e);
Student-t noise with a scale per eval domain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from bayesmix.data.table import RunTableError, select_evals
from bayesmix.laws.base import LawData, Query, category_codes, pad_groups
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns
from bayesmix.laws.overall import OVERALL, one_size, target_weights, weighted_overall
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import likelihood

MIN_STEPS = 3
MIN_PROPORTIONS = 3


def bimix_mean(r_scaled, s_scaled, level, alpha, share, beta):
    """``level r^-alpha (share + (1 - share) s^-beta)``; broadcasts over all arguments."""
    return level * jnp.power(r_scaled, -alpha) * (share + (1.0 - share) * jnp.power(s_scaled, -beta))


def _pooled(name: str, loc: float, sd: float, tau_scale: float, n: int, link):
    """Per-eval parameter link(mu + tau z_e) pooled across evals; a single prior draw when n == 1."""
    if n == 1:
        return numpyro.deterministic(name, link(numpyro.sample(f"{name}_raw", dist.Normal(loc, sd)))[None])
    mu = numpyro.sample(f"{name}_mu", dist.Normal(loc, sd))
    tau = numpyro.sample(f"{name}_tau", dist.HalfNormal(tau_scale))
    with numpyro.plate("eval", n):
        raw = numpyro.sample(f"{name}_e", dist.Normal(mu, tau))
    return numpyro.deterministic(name, link(raw))


def bimix_model(data: dict, priors: dict, y=None):
    """numpyro model; data: ``r_scaled`` (n,), ``s_scaled`` (n,), ``eval`` (n,), ``y_ref`` (E,),
    ``loss_scale``, ``fit_steps`` (bool)."""
    n_evals = data["y_ref"].shape[0]
    with numpyro.plate("eval", n_evals):
        level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
        level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * level_z))
        sigma = numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * data["loss_scale"]))
    alpha = _pooled("alpha", priors["proportion_exponent_log_loc"], priors["proportion_exponent_log_sd"],
                    priors["proportion_exponent_log_tau"], n_evals, jnp.exp)
    if data["fit_steps"]:
        beta = _pooled("beta", priors["step_exponent_log_loc"], priors["step_exponent_log_sd"],
                       priors["step_exponent_log_tau"], n_evals, jnp.exp)
        share = _pooled("share", priors["floor_logit_loc"], priors["floor_logit_sd"], priors["floor_logit_tau"],
                        n_evals, jax.nn.sigmoid)
    else:
        beta = numpyro.deterministic("beta", jnp.zeros(n_evals))
        share = numpyro.deterministic("share", jnp.ones(n_evals))
    e = data["eval"]
    mean = bimix_mean(data["r_scaled"], data["s_scaled"], level[e], alpha[e], share[e], beta[e])
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, sigma[e], priors["student_df"], y), obs=y)


def _point_mean(theta, x):
    log_level, log_alpha, share_logit, log_beta = theta
    return bimix_mean(x[:, 0], x[:, 1], jnp.exp(log_level), jnp.exp(log_alpha), jax.nn.sigmoid(share_logit),
                      jnp.exp(log_beta))


def _point_init(key, x, y, mask):
    k1, k2, k3 = jax.random.split(key, 3)
    y_mean = jnp.sum(jnp.where(mask, y, 0.0)) / jnp.sum(mask)
    return jnp.stack([jnp.log(y_mean), jax.random.uniform(k1, minval=jnp.log(0.005), maxval=jnp.log(0.5)),
                      jax.random.uniform(k2, minval=-1.0, maxval=3.0),
                      jax.random.uniform(k3, minval=jnp.log(0.05), maxval=jnp.log(1.5))])


def own_domains(evals: list[str], domains: list[str], mapping: dict[str, str] | None) -> list[str]:
    """The training domain of each eval domain: ``mapping[e]``, else the domain named like e."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(evals))
    if unknown:
        raise ValueError(f"domains= names eval domain(s) {unknown} not fitted; evals are {evals}")
    own = [mapping.get(e, e) for e in evals]
    missing = [(e, d) for e, d in zip(evals, own) if d not in domains]
    if missing:
        raise RunTableError(
            "law 'bimix' relates each eval domain to its own training domain; "
            + ", ".join(f"eval {e!r} -> {d!r}" for e, d in missing)
            + f" matches no mix.<domain> column (domains: {domains}); pass domains={{eval: domain}}"
        )
    return own


def floor_proportions(r: np.ndarray, epsilon: float | None, where: str) -> np.ndarray:
    """Own proportions, raised to ``epsilon`` when given; zeros without it are an error."""
    if epsilon is None:
        if np.any(r <= 0):
            raise RunTableError(f"law 'bimix' needs every eval domain's own training proportion r_e > 0 "
                                f"(L ~ r_e^-alpha is infinite at 0); {where}. Pass epsilon= (e.g. 1e-3) to "
                                "raise proportions below it to epsilon, or leave those runs out")
        return r
    return np.maximum(r, epsilon)


class BiMixLaw:
    """BiMix own-proportion x step law; see the module docstring."""

    name = "bimix"
    param_dims = {"level": ["eval"], "alpha": ["eval"], "beta": ["eval"], "share": ["eval"], "sigma": ["eval"]}

    def model(self, data: dict, priors: dict, y=None):
        bimix_model(data, priors, y)

    def prepare(self, runs: pd.DataFrame, *, size: int | None = None, step: int | None = None,
                min_step: int = 1, evals: list[str] | None = None, weights: dict[str, float] | None = None,
                domains: dict[str, str] | None = None, epsilon: float | None = None) -> LawData:
        """Every checkpoint (``step >= min_step``, or only ``step``) of one model size."""
        if epsilon is not None and not 0 < float(epsilon) < 1:
            raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
        rows = one_size(runs, size, self.name)
        rows = rows[rows["step"] >= min_step] if step is None else rows[rows["step"] == step]
        rows = select_evals(rows, evals, law=self.name)
        if rows.empty:
            raise RunTableError(f"law 'bimix': no rows left (step={step}, min_step={min_step}, evals={evals})")
        rows = rows.assign(eval=rows["eval"].astype(str)).reset_index(drop=True)
        cols = mix_columns(rows)
        all_domains = [c[len(MIX_PREFIX):] for c in cols]
        eval_idx, evals_seen = category_codes(rows["eval"])
        run_idx, runs_seen = category_codes(rows["run"])
        own = own_domains(evals_seen, all_domains, domains)
        r_own = rows[[MIX_PREFIX + d for d in own]].to_numpy(float)[np.arange(len(rows)), eval_idx]
        zero = rows.loc[r_own <= 0, ["run", "eval"]].drop_duplicates()
        where = (f"run(s) {zero['run'].astype(str).unique()[:10].tolist()} have a zero share of their eval "
                 f"domain(s) {sorted(zero['eval'].unique())}")
        r_own = floor_proportions(r_own, epsilon, where)
        log_r = pd.Series(np.log(r_own)).groupby(eval_idx).mean()
        r_ref = np.exp(log_r.loc[range(len(evals_seen))].to_numpy())
        few = [e for i, e in enumerate(evals_seen) if np.unique(r_own[eval_idx == i].round(9)).size < MIN_PROPORTIONS]
        if few:
            raise RunTableError(f"law 'bimix' needs at least {MIN_PROPORTIONS} distinct own proportions per eval "
                                f"domain; eval(s) {few} have fewer")
        steps = rows["step"].to_numpy(float)
        s_ref = float(steps.max())
        fit_steps = rows["step"].nunique() >= MIN_STEPS
        y = rows["loss"].to_numpy(float)
        at_ref = rows["step"] == rows["step"].max()
        y_ref = rows[at_ref].groupby("eval", sort=False)["loss"].mean().reindex(evals_seen)
        y_ref = y_ref.fillna(rows.groupby("eval", sort=False)["loss"].mean()).to_numpy(float)
        obs_index = rows[["run", "eval", "size", "step", *cols]]
        return LawData(
            arrays={"r_scaled": r_own / r_ref[eval_idx], "s_scaled": steps / s_ref, "eval": eval_idx,
                    "run": run_idx, "y_ref": y_ref, "loss_scale": float(y.mean()), "fit_steps": bool(fit_steps)},
            y=y,
            coords={"eval": evals_seen, "run": runs_seen},
            meta={"r_ref": r_ref.tolist(), "s_ref": s_ref, "own_domains": own, "domains": all_domains,
                  "epsilon": None if epsilon is None else float(epsilon), "fit_steps": bool(fit_steps),
                  "weights": target_weights(weights, evals_seen).tolist(), "size": int(rows["size"].iloc[0])},
            obs_index=obs_index,
        )

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16) -> dict[str, np.ndarray]:
        """Independent Huber fit per eval domain: level, alpha, share, beta."""
        a = data.arrays
        x = np.stack([a["r_scaled"], a["s_scaled"]], axis=1)
        x, y, mask = pad_groups(a["eval"], len(data.coords["eval"]), x, data.y)
        theta, _ = multistart_fit(_point_mean, _point_init, jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask),
                                  seed=seed, n_starts=n_starts)
        theta = np.asarray(theta)
        if not data.meta["fit_steps"]:
            return {"level": np.exp(theta[:, 0]), "alpha": np.exp(theta[:, 1]), "share": np.ones(len(theta)),
                    "beta": np.zeros(len(theta))}
        return {"level": np.exp(theta[:, 0]), "alpha": np.exp(theta[:, 1]),
                "share": 1 / (1 + np.exp(-theta[:, 2])), "beta": np.exp(theta[:, 3])}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """Sample-site values reproducing the point fit (clipped)."""
        values = {"level_z": np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3)}
        pooled = [("alpha", np.log(np.clip(point["alpha"], 1e-4, 5.0)))]
        if data.meta["fit_steps"]:
            share = np.clip(point["share"], 0.02, 0.98)
            pooled += [("beta", np.log(np.clip(point["beta"], 1e-3, 5.0))), ("share", np.log(share / (1 - share)))]
        for name, raw in pooled:
            if raw.size == 1:
                values[f"{name}_raw"] = float(raw[0])
            else:
                values.update({f"{name}_mu": float(raw.mean()), f"{name}_tau": max(float(np.std(raw)), 0.05),
                               f"{name}_e": raw})
        return values

    def query(self, data: LawData, **inputs) -> Query:
        """Predict each eval domain (and the weighted overall) at ``mixtures=`` and ``steps=``
        (default: the last fitted step)."""
        unknown = sorted(set(inputs) - {"mixtures", "steps"})
        if unknown or "mixtures" not in inputs:
            raise ValueError(f"law 'bimix' predicts at mixtures=... (and optionally steps=...); "
                             f"got {sorted(inputs) or 'nothing'}")
        meta = data.meta
        r, frame = as_mixture_matrix(inputs["mixtures"], meta["domains"])
        steps = inputs.get("steps")
        steps = np.atleast_1d(np.asarray(meta["s_ref"] if steps is None else steps, dtype=float))
        if np.any(~np.isfinite(steps)) or np.any(steps <= 0):
            raise ValueError(f"steps must be positive and finite, got {steps.tolist()}")
        if not meta["fit_steps"] and np.any(steps != meta["s_ref"]):
            raise ValueError(f"this bimix fit saw one checkpoint (step {meta['s_ref']:g}): it cannot predict "
                             f"other steps; fit on at least {MIN_STEPS} checkpoints per run for that")
        evals = list(data.coords["eval"])
        own = np.array([meta["domains"].index(d) for d in meta["own_domains"]])
        r_own = floor_proportions(r[:, own], meta["epsilon"],
                                  f"mixture(s) {frame['mixture'][np.any(r[:, own] <= 0, axis=1)].tolist()[:10]} "
                                  "have a zero share of an eval domain (this fit has no epsilon)")
        labels_evals = evals + ([OVERALL] if len(evals) > 1 else [])
        n_mix, n_steps, n_ev = len(frame), steps.size, len(labels_evals)
        labels = frame.loc[np.repeat(np.arange(n_mix), n_steps * n_ev)].reset_index(drop=True)
        labels.insert(1, "step", np.tile(np.repeat(steps, n_ev), n_mix))
        labels.insert(2, "eval", labels_evals * (n_mix * n_steps))
        return Query(arrays={"r_scaled": r_own / np.asarray(meta["r_ref"]), "s_scaled": steps / meta["s_ref"]},
                     labels=labels, evals=labels_evals)

    def test_inputs(self, obs_index: pd.DataFrame) -> dict:
        """Query inputs that predict every observation of ``obs_index`` (mixture labels = run)."""
        frame = obs_index.drop_duplicates("run")
        mixtures = frame[mix_columns(frame)].assign(mixture=frame["run"].astype(str).to_numpy())
        return {"mixtures": mixtures, "steps": sorted(obs_index["step"].unique().tolist())}

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): per-eval means at (mixture, step), plus the weighted overall."""
        r = query.arrays["r_scaled"][None, :, None, :]  # (1, mixtures, 1, E)
        s = query.arrays["s_scaled"][None, None, :, None]  # (1, 1, steps, 1)
        p = {k: np.asarray(params[k])[:, None, None, :] for k in ("level", "alpha", "share", "beta")}
        per_eval = np.asarray(bimix_mean(r, s, p["level"], p["alpha"], p["share"], p["beta"]))
        return self._with_overall(per_eval, query, meta, weighted_overall)

    def noise_scale(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): sigma_e, and sqrt(sum w_e^2 sigma_e^2) for the overall."""
        n_mix, n_steps = query.arrays["r_scaled"].shape[0], query.arrays["s_scaled"].shape[0]
        sigma = np.asarray(params["sigma"])[:, None, None, :]
        sigma = np.broadcast_to(sigma, (sigma.shape[0], n_mix, n_steps, sigma.shape[-1]))
        return self._with_overall(sigma, query, meta, lambda x, w: np.sqrt((x**2) @ (w**2)))

    @staticmethod
    def _with_overall(per_eval: np.ndarray, query: Query, meta: dict, combine) -> np.ndarray:
        if OVERALL in query.evals:
            w = np.asarray(meta["weights"])
            per_eval = np.concatenate([per_eval, combine(per_eval, w)[..., None]], axis=-1)
        return per_eval.reshape(per_eval.shape[0], -1)

    @staticmethod
    def natural_parameters(params: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
        """(A, alpha, B, beta, C) of ``A r^-alpha (B S^-beta + C)`` with B S_ref^-beta + C = 1."""
        level, alpha, share, beta = (np.asarray(params[k]) for k in ("level", "alpha", "share", "beta"))
        return {"A": level * np.power(np.asarray(meta["r_ref"]), alpha), "alpha": alpha,
                "B": (1 - share) * np.power(meta["s_ref"], beta), "beta": beta, "C": share}
