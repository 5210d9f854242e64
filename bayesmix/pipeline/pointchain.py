"""The paper's point-estimate chain and its residual bootstrap (the ``point`` mode).

Point chain (Ye et al. 2024, Algorithm 1): multi-start Huber fits of the step
law per curve, the size law per (mixture, eval) and M4 per eval, each fitted on
the previous stage's point predictions.

Intervals come from a residual bootstrap of the whole chain with B resamples,
all resamples of a stage in one stacked multi-start fit:

    y*_b    = fitted + e*_b         (e*_b: the stage's centred residuals, resampled within eval domain)
    stage 1: refit on y*_b                                  -> predictions p1_b at S*
    stage 2: refit on p1_b[inputs] + e*_b (stage-2 residuals) -> p2_b at N*
    stage 3: refit on p2_b[inputs] + e*_b (stage-3 residuals) -> M4 parameters theta_b

The B parameter sets play the role of posterior draws.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import pandas as pd

from bayesmix.pipeline import stages as st
from bayesmix.pipeline.result import PipelineResult
from bayesmix.pipeline.runners import StageOutput, backtest_discrepancy, step_labels, step_shape_from, summary_of


def _bootstrap_stage(stage: st.Stage, y_point: np.ndarray, inputs_b: np.ndarray | None, *, n_boot: int,
                     seed: int, n_starts: int, boot_starts: int, rng: np.random.Generator):
    """Point fit on ``y_point`` and B refits on resampled data.

    ``inputs_b`` (B, n_obs): bootstrap replicates of the upstream predictions
    feeding this stage (``None`` for the first fitted stage: the data are fixed).
    Returns (point params, bootstrap params with leading B axis, residual sd per eval).
    """
    point = st.point_fit(stage, y_point, seed=seed, n_starts=n_starts)
    fitted = st.fitted_at_obs(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0]
    resid = y_point - fitted
    groups = stage.data.arrays["eval"]
    base = fitted[None, :] if inputs_b is None else inputs_b
    ys = base + st.resample_residuals(resid, groups, n_boot, rng)
    boot = st.stacked_point_fit(stage, ys, seed=seed + 1, n_starts=boot_starts)
    sd = np.array([resid[groups == g].std(ddof=1) if (groups == g).sum() > 1 else 0.0
                   for g in range(int(groups.max()) + 1)])
    return point, boot, sd


def run_point_chain(pipeline, runs: pd.DataFrame, plan: st.Plan, *, seed: int):
    """The ``point`` mode of :class:`bayesmix.pipeline.nested.Pipeline`."""
    rng = np.random.default_rng(seed)
    B = int(pipeline.n_draws)
    priors = pipeline.stage_priors(plan.step_law)
    runs_frame = st.run_mixtures_frame(runs)
    stages, outputs, seconds, diagnostics = {}, {}, {}, {}
    step_shape = None
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        if plan.step:
            stage = st.step_stage(runs, plan, min_step=pipeline.min_step, evals=pipeline.evals,
                                  priors=priors["step"])
            labels = step_labels(stage, runs_frame)
            point, boot, _ = _bootstrap_stage(stage, stage.data.y, None, n_boot=B, seed=seed,
                                              n_starts=pipeline.n_starts, boot_starts=pipeline.boot_starts,
                                              rng=rng)
            keep = stage.handed_off()
            p_point = st.predict_stage(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0][keep]
            p_boot = st.predict_stage(stage, boot)[:, keep]
            step_shape = step_shape_from(stage, boot, labels)
            stages["step"] = stage
        else:
            labels, p_point = st.observed_at_target(runs, evals=pipeline.evals)
            labels = st.with_mixtures(labels, runs_frame)
            p_boot = np.broadcast_to(p_point, (B, p_point.size))
        outputs["step"] = StageOutput(labels, p_boot, None, summary_of(labels, p_boot))
        seconds["step"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        up_point, up_boot, up_labels, unit = p_point, p_boot, labels, "run"
        if plan.size:
            stage = st.size_stage(labels, p_point, plan, priors=priors["size"])
            point, boot, _ = _bootstrap_stage(stage, p_point[stage.inputs], p_boot[:, stage.inputs], n_boot=B,
                                              seed=seed + 1, n_starts=pipeline.n_starts,
                                              boot_starts=pipeline.boot_starts, rng=rng)
            up_point = st.predict_stage(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0]
            up_boot = st.predict_stage(stage, boot)
            up_labels, unit = st.size_labels(stage), "mixture"
            stages["size"] = stage
            outputs["size"] = StageOutput(up_labels, up_boot, None, summary_of(up_labels, up_boot))
        seconds["size"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        stage = st.mix_stage(up_labels, up_point, plan, unit=unit, weights=pipeline.weights, priors=priors["mix"])
        point, boot, sd = _bootstrap_stage(stage, up_point[stage.inputs], up_boot[:, stage.inputs], n_boot=B,
                                           seed=seed + 2, n_starts=pipeline.n_starts,
                                           boot_starts=pipeline.boot_starts, rng=rng)
        boot["sigma"] = np.broadcast_to(sd, (B, sd.size)).copy()
        stages["mix"] = stage
        seconds["mix"] = time.perf_counter() - t0
    for name in stages:
        diagnostics[name] = {"lanes": B, "lane": "bootstrap resample", "fail_fraction": 0.0}
    discrepancy = backtest_discrepancy(pipeline, runs, plan, stages, (up_labels, up_point, unit), priors,
                                       seconds, seed=seed + 3)
    return PipelineResult(pipeline, plan, stages, outputs, boot, np.arange(B), step_shape, diagnostics, seconds,
                          point, seed, discrepancy=discrepancy)
