"""A fitted nested pipeline: predictions at the target scale, the loss as a JAX function of the
mixture for the optimiser, per-stage diagnostics and the error budget.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
import pandas as pd

from bayesmix.pipeline.discrepancy import Discrepancy
from bayesmix.inference.fit import labelled_draws, student_t_noise, summarise_draws
from bayesmix.pipeline.lanenoise import mix_predictions, shrink_by_lane
from bayesmix.laws.mixing import OVERALL
from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns
from bayesmix.pipeline import stages as st
from bayesmix.pipeline.runners import StageOutput
from bayesmix.data.store import save_tree

if TYPE_CHECKING:
    from bayesmix.pipeline.nested import Pipeline


KINDS = ("mean", "observation")

STORE_FORMAT = "bayesmix-pipeline/1"


@dataclasses.dataclass
class PipelineResult:
    """A fitted nested pipeline.

    ``stages``: the fitted :class:`bayesmix.pipeline.stages.Stage` by name; ``outputs``:
    their :class:`StageOutput`; ``params``: draws of the mixing law's parameters
    (n_draws_total, ...) pooled over lanes; ``lane_of_draw`` (n_draws_total,):
    the upstream dataset each final draw descends from; ``step_shape``: the step
    law's reducible loss at S* and exponent per (run, eval) for each upstream
    dataset (used by the compute multiplier); ``diagnostics`` and ``seconds`` per
    stage; ``point``: the mixing law's point fit; ``lane_ratio`` (D, E): in draws
    mode, the ratio by which each mixing lane's predictions are brought to the
    stage's own noise (:mod:`bayesmix.pipeline.lanenoise`; applied in :meth:`predict` and
    :meth:`loss_fn`). ``discrepancy``: the backtest-calibrated extrapolation discrepancy of
    the overall loss (:class:`bayesmix.pipeline.discrepancy.Discrepancy`; ``None`` when switched off),
    added in :meth:`predict` and :meth:`loss_fn` unless asked not to.
    """

    pipeline: Pipeline
    plan: st.Plan
    stages: dict[str, st.Stage]
    outputs: dict[str, StageOutput]
    params: dict[str, np.ndarray]
    lane_of_draw: np.ndarray
    step_shape: dict | None
    diagnostics: dict[str, dict]
    seconds: dict[str, float]
    point: dict[str, np.ndarray]
    seed: int
    lane_ratio: np.ndarray | None = None
    discrepancy: Discrepancy | None = None

    @property
    def mode(self) -> str:
        return self.pipeline.mode

    @property
    def domains(self) -> list[str]:
        return list(self.stages["mix"].data.meta["domains"])

    @property
    def evals(self) -> list[str]:
        return list(self.stages["mix"].data.coords["eval"])

    @property
    def n_draws_total(self) -> int:
        return int(self.lane_of_draw.size)

    def observed_mixtures(self) -> pd.DataFrame:
        """The mixtures the mixing law was fitted on: ``mixture`` label + ``mix.*`` columns."""
        labels = self.outputs["size"].labels if "size" in self.stages else self.outputs["step"].labels
        cols = ["mixture", *mix_columns(labels)]
        return labels[cols].drop_duplicates("mixture").reset_index(drop=True)

    def tried_mixtures(self) -> np.ndarray:
        """The shares of the mixtures the mixing law was fitted on: (k, M), columns in ``domains`` order."""
        return self.observed_mixtures()[[MIX_PREFIX + d for d in self.domains]].to_numpy(float)

    def predict(self, mixtures=None, *, kind: str = "mean", prob: float = 0.9, draws: bool = False,
                seed: int = 0, discrepancy: bool = True):
        """Loss at the target scale for ``mixtures`` (default: the observed ones).

        Returns a DataFrame (mixture, eval, mix.*, mean, sd, lower, upper) with the
        central ``prob`` interval, or with ``draws=True`` an ``xr.DataArray``
        (draw, point). ``eval`` includes ``overall`` (weighted) when there are
        several eval domains. ``kind="observation"`` adds the mixing law's noise;
        ``discrepancy`` (when the pipeline has one) adds the backtest-calibrated
        extrapolation discrepancy delta(r) to the overall loss and to each eval domain its
        own, calibrated on its own backtests (:meth:`eval_discrepancy`).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 0 < prob < 1:
            raise ValueError(f"prob must lie in (0, 1), got {prob}")
        stage = self.stages["mix"]
        query = stage.law.query(stage.data, mixtures=self.observed_mixtures() if mixtures is None else mixtures)
        with jax.enable_x64(True):
            values = mix_predictions(stage, self.params, query, self.lane_of_draw, self.lane_ratio)
            if kind == "observation":
                scale = stage.law.noise_scale(self.params, query, stage.data.meta)
                values = values + scale * student_t_noise(stage.priors["student_df"], values.shape, seed)
        if discrepancy and self.discrepancy is not None:
            values = values + self._delta(query, values.shape[0])
        array = labelled_draws(values, query.labels)
        return array if draws else summarise_draws(array, prob)

    def eval_discrepancy(self, eval: str) -> tuple[Discrepancy, float]:
        """The discrepancy that ``eval``'s loss carries, and its factor: the overall's own (1);
        an eval domain's own when its backtests calibrated one (1); else the overall's, scaled
        by 1 / sum_e w_e (a pipeline saved before the per-domain discrepancies)."""
        if eval != OVERALL and eval in self.discrepancy.evals:
            return self.discrepancy.evals[eval], 1.0
        weights = self.stages["mix"].data.meta["weights"]
        return self.discrepancy, 1.0 if eval == OVERALL else 1.0 / float(np.sum(weights))

    def own_domain(self, eval: str) -> int | None:
        """The index of the training domain named like ``eval`` (whose own evaluation it is), else None."""
        return self.domains.index(eval) if eval != OVERALL and eval in self.domains else None

    def _delta(self, query, n_draws: int) -> np.ndarray:
        """The discrepancy at every point of a mixing-law query: (draws, points)."""
        r = query.arrays["r_centered"] + np.asarray(self.stages["mix"].data.meta["r0"])
        delta = np.zeros((n_draws, len(r), len(query.evals)))
        for e, name in enumerate(query.evals):
            disc, factor = self.eval_discrepancy(name)
            delta[:, :, e] = factor * disc.draws(r, n_draws, self.own_domain(name))  # (draws, mixtures)
        return delta.reshape(n_draws, -1)

    def predict_point(self, mixtures=None) -> pd.DataFrame:
        """The mixing law's point-fit prediction chained from the stages' means: labels + ``point``."""
        stage = self.stages["mix"]
        query = stage.law.query(stage.data, mixtures=self.observed_mixtures() if mixtures is None else mixtures)
        labels = query.labels.copy()
        with jax.enable_x64(True):
            labels["point"] = st.predict_stage(stage, {k: np.asarray(v)[None] for k, v in self.point.items()},
                                               query)[0]
        return labels

    def loss_fn(self, eval: str | None = None, *, max_draws: int = 2000, seed: int = 0, discrepancy: bool = True):
        """A JAX function ``f(r (n, M)) -> (draws, n)``: draws of the target-scale loss
        of ``eval`` (default the overall loss) at mixtures r, over at most
        ``max_draws`` posterior draws (for the optimiser in :mod:`bayesmix.decide.decisions`),
        with the discrepancy as in :meth:`predict`."""
        import jax.numpy as jnp

        from bayesmix.laws.mixing import m4_draws
        from bayesmix.laws.overall import weighted_overall

        evals = self.evals
        eval = OVERALL if eval is None and len(evals) > 1 else (eval or evals[0])
        if eval != OVERALL and eval not in evals:
            raise ValueError(f"unknown eval {eval!r}; the pipeline has {evals + [OVERALL]}")
        rng = np.random.default_rng(seed)
        n = self.n_draws_total
        idx = np.sort(rng.choice(n, size=min(n, max_draws), replace=False))
        with jax.enable_x64(True):
            level, floor, t = (jnp.asarray(self.params[k][idx]) for k in ("level", "floor", "t"))
            r0 = jnp.asarray(self.stages["mix"].data.meta["r0"])
            w = jnp.asarray(self.stages["mix"].data.meta["weights"])
        pick = None if eval == OVERALL else evals.index(eval)
        ratio = None if self.lane_ratio is None else jnp.asarray(self.lane_ratio)
        lanes = jnp.asarray(self.lane_of_draw[idx])
        if discrepancy and self.discrepancy is not None:
            disc, per = self.eval_discrepancy(eval)
            delta = disc.jax_fn(n, idx, self.own_domain(eval))
        else:
            delta, per = (lambda r: 0.0), 0.0

        def f(r):
            per_eval = m4_draws(r - r0, level, floor, t)  # (draws, n, E)
            if ratio is not None:
                per_eval = shrink_by_lane(per_eval, lanes, ratio[:, None, :], ratio.shape[0])
            mean = weighted_overall(per_eval, w, pick)
            return mean + per * delta(r)

        return f

    def stage_table(self) -> pd.DataFrame:
        """One row per stage: whether it ran, datasets (lanes), lane failure share, R-hat, seconds."""
        rows = []
        for name in st.STAGES:
            diag = self.diagnostics.get(name, {})
            rows.append({"stage": name, "fitted": name in self.stages, "lanes": diag.get("lanes", 0),
                         "fail_fraction": diag.get("fail_fraction", np.nan),
                         "rhat_max": diag.get("rhat_max", np.nan), "rhat_pooled": diag.get("rhat_pooled", np.nan),
                         "divergences": diag.get("divergences", 0),
                         "seconds": round(self.seconds.get(name, 0.0), 2)})
        return pd.DataFrame(rows)

    def save(self, path) -> Path:
        """Write the result to the folder ``path`` (netCDF + Parquet + JSON, no pickle; replaced
        atomically); read it back with :func:`bayesmix.pipeline.store.load_pipeline`."""
        return save_tree(self, path, format=STORE_FORMAT)

    def error_budget(self, *, seed: int = 0, evals=None, method: str = "split"):
        """Share of the final predictive variance due to each stage; see :mod:`bayesmix.pipeline.budget`."""
        from bayesmix.pipeline.budget import error_budget

        return error_budget(self, seed=seed, evals=evals, method=method)


__all__ = ["KINDS", "STORE_FORMAT", "PipelineResult"]
