"""Laws of one loss per run as a function of the training mixture.

The implicit-aggregation law and the paper's alternative forms (M1-M3) all
predict a single target per run: one eval domain's loss, or, with several eval
domains, their weighted sum

    y_i = sum_e w_e loss_ie          (weights ``w_e`` default to 1/E)

at one model size and one checkpoint per run. This module turns a run table
into that target and reads new mixtures back; each law adds its mean function,
numpyro model and point fitter.

Arrays of :class:`~bayesmix.laws.base.LawData` built here:
``r`` (n, M) mixtures, ``r_centered`` (n, M) = r - r0 with r0 the mean observed
mixture, ``r0`` (M,), ``y_ref`` (the mean target) and ``loss_scale``.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from bayesmix.data.table import RunTableError, select_evals
from bayesmix.laws.base import LawData, Query
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns
from bayesmix.laws.size import rows_at_step

OVERALL = "overall"
DRAW_BATCH = 256  # draws evaluated at once when predicting (bounds memory at many query points)


def target_weights(weights, evals: list[str]) -> np.ndarray:
    """Eval weights in ``evals`` order: equal by default, else the user's (all named, finite, >= 0)."""
    if weights is None:
        return np.full(len(evals), 1.0 / len(evals))
    unknown = sorted(set(weights) - set(evals))
    missing = sorted(set(evals) - set(weights))
    if unknown or missing:
        raise ValueError(f"weights must name every eval domain {evals}; unknown {unknown}, missing {missing}")
    w = np.array([float(weights[e]) for e in evals])
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {dict(zip(evals, w))}")
    return w


def weighted_overall(per_eval, weights, pick: int | None = None):
    """The overall loss ``sum_e w_e L_e`` over the last axis of ``per_eval`` (..., E), or eval
    ``pick`` alone; numpy or JAX arrays alike."""
    return per_eval @ weights if pick is None else per_eval[..., pick]


def one_size(runs: pd.DataFrame, size: int | None, law: str, hint: str = "") -> pd.DataFrame:
    """Rows of the one model size the law fits (``size`` picks it on a multi-size table);
    ``hint`` ends the message when there are several."""
    if size is None and runs["size"].nunique() > 1:
        raise RunTableError(
            f"law {law!r} fits one model size; the table has sizes {sorted(runs['size'].unique().tolist())}: "
            "pass size=" + hint
        )
    rows = runs if size is None else runs[runs["size"] == size]
    if rows.empty:
        raise RunTableError(f"law {law!r}: no runs of size {size}")
    return rows


def per_run_target(rows: pd.DataFrame, evals: list[str] | None, weights, law: str):
    """(runs, mixtures (n, M), y (n,), evals, w): the weighted target of each run.

    Every run must have a loss on every chosen eval domain.
    """
    rows = select_evals(rows, evals, law=law)
    evals_seen = list(evals) if evals is not None else list(dict.fromkeys(rows["eval"].astype(str)))
    w = target_weights(weights, evals_seen)
    wide = rows.assign(eval=rows["eval"].astype(str)).pivot_table(index="run", columns="eval", values="loss",
                                                                  sort=False)
    wide = wide.reindex(columns=evals_seen)
    incomplete = wide.index[wide.isna().any(axis=1)].tolist()
    if incomplete:
        raise RunTableError(f"law {law!r} needs every run's loss on each eval domain {evals_seen}; "
                            f"run(s) {incomplete[:10]} lack some")
    cols = mix_columns(rows)
    mixtures = rows.drop_duplicates("run").set_index("run").loc[wide.index, cols].to_numpy(float)
    return list(wide.index), mixtures, weighted_overall(wide.to_numpy(float), w), evals_seen, w


class OverallMixtureLaw:
    """Shared machinery: ``prepare`` the per-run target, ``query`` mixtures, noise and means.

    Subclasses define ``name``, ``param_dims``, ``mean_params`` (the names the
    mean needs), ``model``, ``point_fit``, ``init_values`` and
    ``mean(params_one_draw, r, meta)`` (a pure JAX function of one draw's
    parameters and mixtures r (P, M), returning (P,)).
    """

    name: str
    mean_params: tuple[str, ...]

    def prepare(self, runs: pd.DataFrame, *, size: int | None = None, step: int | None = None,
                evals: list[str] | None = None, weights: dict[str, float] | None = None) -> LawData:
        """One target per run at one (size, step); see the module docstring."""
        rows = rows_at_step(one_size(runs, size, self.name), step)
        run_labels, r, y, evals_seen, w = per_run_target(rows, evals, weights, self.name)
        cols = mix_columns(rows)
        domains = [c[len(MIX_PREFIX):] for c in cols]
        n_mix = len(np.unique(r.round(9), axis=0))
        needed = len(domains) + 2
        if n_mix < needed:
            raise RunTableError(
                f"law {self.name!r} needs at least {needed} distinct mixtures for {len(domains)} domains, "
                f"the table has {n_mix}"
            )
        r0 = r.mean(axis=0)
        target = evals_seen[0] if len(evals_seen) == 1 else OVERALL
        obs_index = pd.DataFrame({"run": run_labels, "eval": target, "size": int(rows["size"].iloc[0]),
                                  "step": int(rows["step"].max())})
        obs_index[cols] = r
        return LawData(
            arrays={"r": r, "r_centered": r - r0, "r0": r0, "y_ref": float(y.mean()), "loss_scale": float(y.mean())},
            y=y,
            coords={"run": run_labels, "domain": domains},
            meta={"r0": r0.tolist(), "domains": domains, "evals": evals_seen, "weights": w.tolist(),
                  "target": target, "size": int(rows["size"].iloc[0]), "step": int(rows["step"].max())},
            obs_index=obs_index,
        )

    def query(self, data: LawData, **inputs) -> Query:
        """Predict the target at ``mixtures=`` (labels: mixture, eval, proportions)."""
        if set(inputs) != {"mixtures"}:
            raise ValueError(f"law {self.name!r} predicts at mixtures=...; got {sorted(inputs) or 'nothing'}")
        r, frame = as_mixture_matrix(inputs["mixtures"], data.meta["domains"])
        labels = frame.copy()
        labels.insert(1, "eval", data.meta["target"])
        return Query(arrays={"r": r}, labels=labels, evals=[data.meta["target"]])

    def test_inputs(self, obs_index: pd.DataFrame) -> dict:
        """Query inputs that predict every observation of ``obs_index`` (mixture labels = run)."""
        frame = obs_index.drop_duplicates("run")
        mixtures = frame[mix_columns(frame)].assign(mixture=frame["run"].astype(str).to_numpy())
        return {"mixtures": mixtures}

    def mean_draws(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """The law's mean at the query mixtures for every draw: (draws, points)."""
        with jax.enable_x64(True):
            stacked = {k: np.asarray(params[k], dtype=float) for k in self.mean_params}
            r = np.asarray(query.arrays["r"], dtype=float)
            return np.asarray(jax.lax.map(lambda p: self.mean(p, r, meta), stacked, batch_size=DRAW_BATCH))

    def noise_scale(self, params: dict[str, np.ndarray], query: Query, meta: dict) -> np.ndarray:
        """Observation noise sd, the same at every point: (draws, points)."""
        sigma = np.asarray(params["sigma"]).reshape(-1, 1)
        return np.broadcast_to(sigma, (sigma.shape[0], query.arrays["r"].shape[0]))
