"""The one skeleton of the nested chain: step law -> size law -> mixing law -> backtests.

:func:`run_chain` times every stage, shows the pipeline's progress bar, hands each stage's
output downstream and assembles the :class:`~bayesmix.pipeline.result.PipelineResult`. How a
stage is fitted is the propagation mode's, given by an engine:

* :class:`BayesEngine` (``draws`` and ``moments``): NUTS per stage, many datasets as lanes
  (:mod:`bayesmix.pipeline.runners`);
* :class:`PointEngine` (``point``): the paper's multi-start point fits with a residual
  bootstrap of the whole chain (:mod:`bayesmix.pipeline.pointchain`).

An engine hands on a :class:`Handed`: the stage's output (draws or resamples) and the centre
the next stage is built on (the mean of the draws, or the point chain's point predictions).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Protocol

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bayesmix.inference.progress import progress_enabled
from bayesmix.pipeline import pointchain as pc
from bayesmix.pipeline import stages as st
from bayesmix.pipeline.result import PipelineResult
from bayesmix.pipeline.runners import (StageFit, StageOutput, backtest_discrepancy, check_summary, fit_step_curves,
                                       output_from_draws, run_mix, run_size, step_labels, step_shape_from,
                                       summary_of, warn_rising)

if TYPE_CHECKING:
    from bayesmix.pipeline.nested import Pipeline


@dataclasses.dataclass(frozen=True)
class Handed:
    """What a stage hands downstream: its ``output`` and the ``centre`` (P,) the next stage is
    built on; for the step stage also the fitted ``stage``, its ``diagnostics`` and the step
    law's ``step_shape`` (None when the runs already end at the target step)."""

    output: StageOutput
    centre: np.ndarray
    stage: st.Stage | None = None
    diagnostics: dict | None = None
    step_shape: dict | None = None


class Engine(Protocol):
    def step(self, runs: pd.DataFrame, plan: st.Plan, priors: dict) -> Handed: ...

    def size(self, plan: st.Plan, up: Handed, priors: dict) -> tuple[StageFit, Handed]: ...

    def mix(self, plan: st.Plan, up: Handed, unit: str, priors: dict) -> StageFit: ...


def observed_step(pipeline: Pipeline, runs: pd.DataFrame, runs_frame: pd.DataFrame, n_copies: int | None):
    """The step stage when every run already ends at the target step: the observed losses,
    ``n_copies`` times (None: once, with zero sd in moments mode)."""
    labels, observed = st.observed_at_target(runs, evals=pipeline.evals)
    labels = st.with_mixtures(labels, runs_frame)
    if n_copies is not None:
        values = np.broadcast_to(observed, (n_copies, observed.size))
        return Handed(StageOutput(labels, values, None, summary_of(labels, values)), observed)
    sd = np.zeros_like(observed) if pipeline.mode == "moments" else None
    return Handed(StageOutput(labels, observed[None], sd, summary_of(labels, observed[None])), observed)


@dataclasses.dataclass
class BayesEngine:
    """NUTS at every stage; upstream draws become downstream datasets (``draws``) or known
    measurement error (``moments``)."""

    pipeline: Pipeline
    runs_frame: pd.DataFrame
    seed: int
    rng: np.random.Generator

    def step(self, runs: pd.DataFrame, plan: st.Plan, priors: dict) -> Handed:
        p = self.pipeline
        if not plan.step:
            return observed_step(p, runs, self.runs_frame, None)
        stage = st.step_stage(runs, plan, min_step=p.min_step, evals=p.evals, priors=priors)
        labels = step_labels(stage, self.runs_frame)
        params, pred, population, summary = fit_step_curves(p, stage, seed=self.seed)
        out, rows = output_from_draws(p, labels, pred[:, stage.handed_off()], n_lanes=1, rng=self.rng)
        diagnostics = check_summary("step", summary, p.strict)
        diagnostics["population"] = population
        diagnostics["rising"] = warn_rising(runs, p.min_step)
        return Handed(out, out.values.mean(axis=0), stage, diagnostics,
                      step_shape_from(stage, {k: v[rows] for k, v in params.items()}, labels))

    def size(self, plan: st.Plan, up: Handed, priors: dict) -> tuple[StageFit, Handed]:
        fit = run_size(self.pipeline, plan, up.output, priors, seed=self.seed + 1, rng=self.rng)
        return fit, Handed(fit.output, fit.output.values.mean(axis=0))

    def mix(self, plan: st.Plan, up: Handed, unit: str, priors: dict) -> StageFit:
        return run_mix(self.pipeline, plan, up.output, unit, priors, seed=self.seed + 2, rng=self.rng)


@dataclasses.dataclass
class PointEngine:
    """The point chain: multi-start point fits, intervals from B = ``n_draws`` residual-bootstrap
    resamples of the whole chain (each resample one "draw")."""

    pipeline: Pipeline
    runs_frame: pd.DataFrame
    seed: int
    rng: np.random.Generator

    def _bootstrap(self, stage: st.Stage, y_point: np.ndarray, inputs_b: np.ndarray | None, seed: int):
        p = self.pipeline
        return pc.bootstrap_stage(stage, y_point, inputs_b, n_boot=int(p.n_draws), seed=seed, n_starts=p.n_starts,
                                  boot_starts=p.boot_starts, rng=self.rng)

    def _diagnostics(self) -> dict:
        return {"lanes": int(self.pipeline.n_draws), "lane": "bootstrap resample", "fail_fraction": 0.0}

    def step(self, runs: pd.DataFrame, plan: st.Plan, priors: dict) -> Handed:
        p = self.pipeline
        if not plan.step:
            with jax.enable_x64(True):
                return observed_step(p, runs, self.runs_frame, int(p.n_draws))
        with jax.enable_x64(True):
            stage = st.step_stage(runs, plan, min_step=p.min_step, evals=p.evals, priors=priors)
            labels = step_labels(stage, self.runs_frame)
            point, boot, _ = self._bootstrap(stage, stage.data.y, None, self.seed)
            keep = stage.handed_off()
            p_point = st.predict_stage(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0][keep]
            p_boot = st.predict_stage(stage, boot)[:, keep]
            step_shape = step_shape_from(stage, boot, labels)
        return Handed(StageOutput(labels, p_boot, None, summary_of(labels, p_boot)), p_point, stage,
                      self._diagnostics(), step_shape)

    def size(self, plan: st.Plan, up: Handed, priors: dict) -> tuple[StageFit, Handed]:
        with jax.enable_x64(True):
            stage = st.size_stage(up.output.labels, up.centre, plan, priors=priors)
            point, boot, _ = self._bootstrap(stage, up.centre[stage.inputs], up.output.values[:, stage.inputs],
                                             self.seed + 1)
            centre = st.predict_stage(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0]
            values = st.predict_stage(stage, boot)
        labels = st.size_labels(stage)
        out = StageOutput(labels, values, None, summary_of(labels, values))
        return StageFit(stage, self._diagnostics(), output=out), Handed(out, centre)

    def mix(self, plan: st.Plan, up: Handed, unit: str, priors: dict) -> StageFit:
        B = int(self.pipeline.n_draws)
        with jax.enable_x64(True):
            stage = st.mix_stage(up.output.labels, up.centre, plan, unit=unit, weights=self.pipeline.weights,
                                 priors=priors)
            point, boot, sd = self._bootstrap(stage, up.centre[stage.inputs], up.output.values[:, stage.inputs],
                                              self.seed + 2)
        boot["sigma"] = np.broadcast_to(sd, (B, sd.size)).copy()
        return StageFit(stage, self._diagnostics(), params=boot, lane_of_draw=np.arange(B), point=point)


def run_chain(pipeline: Pipeline, runs: pd.DataFrame, plan: st.Plan, *, seed: int) -> PipelineResult:
    """Every stage the plan needs, in order, with the engine of ``pipeline.mode``; the backtests
    of each stage's extrapolation last (seed + 3)."""
    rng = np.random.default_rng(seed)
    priors = pipeline.stage_priors(plan.step_law)
    runs_frame = st.run_mixtures_frame(runs)
    engine = (PointEngine if pipeline.mode == "point" else BayesEngine)(pipeline, runs_frame, seed, rng)
    stages, outputs, diagnostics, seconds = {}, {}, {}, {}
    bar = tqdm(total=3 + pipeline.discrepancy, desc="pipeline", disable=not progress_enabled(pipeline.progress))

    t0 = time.perf_counter()
    bar.set_postfix_str("step law")
    up = engine.step(runs, plan, priors["step"])
    if up.stage is not None:
        stages["step"], diagnostics["step"] = up.stage, up.diagnostics
    outputs["step"], seconds["step"] = up.output, time.perf_counter() - t0
    bar.update()

    t0 = time.perf_counter()
    bar.set_postfix_str("size law")
    step_shape, unit = up.step_shape, "run"
    if plan.size:
        size, up = engine.size(plan, up, priors["size"])
        stages["size"], outputs["size"], diagnostics["size"] = size.stage, size.output, size.diagnostics
        unit = "mixture"
    seconds["size"] = time.perf_counter() - t0
    bar.update()

    t0 = time.perf_counter()
    bar.set_postfix_str("mixing law")
    mix = engine.mix(plan, up, unit, priors["mix"])
    stages["mix"], diagnostics["mix"] = mix.stage, mix.diagnostics
    seconds["mix"] = time.perf_counter() - t0
    bar.update()
    bar.set_postfix_str("backtests")
    discrepancy = backtest_discrepancy(pipeline, runs, plan, stages, (up.output.labels, up.centre, unit), priors,
                                       seconds, seed=seed + 3)
    bar.update(int(pipeline.discrepancy))
    bar.close()
    return PipelineResult(pipeline, plan, stages, outputs, mix.params, mix.lane_of_draw, step_shape, diagnostics,
                          seconds, mix.point, seed, mix.lane_ratio, discrepancy)


__all__ = ["BayesEngine", "Engine", "Handed", "PointEngine", "run_chain"]
