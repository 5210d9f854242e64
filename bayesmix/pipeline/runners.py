"""One stage of the nested pipeline at a time: its fit (one dataset or many lanes), its checks, and
the output it hands downstream (:class:`StageOutput`).

Every function takes the pipeline's settings (:class:`bayesmix.pipeline.nested.Pipeline`) as its first argument.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import numpy as np
import pandas as pd

from bayesmix.inference.lanes import RHAT_POOLED_MAX, LaneSamples, lane_variance_split
from bayesmix.inference.quadrature import EDGE_MASS_MAX, RESOLUTION_MIN
from bayesmix.pipeline.backtest import fit_discrepancy
from bayesmix.pipeline.discrepancy import Discrepancy
from bayesmix.inference.diagnostics import DiagnosticsError, DiagnosticsWarning
from bayesmix.inference.fit import labelled_draws, summarise_draws
from bayesmix.pipeline.lanenoise import lane_ratios, shrink_predictions
from bayesmix.laws.mixtures import mix_columns
from bayesmix.pipeline import curves, sizegrid
from bayesmix.pipeline import stages as st

if TYPE_CHECKING:
    from bayesmix.pipeline.nested import Pipeline


LANE_FAIL_MAX = 0.1  # warn when more than this share of a stage's lanes diverge


@dataclasses.dataclass(frozen=True)
class StageOutput:
    """A stage's predictions: ``labels`` (one row per point), ``values`` (K, P) the
    datasets handed downstream (K = 1 or D), ``sd`` (P,) the predictive sd
    (moments mode), ``summary`` (labels + mean, sd, lower, upper of the pooled
    predictive), ``lane_split`` (2, P): the pooled predictive's variance within lanes and
    between them (:func:`bayesmix.inference.lanes.lane_variance_split`; None for one lane)."""

    labels: pd.DataFrame
    values: np.ndarray
    sd: np.ndarray | None
    summary: pd.DataFrame
    lane_split: np.ndarray | None = None


def summary_of(labels: pd.DataFrame, pred: np.ndarray, prob: float = 0.9) -> pd.DataFrame:
    return summarise_draws(labelled_draws(pred, labels), prob)


def lanes_failed(summary: Mapping) -> bool:
    """Whether a stage's lanes fail as a whole: one lane (a single fit) above the
    per-lane R-hat threshold or with divergences; several lanes with the pooled
    R-hat above ``RHAT_POOLED_MAX`` or more than ``LANE_FAIL_MAX`` of them with
    divergences. The share of lanes whose own short-chain R-hat exceeds
    ``RHAT_MAX`` is reported but too noisy to judge by (see :mod:`bayesmix.inference.lanes`).
    Curves on the exact grid (``sampler`` "grid") fail when any curve fails the grid's checks
    (:func:`bayesmix.inference.quadrature.grid_checks`): those are exact, not noisy."""
    if summary.get("sampler") == "grid":
        return bool(summary.get("fail_fraction", 0.0) > 0)
    lanes = int(summary.get("lanes", 1))
    if lanes <= 1:
        return bool(summary.get("fail_fraction", 0.0) > 0)
    pooled = float(summary.get("rhat_pooled", np.nan))
    divergent = summary.get("lanes_with_divergences", 0) / lanes
    return bool((np.isfinite(pooled) and pooled > RHAT_POOLED_MAX) or divergent > LANE_FAIL_MAX)


def lanes_problem(summary: Mapping) -> str:
    """What :func:`lanes_failed` judges, in words: R-hat and divergences of a single
    fit, the pooled R-hat and the lanes with divergences (one lane per ``lane``), or the
    grid's checks."""
    lanes = int(summary.get("lanes", 1))
    if summary.get("sampler") == "grid":
        failed = summary.get("failed", summary.get("failed_curves")) or []
        unit = summary.get("grid_unit")  # None: one grid per curve
        what = f"grids (one per {unit})" if unit else "curves"
        return (f"{len(failed)} of {summary.get('grids', lanes)} {what} fail the grid's checks (largest posterior "
                f"share on the grid's edge {summary.get('edge_mass_max', np.nan):.2g}, at most {EDGE_MASS_MAX:g}; "
                f"coarsest resolution {summary.get('resolution_min', np.nan):.1f} cells per posterior sd, at least "
                f"{RESOLUTION_MIN:g}); {what.split()[0]} {failed[:10]}")
    if lanes <= 1:
        return f"R-hat {summary.get('rhat_max', np.nan):.3f}, {summary.get('divergences', 0)} divergences"
    per = f" (one per {summary['lane']})" if summary.get("lane") else ""
    return (f"R-hat pooled over {lanes} lanes{per} {summary.get('rhat_pooled', np.nan):.3f}, "
            f"{summary.get('lanes_with_divergences', 0)} lanes with divergences")


def check_summary(name: str, summary: dict, strict: bool) -> dict:
    """``summary``; warn (or raise when strict) when it fails (:func:`lanes_failed`)."""
    if lanes_failed(summary):
        message = f"pipeline stage {name!r}: convergence checks failed: {lanes_problem(summary)}"
        if strict:
            raise DiagnosticsError(message)
        warnings.warn(message + " (treat the intervals with caution)", DiagnosticsWarning, stacklevel=4)
    return summary


def _check_lanes(name: str, lanes: LaneSamples, strict: bool, per: str = "dataset") -> dict:
    """Lane diagnostics as a dict, checked by :func:`check_summary`."""
    return check_summary(name, lanes.summary() | {"lane": per}, strict)


def _anchor_summary(anchor: LaneSamples | None) -> dict:
    """The anchor fit's diagnostics (empty without an anchor)."""
    if anchor is None:
        return {}
    return {"anchor": {k: v for k, v in anchor.summary().items() if k != "lanes"}}


def fit_downstream(pipeline: Pipeline, stage: st.Stage, values: np.ndarray, sd: np.ndarray | None, *,
                   seed: int) -> tuple[LaneSamples, LaneSamples | None]:
    """Fit a stage on K upstream datasets: ``(lanes, anchor)``.

    K = 1 (an exact upstream, moments mode, point-mode means): one fit with
    ``fit_config``, measurement sd ``sd`` when given; ``anchor`` is None.

    K > 1 (draws mode): first the *anchor*, one fit with ``fit_config`` (a long
    warm-up) on the first dataset; then all K lanes with ``lane_config``,
    warm-started from it (its chains' last positions, mass matrix and step size;
    :class:`bayesmix.inference.lanes.WarmStart`), so each lane's short warm-up starts
    from a tuned geometry and only refines it. On a 20 mixtures x 4 sizes x 5 evals size
    law this takes the lanes from ~165 to ~20 leapfrog steps per iteration.

    The mass matrix is dense (the size law's per-eval exponents couple every
    curve; the mixing law's level, floor and interactions trade off): with the
    anchor's long warm-up it adapts well, and M4 needs ~100 leapfrog steps per
    iteration instead of the 255 of a diagonal one at tree depth 8.
    """
    dense = stage.law.dense_lanes
    single = dataclasses.replace(pipeline.fit_config, dense_mass=dense)
    with jax.enable_x64(True):
        if values.shape[0] == 1:
            lanes = st.sample_stage(stage, values, config=single, seed=seed, n_starts=pipeline.n_starts, meas_sd=sd,
                                    progress=pipeline.progress)
            return lanes, None
        anchor = st.sample_stage(stage, values[:1], config=single, seed=seed, n_starts=pipeline.n_starts,
                                 progress=pipeline.progress, desc=f"{stage.name} anchor")
        lanes = st.sample_stage(stage, values, config=dataclasses.replace(pipeline.lane_config, dense_mass=dense),
                                seed=seed + 7, n_starts=pipeline.n_starts, warm_start=anchor.warm_start(),
                                progress=pipeline.progress)
    return lanes, anchor


def own_noise(stage: st.Stage, lanes: LaneSamples, values: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """Per lane and eval, the ratio k (D, E) of the stage's own noise sd to the lane's
    (:mod:`bayesmix.pipeline.lanenoise`), used to count the upstream error once; ``None`` for a
    single fit (K = 1)."""
    if lanes.n_lanes < 2:
        return None, {}
    with jax.enable_x64(True):
        k, summary = lane_ratios(stage, lanes, values)
    return k, {"lane_noise": summary}


def output_from_draws(pipeline: Pipeline, labels: pd.DataFrame, pred: np.ndarray, *, n_lanes: int,
                      rng: np.random.Generator) -> tuple[StageOutput, np.ndarray]:
    """A stage's output from its pooled predictive draws ``pred`` (lane-major, (n, P)).

    draws/point modes hand ``n_draws`` datasets downstream (see
    :func:`bayesmix.pipeline.stages.propagate`); moments mode hands the mean and sd.
    Returns the output and the rows of ``pred`` chosen.
    """
    summary = summary_of(labels, pred)
    lane = np.repeat(np.arange(n_lanes), pred.shape[0] // n_lanes)
    split = lane_variance_split(pred, lane) if n_lanes > 1 else None
    if pipeline.mode == "moments":
        rows = rng.choice(pred.shape[0], size=pipeline.n_draws, replace=pipeline.n_draws > pred.shape[0])
        return StageOutput(labels, pred.mean(axis=0)[None], pred.std(axis=0, ddof=1), summary, split), rows
    rows = st.propagate(pred, n_lanes, pipeline.n_draws, rng)
    return StageOutput(labels, pred[rows], None, summary, split), rows


def stage_output(pipeline: Pipeline, stage: st.Stage, labels: pd.DataFrame, lanes: LaneSamples,
                 rng: np.random.Generator, k: np.ndarray | None = None) -> tuple[StageOutput, LaneSamples]:
    """Predict at the stage's query (each lane's predictions brought to the stage's own
    noise by ``k`` (D, E) when given), hand datasets downstream, and re-check the lanes'
    R-hat on these predictions (the quantity the next stage uses)."""
    with jax.enable_x64(True):
        pred = st.predict_stage(stage, lanes.pooled())
    if k is not None:
        pred = shrink_predictions(pred, k[:, stage.query.arrays["eval"]])
    lanes = lanes.checked({"pred": pred.reshape(lanes.diverging.shape + pred.shape[1:])})
    out, _ = output_from_draws(pipeline, labels, pred, n_lanes=lanes.n_lanes, rng=rng)
    return out, lanes


def fit_step_curves(pipeline: Pipeline, stage: st.Stage, *, seed: int):
    """Step law: every (run, eval) curve on its own, by ``pipeline.step_sampler``: the exact grid
    posterior (:func:`bayesmix.pipeline.curves.grid_curves`) or one NUTS lane per curve
    (:func:`bayesmix.pipeline.curves.fit_curves`).

    Returns parameters as (draws, curves), the predictions (draws, points), the population
    prior and the diagnostics (a lane summary, one lane per curve; judged by :func:`lanes_failed`).
    """
    with jax.enable_x64(True):
        if pipeline.step_sampler == "grid":
            params, population, checks = curves.grid_curves(stage.data, stage.priors, seed=seed)
            pred = st.predict_stage(stage, params)
            return params, pred, population, curves.grid_summary(checks) | {"lane": "curve"}
        point = st.point_fit(stage, stage.data.y, seed=seed, n_starts=pipeline.n_starts)
        lanes, population = curves.fit_curves(stage.data, stage.priors, point, config=pipeline.curve_config,
                                              seed=seed, progress=pipeline.progress)
        params = curves.curve_draws(lanes)
        pred = st.predict_stage(stage, params)
    lanes = lanes.checked({"pred": pred.T.reshape(lanes.diverging.shape + (1,))})
    return params, pred, population, lanes.summary() | {"lane": "curve"}


def step_shape_from(stage: st.Stage, params: dict[str, np.ndarray], labels: pd.DataFrame) -> dict:
    """Reducible loss at S* and exponent per (dataset, handed-off run-eval curve): the step
    law ``L(S) = floor + reducible * (S / S*)^-exponent`` of every proxy curve (for the
    schedule-aware law, ``reducible`` is the loss at S* above the floor, annealing included), and
    ``params``: the step law's parameter draws (dataset, curve) behind them."""
    keep = stage.handed_off()
    c = stage.query.arrays["curve"][keep]
    with jax.enable_x64(True):
        mean = st.predict_stage(stage, params)[:, keep]
    floor, exponent = params["floor"][:, c], params["exponent"][:, c]
    return {"labels": labels, "reducible": mean - floor, "exponent": exponent,
            "params": {k: np.asarray(v) for k, v in params.items() if k in stage.law.param_dims}}


def step_labels(stage: st.Stage, runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Labels (run, eval, size, step, mixture, mix.*) of the step stage's handed-off points."""
    labels = stage.query.labels.iloc[stage.handed_off()][["run", "eval", "size", "step"]]
    return st.with_mixtures(labels.astype({"run": str}).reset_index(drop=True), runs_frame)


def warn_rising(runs: pd.DataFrame, min_step: int) -> list[str]:
    """``run/eval`` of the curves whose loss rises with steps (:func:`bayesmix.pipeline.stages.rising_curves`),
    with one warning naming them."""
    rising = st.rising_curves(runs, min_step=min_step)
    names = [f"{r.run}/{r.eval}" for r in rising.itertuples()]
    if names:
        warnings.warn(f"{len(names)} curve(s) rise with training steps, which no step law here describes "
                      f"(e.g. {', '.join(names[:5])}); their extrapolation to the target step is a guess",
                      UserWarning, stacklevel=3)
    return names


def backtest_discrepancy(pipeline: Pipeline, runs: pd.DataFrame, plan: st.Plan, stages: dict[str, st.Stage],
                         mix_input: tuple[pd.DataFrame, np.ndarray, str], priors: dict, seconds: dict, *,
                         seed: int) -> Discrepancy | None:
    """The stages' backtests and the discrepancy they calibrate (``None`` when the pipeline
    has it switched off; its table: ``Discrepancy.table()``); its time goes into
    ``seconds["backtest"]``. """
    if not pipeline.discrepancy:
        return None
    t0 = time.perf_counter()
    mix = stages["mix"]
    labels, _, unit = mix_input
    tried = labels.drop_duplicates(unit)[mix_columns(labels)].to_numpy(float)
    handed = (None if "step" not in stages else
              stages["step"].query.labels.iloc[stages["step"].handed_off()]["run"].astype(str).unique().tolist())
    discrepancy = fit_discrepancy(runs, plan, mix_input, tried=tried,
                                  weights=dict(zip(mix.data.coords["eval"], mix.data.meta["weights"])),
                                  priors=priors, min_step=pipeline.min_step, evals=pipeline.evals,
                                  handed_off_runs=handed, seed=seed)
    seconds["backtest"] = time.perf_counter() - t0
    return discrepancy


@dataclasses.dataclass(frozen=True)
class StageFit:
    """A downstream stage fitted by lanes: the ``stage``, its ``diagnostics``, and either the
    ``output`` it hands on (size) or, for the mixing law, the pooled ``params`` draws, the
    ``lane_of_draw`` of each draw, the ``point`` fit and the lanes' own-noise ``lane_ratio``
    (D, E) (None for a single fit; see :func:`bayesmix.pipeline.lanenoise.mix_predictions`)."""

    stage: st.Stage
    diagnostics: dict
    output: StageOutput | None = None
    params: dict[str, np.ndarray] | None = None
    lane_of_draw: np.ndarray | None = None
    point: dict[str, np.ndarray] | None = None
    lane_ratio: np.ndarray | None = None


def run_size(pipeline: Pipeline, plan: st.Plan, up: StageOutput, priors: dict, *, seed: int,
             rng: np.random.Generator) -> StageFit:
    """Size stage on the step stage's output: stage, output, diagnostics.

    With ``pipeline.size_sampler`` "grid" every dataset is fitted by quadrature
    (:mod:`bayesmix.pipeline.sizegrid`), except in moments mode, whose known measurement sd per
    point the grid's one noise sd per domain cannot carry: there, and with "nuts", NUTS lanes."""
    stage = st.size_stage(up.labels, up.values.mean(axis=0), plan, priors=priors)
    values = up.values[:, stage.inputs]
    by_grid = pipeline.size_sampler == "grid" and up.sd is None
    if by_grid:
        stage = sizegrid.grid_stage(stage)
        lanes, population, checks = sizegrid.fit_size_grid(stage, values, seed=seed)
    else:
        lanes, anchor = fit_downstream(pipeline, stage, values, None if up.sd is None else up.sd[stage.inputs],
                                       seed=seed)
    k, correction = own_noise(stage, lanes, values)
    out, lanes = stage_output(pipeline, stage, st.size_labels(stage), lanes, rng, k)
    if by_grid:
        summary = sizegrid.size_grid_summary(checks, list(stage.data.coords["eval"])) | {"lane": "dataset"}
        diagnostics = check_summary("size", summary, pipeline.strict) | {"population": population}
    else:
        diagnostics = _check_lanes("size", lanes, pipeline.strict) | _anchor_summary(anchor)
    return StageFit(stage, diagnostics | correction, output=out)


def run_mix(pipeline: Pipeline, plan: st.Plan, up: StageOutput, unit: str, priors: dict, *, seed: int,
            rng: np.random.Generator) -> StageFit:
    """Mixing stage on the upstream output: stage, pooled params, lane of each draw,
    diagnostics (R-hat on the predictions at the observed mixtures), point fit, and the
    lanes' own-noise ratio k (D, E) (None for a single fit; :func:`bayesmix.pipeline.lanenoise.mix_predictions`).
    The noise draws ``sigma`` are already scaled by k."""
    stage = st.mix_stage(up.labels, up.values.mean(axis=0), plan, unit=unit, weights=pipeline.weights,
                         priors=priors)
    lanes, anchor = fit_downstream(pipeline, stage, up.values[:, stage.inputs],
                                   None if up.sd is None else up.sd[stage.inputs], seed=seed)
    k, correction = own_noise(stage, lanes, up.values[:, stage.inputs])
    mixtures = up.labels[["mixture", *mix_columns(up.labels)]].drop_duplicates("mixture")
    with jax.enable_x64(True):
        pred = st.predict_stage(stage, lanes.pooled(), stage.law.query(stage.data, mixtures=mixtures))
        point = st.point_fit(stage, up.values.mean(axis=0)[stage.inputs], seed=seed, n_starts=pipeline.n_starts)
    lanes = lanes.checked({"pred": pred.reshape(lanes.diverging.shape + pred.shape[1:])})
    params = lanes.pooled(max_draws=pipeline.max_draws)  # checked on every draw, kept thinned
    n_kept = params["sigma"].shape[0]
    if lanes.n_lanes > 1:
        lane_of_draw = np.repeat(np.arange(lanes.n_lanes), n_kept // lanes.n_lanes)
    else:
        lane_of_draw = rng.integers(pipeline.n_draws, size=n_kept)
    diagnostics = _check_lanes("mix", lanes, pipeline.strict) | _anchor_summary(anchor) | correction
    if k is not None:
        params["sigma"] = params["sigma"] * k[lane_of_draw]
    return StageFit(stage, diagnostics, params=params, lane_of_draw=lane_of_draw, point=point, lane_ratio=k)


__all__ = ["StageFit", "StageOutput", "backtest_discrepancy", "check_summary", "fit_downstream", "fit_step_curves",
           "lanes_failed", "lanes_problem",
           "output_from_draws", "own_noise", "run_mix", "run_size", "stage_output", "step_labels", "step_shape_from",
           "summary_of", "warn_rising"]
