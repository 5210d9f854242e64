"""The nested pipeline: step law -> size law -> mixing law, uncertainty carried through.

    result = Pipeline(target_size=1_000_000_000, target_step=100_000).fit(runs, seed=0)
    result.predict()                         # overall and per-eval loss of every observed mixture
    result.predict(mixtures=candidates)      # any mixture, with credible intervals
    result.error_budget(seed=0)              # which stage the uncertainty comes from

Stages (Ye et al. 2024, Algorithm 1): the step law per (run, eval) predicts every
proxy run's loss at the target step S*; the size law per (mixture, eval),
hierarchical over mixtures, predicts every mixture at the target size N*; the
mixing law M4 over mixtures at (N*, S*) predicts any mixture.

Propagation modes (same API):

* ``draws`` (default): a cut posterior. D draws of stage k's predictions become
  D datasets; stage k+1 is refitted on all of them in one vmapped NUTS run
  (:mod:`bayesmix.batched`), and dataset d of stage k+2 is one draw of fit d's
  predictive. The final predictive pools the D fits' draws:
  ``p(L | data) = (1/D) sum_d p(L | y_d),  y_d ~ p(stage-k output | data)``.
  A lane learns its noise from data that scatter by the upstream error too, so
  its own spread would count that error a second time beside the spread between
  lanes; each lane's draws are brought to the stage's own noise
  (:mod:`bayesmix.lanenoise`).
* ``moments``: upstream predictive mean m_i and sd s_i enter the downstream
  likelihood as known measurement error: ``y_i = m_i``,
  ``sigma_i^2 = sigma_e^2 + s_i^2``; one fit per stage.
* ``point``: the paper's chain of multi-start Huber point fits; intervals from a
  residual bootstrap of the whole chain with ``n_draws`` resamples (the
  non-Bayesian baseline).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bayesmix.batched import RHAT_POOLED_MAX, LaneConfig, LaneSamples
from bayesmix.backtest import fit_discrepancy
from bayesmix.data import validate_runs
from bayesmix.discrepancy import Discrepancy
from bayesmix.diagnostics import DiagnosticsError, DiagnosticsWarning
from bayesmix.fit import labelled_draws, student_t_noise, summarise_draws
from bayesmix.lanenoise import lane_ratios, shrink_by_lane, shrink_predictions
from bayesmix.laws import resolve_priors
from bayesmix.laws.mixing import OVERALL
from bayesmix.laws.mixtures import mix_columns
from bayesmix.progress import progress_enabled
from bayesmix.schedule import Schedule
from bayesmix import curves
from bayesmix import stages as st

MODES = ("draws", "moments", "point")
STAGES = ("step", "size", "mix")
KINDS = ("mean", "observation")
DENSE_STAGES = ("size", "mix")
LANE_FAIL_MAX = 0.1  # warn when more than this share of a stage's lanes diverge


@dataclasses.dataclass(frozen=True)
class StageOutput:
    """A stage's predictions: ``labels`` (one row per point), ``values`` (K, P) the
    datasets handed downstream (K = 1 or D), ``sd`` (P,) the predictive sd
    (moments mode), ``summary`` (labels + mean, sd, lower, upper of the pooled
    predictive)."""

    labels: pd.DataFrame
    values: np.ndarray
    sd: np.ndarray | None
    summary: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Settings of the nested pipeline; :meth:`fit` runs it on a run table.

    ``target_size``/``target_step``: the scale to predict (``None``: the table's
    only size / each run's last checkpoint). ``min_step``: checkpoints below it
    are ignored by the step law. ``n_draws``: upstream draws D propagated (draws
    mode) or bootstrap resamples (point mode). ``priors``: overrides per law,
    ``{"step": {...}, "size": {...}, "mix": {...}}``. ``fit_config``: NUTS for
    single fits (a stage whose input is deterministic, and every stage in
    moments mode);
    ``lane_config``: NUTS for each of the D lanes (few chains and draws: D fits
    pooled give plenty); ``curve_config``: NUTS for each step-law curve.
    ``weights``: eval weights of the overall loss. ``target_schedule``: the target
    run's learning-rate schedule (:class:`bayesmix.schedule.Schedule`; ``None``: each
    proxy run's own plan), used by the schedule-aware step law when the runs record
    their schedules. ``discrepancy``: replay each stage's extrapolation inside the data and
    carry the misses' bias and spread into every target-scale prediction
    (:mod:`bayesmix.backtest`, :mod:`bayesmix.discrepancy`); off gives the laws' own posterior.
    """

    target_size: int | None = None
    target_step: int | None = None
    min_step: int = 1
    target_schedule: Schedule | None = None
    mode: str = "draws"
    n_draws: int = 128
    evals: tuple[str, ...] | None = None
    weights: Mapping[str, float] | None = None
    priors: Mapping[str, Mapping[str, float]] | None = None
    fit_config: LaneConfig = LaneConfig(num_chains=4, num_warmup=1000, num_samples=500)
    lane_config: LaneConfig = LaneConfig(num_chains=2, num_warmup=100, num_samples=100)
    curve_config: LaneConfig = LaneConfig(num_chains=4, num_warmup=200, num_samples=100, dense_mass=True)
    n_starts: int = 16
    boot_starts: int = 4
    strict: bool = False
    progress: bool | None = None
    discrepancy: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if int(self.n_draws) < 2:
            raise ValueError(f"n_draws must be at least 2, got {self.n_draws}")
        for name, value in (("target_size", self.target_size), ("target_step", self.target_step)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        unknown = sorted(set(self.priors or {}) - set(STAGES))
        if unknown:
            raise KeyError(f"priors are given per law {list(STAGES)}; unknown key(s) {unknown}")

    def stage_priors(self, step_law: str = "step") -> dict[str, dict[str, float]]:
        """Resolved priors of every stage's law (the step stage's: ``step_law``'s; unknown
        names raise KeyError)."""
        laws = {"step": step_law, "size": "size", "mix": "mix"}
        return {name: resolve_priors(laws[name], (self.priors or {}).get(name)) for name in STAGES}

    def fit(self, runs: pd.DataFrame, *, seed: int) -> PipelineResult:
        """Run every needed stage on ``runs`` (tidy run table) and return the result."""
        if seed is None:
            raise ValueError("a seed is required")
        runs = validate_runs(runs)
        if self.evals is not None:
            missing = sorted(set(self.evals) - set(runs["eval"].astype(str)))
            if missing:
                raise ValueError(f"eval domain(s) {missing} are not in the table")
            runs = runs[runs["eval"].astype(str).isin(self.evals)]
        plan = st.plan_stages(runs, target_size=self.target_size, target_step=self.target_step,
                              target_schedule=self.target_schedule)
        if self.mode == "point":
            from bayesmix.pointchain import run_point_chain

            return run_point_chain(self, runs, plan, seed=seed)
        return _run_bayes(self, runs, plan, seed=seed)


@dataclasses.dataclass
class PipelineResult:
    """A fitted nested pipeline.

    ``stages``: the fitted :class:`bayesmix.stages.Stage` by name; ``outputs``:
    their :class:`StageOutput`; ``params``: draws of the mixing law's parameters
    (n_draws_total, ...) pooled over lanes; ``lane_of_draw`` (n_draws_total,):
    the upstream dataset each final draw descends from; ``step_shape``: the step
    law's reducible loss at S* and exponent per (run, eval) for each upstream
    dataset (used by the compute multiplier); ``diagnostics`` and ``seconds`` per
    stage; ``point``: the mixing law's point fit; ``lane_ratio`` (D, E): in draws
    mode, the ratio by which each mixing lane's predictions are brought to the
    stage's own noise (:mod:`bayesmix.lanenoise`; applied in :meth:`predict` and
    :meth:`loss_fn`). ``discrepancy``: the backtest-calibrated extrapolation discrepancy of
    the overall loss (:class:`bayesmix.discrepancy.Discrepancy`; ``None`` when switched off),
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

    def predict(self, mixtures=None, *, kind: str = "mean", prob: float = 0.9, draws: bool = False,
                seed: int = 0, discrepancy: bool = True):
        """Loss at the target scale for ``mixtures`` (default: the observed ones).

        Returns a DataFrame (mixture, eval, mix.*, mean, sd, lower, upper) with the
        central ``prob`` interval, or with ``draws=True`` an ``xr.DataArray``
        (draw, point). ``eval`` includes ``overall`` (weighted) when there are
        several eval domains. ``kind="observation"`` adds the mixing law's noise;
        ``discrepancy`` (when the pipeline has one) adds the backtest-calibrated
        extrapolation discrepancy delta(r) to the overall loss, and delta / sum_e w_e to
        each eval domain so that the weighted sum stays the overall.
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

    def discrepancy_share(self, eval: str) -> float:
        """The part of the overall loss's discrepancy that ``eval`` carries: 1 for the overall,
        1 / sum_e w_e for each eval domain (so that the weighted sum stays the overall)."""
        return 1.0 if eval == OVERALL else 1.0 / float(np.sum(self.stages["mix"].data.meta["weights"]))

    def _delta(self, query, n_draws: int) -> np.ndarray:
        """The discrepancy at every point of a mixing-law query: (draws, points)."""
        r = query.arrays["r_centered"] + np.asarray(self.stages["mix"].data.meta["r0"])
        delta = self.discrepancy.draws(r, n_draws)  # (draws, mixtures)
        per = np.array([self.discrepancy_share(e) for e in query.evals])
        return (delta[:, :, None] * per[None, None, :]).reshape(n_draws, -1)

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
        ``max_draws`` posterior draws (for the optimiser in :mod:`bayesmix.decide`),
        with the discrepancy as in :meth:`predict`."""
        import jax.numpy as jnp

        from bayesmix.laws.mixing import m4_mean

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
        delta = (self.discrepancy.jax_fn(n, idx) if discrepancy and self.discrepancy is not None
                 else (lambda r: 0.0))
        per = self.discrepancy_share(eval)

        def f(r):
            per_eval = jax.vmap(m4_mean, in_axes=(None, 0, 0, 0))(r - r0, level, floor, t)  # (draws, n, E)
            if ratio is not None:
                per_eval = shrink_by_lane(per_eval, lanes, ratio[:, None, :], ratio.shape[0])
            mean = per_eval @ w if pick is None else per_eval[..., pick]
            return mean + per * delta(r)

        return f

    def stage_table(self) -> pd.DataFrame:
        """One row per stage: whether it ran, datasets (lanes), lane failure share, R-hat, seconds."""
        rows = []
        for name in STAGES:
            diag = self.diagnostics.get(name, {})
            rows.append({"stage": name, "fitted": name in self.stages, "lanes": diag.get("lanes", 0),
                         "fail_fraction": diag.get("fail_fraction", np.nan),
                         "rhat_max": diag.get("rhat_max", np.nan), "rhat_pooled": diag.get("rhat_pooled", np.nan),
                         "divergences": diag.get("divergences", 0),
                         "seconds": round(self.seconds.get(name, 0.0), 2)})
        return pd.DataFrame(rows)

    def error_budget(self, *, seed: int = 0, evals=None):
        """Share of the final predictive variance due to each stage; see :mod:`bayesmix.budget`."""
        from bayesmix.budget import error_budget

        return error_budget(self, seed=seed, evals=evals)


def _summary(labels: pd.DataFrame, pred: np.ndarray, prob: float = 0.9) -> pd.DataFrame:
    return summarise_draws(labelled_draws(pred, labels), prob)


def lanes_failed(summary: Mapping) -> bool:
    """Whether a stage's lanes fail as a whole: one lane (a single fit) above the
    per-lane R-hat threshold or with divergences; several lanes with the pooled
    R-hat above ``RHAT_POOLED_MAX`` or more than ``LANE_FAIL_MAX`` of them with
    divergences. The share of lanes whose own short-chain R-hat exceeds
    ``RHAT_MAX`` is reported but too noisy to judge by (see :mod:`bayesmix.batched`)."""
    lanes = int(summary.get("lanes", 1))
    if lanes <= 1:
        return bool(summary.get("fail_fraction", 0.0) > 0)
    pooled = float(summary.get("rhat_pooled", np.nan))
    divergent = summary.get("lanes_with_divergences", 0) / lanes
    return bool((np.isfinite(pooled) and pooled > RHAT_POOLED_MAX) or divergent > LANE_FAIL_MAX)


def lanes_problem(summary: Mapping) -> str:
    """What :func:`lanes_failed` judges, in words: R-hat and divergences of a single
    fit, or the pooled R-hat and the lanes with divergences (one lane per ``lane``)."""
    lanes = int(summary.get("lanes", 1))
    if lanes <= 1:
        return f"R-hat {summary.get('rhat_max', np.nan):.3f}, {summary.get('divergences', 0)} divergences"
    per = f" (one per {summary['lane']})" if summary.get("lane") else ""
    return (f"R-hat pooled over {lanes} lanes{per} {summary.get('rhat_pooled', np.nan):.3f}, "
            f"{summary.get('lanes_with_divergences', 0)} lanes with divergences")


def _check_lanes(name: str, lanes: LaneSamples, strict: bool, per: str = "dataset") -> dict:
    """Lane diagnostics as a dict; warn (or raise when strict) when the lanes fail (:func:`lanes_failed`)."""
    summary = lanes.summary() | {"lane": per}
    if lanes_failed(summary):
        message = f"pipeline stage {name!r}: convergence checks failed: {lanes_problem(summary)}"
        if strict:
            raise DiagnosticsError(message)
        warnings.warn(message + " (treat the intervals with caution)", DiagnosticsWarning, stacklevel=4)
    return summary


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
    :class:`bayesmix.batched.WarmStart`), so each lane's short warm-up only
    burns in and tunes its step size. On a 20 mixtures x 4 sizes x 5 evals size
    law this takes the lanes from ~165 to ~20 leapfrog steps per iteration.

    The mass matrix is dense (the size law's per-eval exponents couple every
    curve; the mixing law's level, floor and interactions trade off): with the
    anchor's long warm-up it adapts well, and M4 needs ~100 leapfrog steps per
    iteration instead of the 255 of a diagonal one at tree depth 8.
    """
    dense = stage.name in DENSE_STAGES
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
    (:mod:`bayesmix.lanenoise`), used to count the upstream error once; ``None`` for a
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
    :func:`bayesmix.stages.propagate`); moments mode hands the mean and sd.
    Returns the output and the rows of ``pred`` chosen.
    """
    summary = _summary(labels, pred)
    if pipeline.mode == "moments":
        rows = rng.choice(pred.shape[0], size=pipeline.n_draws, replace=pipeline.n_draws > pred.shape[0])
        return StageOutput(labels, pred.mean(axis=0)[None], pred.std(axis=0, ddof=1), summary), rows
    rows = st.propagate(pred, n_lanes, pipeline.n_draws, rng)
    return StageOutput(labels, pred[rows], None, summary), rows


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
    """Step law: every (run, eval) curve in its own NUTS lane (:mod:`bayesmix.curves`).

    Returns the lanes, parameters as (draws, curves) and the population prior.
    """
    with jax.enable_x64(True):
        point = st.point_fit(stage, stage.data.y, seed=seed, n_starts=pipeline.n_starts)
        lanes, population = curves.fit_curves(stage.data, stage.priors, point, config=pipeline.curve_config,
                                              seed=seed, progress=pipeline.progress)
    return lanes, curves.curve_draws(lanes), population


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
    """``run/eval`` of the curves whose loss rises with steps (:func:`bayesmix.stages.rising_curves`),
    with one warning naming them."""
    rising = st.rising_curves(runs, min_step=min_step)
    names = [f"{r.run}/{r.eval}" for r in rising.itertuples()]
    if names:
        warnings.warn(f"{len(names)} curve(s) rise with training steps, which no step law here describes "
                      f"(e.g. {', '.join(names[:5])}); their extrapolation to the target step is a guess",
                      UserWarning, stacklevel=3)
    return names


def _run_bayes(pipeline: Pipeline, runs: pd.DataFrame, plan: st.Plan, *, seed: int) -> PipelineResult:
    """Draws and moments modes."""
    rng = np.random.default_rng(seed)
    priors = pipeline.stage_priors(plan.step_law)
    runs_frame = st.run_mixtures_frame(runs)
    stages, outputs, diagnostics, seconds = {}, {}, {}, {}
    step_shape = None
    bar = tqdm(total=3 + pipeline.discrepancy, desc="pipeline", disable=not progress_enabled(pipeline.progress))

    t0 = time.perf_counter()
    bar.set_postfix_str("step law")
    if plan.step:
        stage = st.step_stage(runs, plan, min_step=pipeline.min_step, evals=pipeline.evals, priors=priors["step"])
        labels = step_labels(stage, runs_frame)
        lanes, params, population = fit_step_curves(pipeline, stage, seed=seed)
        with jax.enable_x64(True):
            pred = st.predict_stage(stage, params)
        lanes = lanes.checked({"pred": pred.T.reshape(lanes.diverging.shape + (1,))})
        out, rows = output_from_draws(pipeline, labels, pred[:, stage.handed_off()], n_lanes=1, rng=rng)
        step_shape = step_shape_from(stage, {k: v[rows] for k, v in params.items()}, labels)
        stages["step"], diagnostics["step"] = stage, _check_lanes("step", lanes, pipeline.strict, per="curve")
        diagnostics["step"]["population"] = population
        diagnostics["step"]["rising"] = warn_rising(runs, pipeline.min_step)
    else:
        labels, observed = st.observed_at_target(runs, evals=pipeline.evals)
        labels = st.with_mixtures(labels, runs_frame)
        out = StageOutput(labels, observed[None], np.zeros_like(observed) if pipeline.mode == "moments" else None,
                          _summary(labels, observed[None]))
    outputs["step"], seconds["step"] = out, time.perf_counter() - t0
    bar.update()

    t0 = time.perf_counter()
    bar.set_postfix_str("size law")
    if plan.size:
        stages["size"], outputs["size"], diagnostics["size"] = run_size(pipeline, plan, outputs["step"],
                                                                        priors["size"], seed=seed + 1, rng=rng)
    seconds["size"] = time.perf_counter() - t0
    bar.update()

    t0 = time.perf_counter()
    bar.set_postfix_str("mixing law")
    up, unit = (outputs["size"], "mixture") if plan.size else (outputs["step"], "run")
    stage, params, lane_of_draw, diagnostics["mix"], point, ratio = run_mix(pipeline, plan, up, unit,
                                                                            priors["mix"], seed=seed + 2, rng=rng)
    stages["mix"] = stage
    seconds["mix"] = time.perf_counter() - t0
    bar.update()
    bar.set_postfix_str("backtests")
    discrepancy = backtest_discrepancy(pipeline, runs, plan, stages, (up.labels, up.values.mean(axis=0), unit),
                                       priors, seconds, seed=seed + 3)
    bar.update(int(pipeline.discrepancy))
    bar.close()
    return PipelineResult(pipeline, plan, stages, outputs, params, lane_of_draw, step_shape, diagnostics, seconds,
                          point, seed, ratio, discrepancy)


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


def run_size(pipeline: Pipeline, plan: st.Plan, up: StageOutput, priors: dict, *, seed: int,
             rng: np.random.Generator) -> tuple[st.Stage, StageOutput, dict]:
    """Size stage on the step stage's output: stage, output, diagnostics."""
    stage = st.size_stage(up.labels, up.values.mean(axis=0), plan, priors=priors)
    lanes, anchor = fit_downstream(pipeline, stage, up.values[:, stage.inputs],
                                   None if up.sd is None else up.sd[stage.inputs], seed=seed)
    k, correction = own_noise(stage, lanes, up.values[:, stage.inputs])
    out, lanes = stage_output(pipeline, stage, st.size_labels(stage), lanes, rng, k)
    return stage, out, _check_lanes("size", lanes, pipeline.strict) | _anchor_summary(anchor) | correction


def run_mix(pipeline: Pipeline, plan: st.Plan, up: StageOutput, unit: str, priors: dict, *, seed: int,
            rng: np.random.Generator):
    """Mixing stage on the upstream output: stage, pooled params, lane of each draw,
    diagnostics (R-hat on the predictions at the observed mixtures), point fit, and the
    lanes' own-noise ratio k (D, E) (None for a single fit; :func:`mix_predictions`).
    The noise draws ``sigma`` are already scaled by k."""
    stage = st.mix_stage(up.labels, up.values.mean(axis=0), plan, unit=unit, weights=pipeline.weights,
                         priors=priors)
    lanes, anchor = fit_downstream(pipeline, stage, up.values[:, stage.inputs],
                                   None if up.sd is None else up.sd[stage.inputs], seed=seed)
    k, correction = own_noise(stage, lanes, up.values[:, stage.inputs])
    params = lanes.pooled()
    mixtures = up.labels[["mixture", *mix_columns(up.labels)]].drop_duplicates("mixture")
    with jax.enable_x64(True):
        pred = st.predict_stage(stage, params, stage.law.query(stage.data, mixtures=mixtures))
        point = st.point_fit(stage, up.values.mean(axis=0)[stage.inputs], seed=seed, n_starts=pipeline.n_starts)
    lanes = lanes.checked({"pred": pred.reshape(lanes.diverging.shape + pred.shape[1:])})
    per_lane = pred.shape[0] // lanes.n_lanes
    if lanes.n_lanes > 1:
        lane_of_draw = np.repeat(np.arange(lanes.n_lanes), per_lane)
    else:
        lane_of_draw = rng.integers(pipeline.n_draws, size=pred.shape[0])
    diagnostics = _check_lanes("mix", lanes, pipeline.strict) | _anchor_summary(anchor) | correction
    if k is not None:
        params["sigma"] = params["sigma"] * k[lane_of_draw]
    return stage, params, lane_of_draw, diagnostics, point, k


def mix_predictions(stage: st.Stage, params: dict[str, np.ndarray], query, lane_of_draw: np.ndarray | None = None,
                    lane_ratio: np.ndarray | None = None) -> np.ndarray:
    """Mixing-law means at ``query`` for every draw: (draws, points). With ``lane_ratio``
    (D, E), each lane's per-eval predictions are brought towards the lane's mean by
    its ratio before the overall is formed (:func:`bayesmix.lanenoise.shrink_by_lane`):
    in prediction space, since a shrink of M4's parameters would move its mean
    predictions. Run inside x64."""
    if lane_ratio is None:
        return st.predict_stage(stage, params, query)
    per_eval = stage.law.per_eval_draws(params, query)
    per_eval = np.asarray(shrink_by_lane(per_eval, lane_of_draw, lane_ratio[:, None, :], lane_ratio.shape[0]))
    return stage.law.mean_from_per_eval(per_eval, query, stage.data.meta)


def predictive_variance(result: PipelineResult, evals=None) -> pd.Series:
    """Mean predictive variance at the observed mixtures, per eval (``overall`` included)."""
    draws = result.predict(draws=True)
    frame = pd.DataFrame({"eval": draws["eval"].to_numpy(), "var": draws.var("draw", ddof=1).to_numpy()})
    table = frame.groupby("eval", sort=False)["var"].mean()
    return table if evals is None else table.loc[list(evals)]


__all__ = ["MODES", "Pipeline", "PipelineResult", "StageOutput", "backtest_discrepancy", "predictive_variance"]
