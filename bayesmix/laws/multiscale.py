"""M4 fitted at several scales at once, interaction terms pooled across scales.

A *group* g is one (model size, step). Within each group and eval domain e the
mixing law is M4 (see :mod:`bayesmix.laws.mixing`), centred at the mean
observed mixture r0 of all runs:

    L_ge(r) = floor_ge + (level_ge - floor_ge) * exp(t_ge . (r - r0)),   sum_j t_gej = 0

Hierarchy: the interaction terms of a group are partially pooled towards an
eval-domain mean shared by all groups, which in turn is pooled across eval
domains (as in M4):

    mu        ~ ZeroSumNormal(interaction_scale)                       (M,)
    m_e       = mu + tau_e z_e,   z_e ~ ZeroSumNormal(1), tau_e ~ HalfNormal(interaction_tau)   (E > 1)
    t_ge      = m_e + tau_g u_ge, u_ge ~ ZeroSumNormal(1), tau_g ~ HalfNormal(group_tau)
    level_ge  = y_ref_ge exp(level_sd w_ge),  floor_ge = level_ge sigmoid(f_ge)
    y ~ StudentT(student_df, L_ge(r), sigma_ge)

so a group with few runs (an expensive scale) borrows the shape of its
interactions from the cheap scales while keeping its own level and floor; the
posterior of tau_g says how much the interactions really change with scale.
Priors: law ``"multiscale"`` in ``bayesmix.laws.priors``.
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
from bayesmix.laws.mixing import _point_init, _point_mean
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns
from bayesmix.laws.overall import OVERALL, target_weights, weighted_overall
from bayesmix.laws.pointfit import multistart_fit
from bayesmix.laws.powerlaw import likelihood

MIN_GROUP_MIXTURES = 3


def multiscale_model(data: dict, priors: dict, y=None):
    """numpyro model; data: ``r_centered`` (R, M), ``run``, ``group``, ``eval`` (n,), ``y_ref`` (G, E),
    ``loss_scale``."""
    n_groups, n_evals = data["y_ref"].shape
    n_domains = data["r_centered"].shape[1]
    mu = numpyro.sample("interaction_mu", dist.ZeroSumNormal(priors["interaction_scale"], event_shape=(n_domains,)))
    if n_evals > 1:
        with numpyro.plate("eval_e", n_evals):
            tau_e = numpyro.sample("interaction_tau", dist.HalfNormal(priors["interaction_tau"]))
            z = numpyro.sample("interaction_z", dist.ZeroSumNormal(1.0, event_shape=(n_domains,)))
        shared = numpyro.deterministic("t_shared", mu + tau_e[:, None] * z)
    else:
        shared = numpyro.deterministic("t_shared", mu[None, :])
    tau_g = numpyro.sample("group_tau", dist.HalfNormal(priors["group_tau"]))
    with numpyro.plate("group", n_groups, dim=-2), numpyro.plate("eval", n_evals, dim=-1):
        u = numpyro.sample("group_z", dist.ZeroSumNormal(1.0, event_shape=(n_domains,)))
        level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
        floor_logit = numpyro.sample("floor_logit", dist.Normal(priors["floor_logit_loc"], priors["floor_logit_sd"]))
        sigma = numpyro.sample("sigma", dist.HalfNormal(priors["noise_scale"] * data["loss_scale"]))
    t = numpyro.deterministic("t", shared[None] + tau_g * u)
    level = numpyro.deterministic("level", data["y_ref"] * jnp.exp(priors["level_sd"] * level_z))
    floor = numpyro.deterministic("floor", level * jax.nn.sigmoid(floor_logit))
    g, e = data["group"], data["eval"]
    x = data["r_centered"][data["run"]]
    mean = floor[g, e] + (level[g, e] - floor[g, e]) * jnp.exp(jnp.sum(x * t[g, e], axis=-1))
    with numpyro.plate("obs_dim", mean.shape[0]):
        numpyro.sample("obs", likelihood(mean, sigma[g, e], priors["student_df"], y), obs=y)


def last_checkpoints(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's last checkpoint (runs of different sizes may end at different steps)."""
    return runs[runs["step"] == runs.groupby("run")["step"].transform("max")]


def group_label(size, step) -> str:
    return f"size={int(size)},step={int(step)}"


class MultiScaleLaw:
    """M4 on several (size, step) groups with interactions pooled across groups."""

    name = "multiscale"
    param_dims = {"t": ["group", "eval", "domain"], "t_shared": ["eval", "domain"], "level": ["group", "eval"],
                  "floor": ["group", "eval"], "sigma": ["group", "eval"]}

    def model(self, data: dict, priors: dict, y=None):
        multiscale_model(data, priors, y)

    def prepare(self, runs: pd.DataFrame, *, steps: list[int] | None = None, sizes: list[int] | None = None,
                evals: list[str] | None = None, weights: dict[str, float] | None = None) -> LawData:
        """Rows grouped by (size, step): each run's last checkpoint, or the checkpoints in ``steps``."""
        rows = runs if sizes is None else runs[runs["size"].isin(sizes)]
        rows = last_checkpoints(rows) if steps is None else rows[rows["step"].isin(steps)]
        rows = select_evals(rows, evals, law=self.name)
        if rows.empty:
            raise RunTableError(f"law 'multiscale': no rows left (sizes={sizes}, steps={steps}, evals={evals})")
        rows = rows.assign(eval=rows["eval"].astype(str)).sort_values(["size", "step"], kind="stable")
        rows = rows.reset_index(drop=True)
        pairs = rows[["size", "step"]].drop_duplicates().to_numpy()
        if len(pairs) < 2:
            raise RunTableError("law 'multiscale' pools across (size, step) groups and the rows form one "
                                f"(size {pairs[0][0]}, step {pairs[0][1]}): use law 'mix'")
        cols = mix_columns(rows)
        domains = [c[len(MIX_PREFIX):] for c in cols]
        per_group = rows.drop_duplicates(["size", "step", *cols]).groupby(["size", "step"]).size()
        thin = per_group[per_group < MIN_GROUP_MIXTURES]
        if len(thin):
            raise RunTableError(f"law 'multiscale' needs at least {MIN_GROUP_MIXTURES} distinct mixtures per "
                                f"(size, step) group; {[tuple(map(int, k)) for k in thin.index]} have fewer")
        n_mix = len(rows.drop_duplicates(cols))
        if n_mix < len(domains) + 2:
            raise RunTableError(f"law 'multiscale' needs at least {len(domains) + 2} distinct mixtures for "
                                f"{len(domains)} domains, the table has {n_mix}")
        labels = [group_label(s, t) for s, t in pairs]
        group_idx, _ = category_codes(pd.Series([group_label(s, t) for s, t in rows[["size", "step"]].to_numpy()]))
        run_idx, runs_seen = category_codes(rows["run"])
        eval_idx, evals_seen = category_codes(rows["eval"])
        r = rows.drop_duplicates("run").set_index("run").loc[runs_seen, cols].to_numpy(float)
        r0 = r.mean(axis=0)
        y = rows["loss"].to_numpy(float)
        ref = rows.groupby(["size", "step", "eval"])["loss"].mean()
        eval_mean = rows.groupby("eval")["loss"].mean()
        y_ref = np.array([[ref.get((s, t, e), eval_mean[e]) for e in evals_seen] for s, t in pairs])
        return LawData(
            arrays={"r_centered": r - r0, "run": run_idx, "group": group_idx, "eval": eval_idx, "y_ref": y_ref,
                    "loss_scale": float(y.mean())},
            y=y,
            coords={"group": labels, "eval": evals_seen, "domain": domains, "run": runs_seen},
            meta={"r0": r0.tolist(), "domains": domains, "groups": [[int(s), int(t)] for s, t in pairs],
                  "weights": target_weights(weights, evals_seen).tolist()},
            obs_index=rows[["run", "eval", "size", "step", *cols]],
        )

    def point_fit(self, data: LawData, *, seed: int, n_starts: int = 16) -> dict[str, np.ndarray]:
        """Independent M4 Huber fit of every (group, eval) cell; cells without rows get a flat law."""
        a = data.arrays
        n_groups, n_evals = a["y_ref"].shape
        cell = a["group"] * n_evals + a["eval"]
        present, cell_idx = np.unique(cell, return_inverse=True)
        x, y, mask = pad_groups(cell_idx, len(present), a["r_centered"][a["run"]], data.y)
        theta, _ = multistart_fit(_point_mean, _point_init, jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask),
                                  seed=seed, n_starts=n_starts)
        theta = np.asarray(theta)
        m = a["r_centered"].shape[1]
        floor = 0.5 * a["y_ref"].ravel()
        level = a["y_ref"].ravel().copy()
        t = np.zeros((n_groups * n_evals, m))
        floor[present] = np.exp(theta[:, 0])
        level[present] = floor[present] + np.exp(theta[:, 1])
        t[present] = theta[:, 2:] - theta[:, 2:].mean(axis=1, keepdims=True)
        shape = (n_groups, n_evals)
        t = t.reshape(*shape, m)
        return {"level": level.reshape(shape), "floor": floor.reshape(shape), "t": t, "t_shared": t.mean(axis=0)}

    def init_values(self, data: LawData, point: dict[str, np.ndarray], priors: dict) -> dict[str, np.ndarray]:
        """Sample-site values reproducing the point fit (interactions clipped, kept zero-sum)."""

        def zero_sum(v):
            return v - v.mean(axis=-1, keepdims=True)

        t = zero_sum(np.clip(point["t"], -20, 20))
        shared = t.mean(axis=0)
        mu = shared.mean(axis=0)
        tau_g = max(float(np.std(t - shared[None])), 0.05)
        share = np.clip(point["floor"] / point["level"], 0.02, 0.98)
        values = {
            "interaction_mu": mu,
            "group_tau": tau_g,
            "group_z": zero_sum(np.clip((t - shared[None]) / tau_g, -3, 3)),
            "level_z": np.clip(np.log(point["level"] / data.arrays["y_ref"]) / priors["level_sd"], -3, 3),
            "floor_logit": np.log(share / (1 - share)),
        }
        if shared.shape[0] > 1:
            tau_e = np.maximum(np.std(shared - mu, axis=1), 0.05)
            values.update(interaction_tau=tau_e, interaction_z=zero_sum(np.clip((shared - mu) / tau_e[:, None], -3, 3)))
        return values

    def query(self, data: LawData, **inputs) -> Query:
        """Predict every (size, step) group and eval domain (and each group's overall) at ``mixtures=``."""
        if set(inputs) != {"mixtures"}:
            raise ValueError(f"law 'multiscale' predicts at mixtures=...; got {sorted(inputs) or 'nothing'}")
        r, frame = as_mixture_matrix(inputs["mixtures"], data.meta["domains"])
        groups = np.asarray(data.meta["groups"])
        evals = list(data.coords["eval"]) + ([OVERALL] if len(data.coords["eval"]) > 1 else [])
        n_mix, n_groups, n_ev = len(frame), len(groups), len(evals)
        labels = frame.loc[np.repeat(np.arange(n_mix), n_groups * n_ev)].reset_index(drop=True)
        labels.insert(1, "size", np.tile(np.repeat(groups[:, 0], n_ev), n_mix))
        labels.insert(2, "step", np.tile(np.repeat(groups[:, 1], n_ev), n_mix))
        labels.insert(3, "eval", evals * (n_mix * n_groups))
        return Query(arrays={"r_centered": r - np.asarray(data.meta["r0"])}, labels=labels, evals=evals)

    def test_inputs(self, obs_index: pd.DataFrame) -> dict:
        """Query inputs that predict every observation of ``obs_index`` (mixture labels = run)."""
        frame = obs_index.drop_duplicates("run")
        return {"mixtures": frame[mix_columns(frame)].assign(mixture=frame["run"].astype(str).to_numpy())}

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): per (mixture, group, eval) means plus each group's weighted overall."""
        x = query.arrays["r_centered"]
        level, floor, t = (np.asarray(params[k]) for k in ("level", "floor", "t"))
        with jax.enable_x64(True):
            expo = np.asarray(jnp.einsum("pm,dgem->dpge", x, t))  # (draws, mixtures, groups, evals)
        per_eval = floor[:, None] + (level - floor)[:, None] * np.exp(expo)
        return self._with_overall(per_eval, query, meta, weighted_overall)

    def noise_scale(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """(draws, points): sigma_ge, and sqrt(sum w_e^2 sigma_ge^2) for each group's overall."""
        sigma = np.asarray(params["sigma"])[:, None]
        sigma = np.broadcast_to(sigma, (sigma.shape[0], query.arrays["r_centered"].shape[0], *sigma.shape[2:]))
        return self._with_overall(sigma, query, meta, lambda v, w: np.sqrt((v**2) @ (w**2)))

    @staticmethod
    def _with_overall(per_eval: np.ndarray, query: Query, meta: dict, combine) -> np.ndarray:
        if OVERALL in query.evals:
            per_eval = np.concatenate([per_eval, combine(per_eval, np.asarray(meta["weights"]))[..., None]], axis=-1)
        return per_eval.reshape(per_eval.shape[0], -1)
