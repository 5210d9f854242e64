"""The three stages of the nested pipeline as data: what each fits and where it predicts.

    step:  L(S) per (run, eval), checkpoints >= min_step       -> loss of every run at S*
    size:  L(N) per (mixture, eval) over the runs' sizes at S*  -> loss of every mixture at N*
    mix:   M4 over mixtures at (N*, S*)                          -> loss of any mixture

A :class:`Stage` holds the law, its prepared data (built from the upstream
stage's *mean* prediction, which fixes shapes, reference points and the point
fit used to start NUTS), and ``inputs``: for each observation of this stage, the
index of the upstream prediction point it reads. Stage k+1 is refitted on
``upstream_values[:, inputs]`` for every upstream dataset (row).

A stage is *skipped* when the table already sits at the target: a single
checkpoint (or the target step reached by every run) skips the step law, a
single model size equal to the target skips the size law. Predictions of a
skipped step stage are the observed losses.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from bayesmix.inference.lanes import LaneSampler, LaneSamples, WarmStart
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.data.table import RunTableError
from bayesmix.laws import LawData, Query, get_law
from bayesmix.laws.mixtures import mix_columns, mixture_labels
from bayesmix.laws.annealing import ANNEALED
from bayesmix.laws.size import MIN_SIZES
from bayesmix.data.schedule import Schedule, has_schedule, run_schedules


STAGES = ("step", "size", "mix")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One fitted stage: ``law`` name, prepared ``data``, prediction ``query``,
    ``inputs`` (n_obs,) indices into the upstream points, and ``priors``."""

    name: str
    data: LawData
    query: Query | None
    inputs: np.ndarray
    priors: dict
    labels: dict | None = None  # the law's own mixture labels -> the pipeline's
    law_name: str | None = None  # the law fitted, when it is not the stage's own (e.g. "anneal" for "step")
    handoff: np.ndarray | None = None  # query points handed downstream (bool per point; None: all)

    def handed_off(self) -> np.ndarray:
        """Indices of the query points handed to the next stage."""
        n = len(self.query.labels)
        return np.arange(n) if self.handoff is None else np.flatnonzero(self.handoff)

    @property
    def law(self):
        return get_law(self.law_name or self.name)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which stages run: ``step`` and ``size`` flags, the scale the mixing law sits at,
    the step law (``"anneal"`` when every run records its schedule, else ``"step"``)
    and the target run's schedule (``None``: each run's own plan)."""

    step: bool
    size: bool
    target_step: int
    target_size: int
    step_law: str = "step"
    target_schedule: Schedule | None = None


def choose_step_law(runs: pd.DataFrame, *, step_on: bool, target_step: int,
                    target_schedule: Schedule | None = None) -> str:
    """The step law: ``"anneal"`` (:mod:`bayesmix.laws.annealing`) when every run records its
    schedule and some run's checkpoints saw the rate fall below ``ANNEALED`` of its peak;
    else the power law ``"step"``, with a warning when the target step lies where no
    checkpoint was (no schedule known), or where the rate has fallen further than any
    checkpoint saw (the anneal's drop cannot be learned from these runs)."""
    last = runs.groupby("run")["step"].max()
    if not step_on or target_step <= int(last.min()):
        return "anneal" if has_schedule(runs) and _annealed_share(runs, last).min() < ANNEALED else "step"
    if not has_schedule(runs):
        warnings.warn(f"the runs record no learning-rate schedule: the step law extrapolates from step "
                      f"{int(last.max())} to {target_step} without knowing whether the rate decays in between "
                      "(an anneal there lowers the loss more than a power law in steps predicts); add the "
                      "schedule columns (schedule.shape, schedule.peak_lr, schedule.warmup, schedule.final_ratio, "
                      "schedule.plan_steps) for the schedule-aware step law", UserWarning, stacklevel=4)
        return "step"
    seen = _annealed_share(runs, last)
    if seen.min() < ANNEALED:
        return "anneal"
    specs = run_schedules(runs)
    target = [float((target_schedule or specs[r]).rate_share(target_step))
              for r in last.index.astype(str)]
    if min(target) < seen.min():
        warnings.warn(f"no checkpoint saw the learning rate below {seen.min():.0%} of its peak, but at the target "
                      f"step {target_step} it is {min(target):.0%}: the drop an anneal brings cannot be learned "
                      f"from these runs, and the power law in steps will overestimate the loss there; train a "
                      "few short runs through their whole schedule (planned steps = stopping step) to inform "
                      "the schedule-aware step law", UserWarning, stacklevel=4)
    return "step"


def _annealed_share(runs: pd.DataFrame, last: pd.Series) -> pd.Series:
    """Learning rate at each run's last checkpoint as a share of its peak (runs with a schedule)."""
    specs = run_schedules(runs)
    return pd.Series({r: float(specs[r].rate_share(int(s)))
                      for r, s in zip(last.index.astype(str), last.to_numpy()) if r in specs})


def plan_stages(runs: pd.DataFrame, *, target_size: int | None, target_step: int | None,
                target_schedule: Schedule | None = None) -> Plan:
    """Decide which stages are needed to reach (target_size, target_step), and the step law.

    Raises RunTableError when the table cannot reach the target (one model size
    but another target size; several sizes and no target size).
    """
    sizes = sorted(runs["size"].unique().tolist())
    last_steps = runs.groupby("run")["step"].max()
    if target_step is None:
        step_on = False
        target_step = int(last_steps.max())
        if last_steps.nunique() > 1:
            warnings.warn(f"runs end at different steps {sorted(last_steps.unique().tolist())} and no target "
                          "step was given: using each run's last checkpoint", UserWarning, stacklevel=3)
    else:
        target_step = int(target_step)
        at_target = runs.loc[runs["step"] == target_step, "run"].unique()
        step_on = not (len(at_target) == runs["run"].nunique() and (last_steps == target_step).all())
    law = choose_step_law(runs, step_on=step_on, target_step=target_step, target_schedule=target_schedule)
    if target_schedule is not None and law != "anneal":
        raise RunTableError("a target schedule needs the runs' schedules (schedule.* columns) to be of use")
    extra = dict(step_law=law, target_schedule=target_schedule)
    if target_size is None:
        if len(sizes) > 1:
            raise RunTableError(f"the table has model sizes {sizes}: pass target_size (the size to predict)")
        return Plan(step_on, False, target_step, int(sizes[0]), **extra)
    target_size = int(target_size)
    if len(sizes) == 1:
        if sizes[0] != target_size:
            raise RunTableError(
                f"the table has one model size ({sizes[0]}); extrapolating to target_size={target_size} "
                f"needs runs at {MIN_SIZES} or more sizes"
            )
        return Plan(step_on, False, target_step, target_size, **extra)
    return Plan(step_on, True, target_step, target_size, **extra)


def run_mixtures_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``run``, ``size``, ``mixture`` label and the ``mix.*`` columns."""
    first = runs.drop_duplicates("run")
    frame = first[["run", "size", *mix_columns(runs)]].reset_index(drop=True)
    frame.insert(2, "mixture", mixture_labels(first).to_numpy())
    return frame


def step_stage(runs: pd.DataFrame, plan: Plan, *, min_step: int, evals, priors: dict) -> Stage:
    """Step law (``plan.step_law``) over every (run, eval) curve, predicting at the target step.

    With schedules, each run is predicted under its own plan (or ``plan.target_schedule``);
    a run whose plan ends before the target step (a short run annealed early, kept to
    inform the annealing term) is fitted but not handed downstream
    (:func:`calibration_runs`; ``Stage.handoff``).
    """
    law = get_law(plan.step_law)
    data = law.prepare(runs, min_step=min_step, evals=evals)
    options = {} if plan.target_schedule is None else {"schedule": plan.target_schedule}
    query = law.query(data, steps=[plan.target_step], **options)
    short = calibration_runs(runs, plan.target_step) if plan.step_law == "anneal" else set()
    handoff = ~query.labels["run"].astype(str).isin(short).to_numpy() if short else None
    return Stage("step", data, query, np.arange(data.n_obs), priors, law_name=plan.step_law, handoff=handoff)


RISE_TOLERANCE = 0.01  # a curve "rises" when its last loss exceeds its lowest by more than this share


def rising_curves(runs: pd.DataFrame, *, min_step: int) -> pd.DataFrame:
    """(run, eval, lowest, last) of every curve whose loss at its last checkpoint exceeds its
    lowest loss at or above ``min_step`` by more than ``RISE_TOLERANCE`` of it: a violation of
    every step law here (e.g. an eval domain absent from training that gets worse)."""
    rows = runs[runs["step"] >= min_step].sort_values("step")
    g = rows.groupby(["run", "eval"], sort=True)["loss"]
    table = pd.DataFrame({"lowest": g.min(), "last": g.last()}).reset_index()
    return table[table["last"] > table["lowest"] * (1 + RISE_TOLERANCE)].reset_index(drop=True)


def calibration_runs(runs: pd.DataFrame, target_step: int) -> set[str]:
    """Runs whose planned schedule ends before ``target_step``, when other runs reach it
    (empty otherwise): they inform the step law but are not runs of the target schedule."""
    short = {run for run, sched in run_schedules(runs).items() if sched.plan_steps < target_step}
    return short if short and len(short) < runs["run"].nunique() else set()


def observed_at_target(runs: pd.DataFrame, *, evals) -> tuple[pd.DataFrame, np.ndarray]:
    """Labels (run, eval, size, step) and losses (P,) at each run's last checkpoint
    (the step stage is skipped only when every run ends at the target step)."""
    rows = runs[runs["step"] == runs.groupby("run")["step"].transform("max")]
    if evals is not None:
        rows = rows[rows["eval"].isin(evals)]
    rows = rows.reset_index(drop=True)
    labels = rows[["run", "eval", "size", "step"]].astype({"run": str, "eval": str})
    return labels, rows["loss"].to_numpy(float)


def with_mixtures(labels: pd.DataFrame, runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``mixture`` and ``mix.*`` columns to per-run labels."""
    extra = runs_frame.drop(columns="size").astype({"run": str})
    out = labels.drop(columns=[c for c in extra.columns if c in labels and c != "run"])
    return out.merge(extra, on="run", how="left", validate="many_to_one")


def size_stage(labels: pd.DataFrame, mean: np.ndarray, plan: Plan, *, priors: dict) -> Stage:
    """Size law over the mixtures' runs at the target step, predicting at the target size.

    ``labels`` (P rows: run, eval, size, mixture, mix.*) and ``mean`` (P,) are the
    step stage's points. Mixtures seen at fewer than two sizes are dropped with a
    warning (their size law cannot be fitted); an error when none is left.
    """
    per_mix = labels.groupby("mixture")["size"].nunique()
    single = sorted(per_mix[per_mix < 2].index)
    keep = ~labels["mixture"].isin(single).to_numpy()
    if single:
        if not keep.any():
            raise RunTableError("the size law needs each mixture at 2 or more model sizes; no mixture is")
        warnings.warn(f"mixture(s) {single[:10]}{' ...' if len(single) > 10 else ''} seen at one model size "
                      "only: left out of the size and mixing stages", UserWarning, stacklevel=3)
    inputs = np.flatnonzero(keep)
    table = labels.iloc[inputs].assign(loss=mean[inputs], step=plan.target_step).reset_index(drop=True)
    law = get_law("size_pooled")
    data = law.prepare(table.drop(columns="mixture"), step=plan.target_step)
    query = law.query(data, sizes=[plan.target_size])
    own = dict(zip(data.obs_index["mixture"].astype(str), table["mixture"].astype(str)))
    return Stage("size", data, query, inputs, priors, labels=own, law_name=law.name)


def size_labels(stage: Stage) -> pd.DataFrame:
    """The size stage's points (mixture, eval, size, mix.*), mixtures labelled as upstream."""
    mixtures = pd.DataFrame(stage.data.meta["mixtures"])
    labels = stage.query.labels.drop(columns="curve").merge(mixtures, on="mixture", how="left")
    return labels.assign(mixture=labels["mixture"].astype(str).map(stage.labels or {}).fillna(labels["mixture"]))


def mix_stage(labels: pd.DataFrame, mean: np.ndarray, plan: Plan, *, unit: str, weights, priors: dict) -> Stage:
    """Mixing law M4 over the upstream points at (target size, target step).

    ``unit`` names the label column that identifies one observed mixture run
    (``mixture`` after the size stage, ``run`` when the size stage is skipped).
    """
    table = labels.assign(loss=mean, size=plan.target_size, step=plan.target_step)
    table = table.assign(run=table[unit].astype(str))[["run", "size", "step", "eval", "loss", *mix_columns(labels)]]
    law = get_law("mix")
    data = law.prepare(table.reset_index(drop=True), weights=weights)
    return Stage("mix", data, None, np.arange(len(table)), priors)


def lane_model(stage: Stage, meas_sd: np.ndarray | None = None):
    """The stage's numpyro model of one dataset, its lane-invariant arrays, and a cache key.

    Returns ``(model, static, key)``: ``model(batch)`` reads the observations
    ``batch["y"]`` (n_obs,) and every data array from ``batch`` (``static`` holds
    them, to be repeated over lanes); only integers and priors are captured, so
    ``key`` identifies the compiled program (see :class:`bayesmix.inference.lanes.LaneSampler`).
    """
    static = {k: np.asarray(v, float if k in ("loss_scale",) else None) for k, v in stage.data.arrays.items()
              if isinstance(v, (np.ndarray, float))}
    ints = {k: int(v) for k, v in stage.data.arrays.items() if isinstance(v, (int, np.integer))}
    if meas_sd is not None:
        static["meas_sd"] = np.asarray(meas_sd, float)
    law_model = stage.law.model
    priors = dict(stage.priors)

    def model(batch):
        data = {k: v for k, v in batch.items() if k != "y"}
        law_model({**data, **ints}, priors, y=batch["y"])

    key = (stage.name, tuple(sorted(priors.items())), tuple(sorted(ints.items())), meas_sd is not None)
    return model, static, key


def init_values(stage: Stage, y: np.ndarray, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NUTS start values of the stage's model from a point fit on ``y``."""
    data = dataclasses.replace(stage.data, y=np.asarray(y, float))
    return stage.law.init_values(data, point, stage.priors)


def point_fit(stage: Stage, y: np.ndarray, *, seed: int, n_starts: int) -> dict[str, np.ndarray]:
    """The law's multi-start Huber fit on observations ``y`` (n_obs,)."""
    return stage.law.point_fit(dataclasses.replace(stage.data, y=np.asarray(y, float)), seed=seed, n_starts=n_starts)


def sample_stage(stage: Stage, values: np.ndarray, *, config: SamplerConfig, seed: int, n_starts: int = 16,
                 meas_sd: np.ndarray | None = None, warm_start: WarmStart | None = None,
                 progress: bool | None = False, desc: str | None = None) -> LaneSamples:
    """NUTS on every dataset (row) of ``values`` (K, n_obs) in one vmapped run.

    Every lane starts at the point fit of the mean dataset, or from ``warm_start``
    (see :mod:`bayesmix.inference.lanes`; no point fit is needed then). ``progress``: a bar of the
    iterations named ``desc`` (default the stage's name). Run inside x64.
    """
    init = None
    if warm_start is None:
        mean = values.mean(axis=0)
        init = init_values(stage, mean, point_fit(stage, mean, seed=seed, n_starts=n_starts))
    model, static, key = lane_model(stage, meas_sd)
    K = values.shape[0]
    batch = {"y": values, **{k: np.broadcast_to(v, (K,) + v.shape) for k, v in static.items()}}
    sampler = LaneSampler(model, {k: v[0] for k, v in batch.items()}, config=config, init_values=init,
                          keep=tuple(stage.law.param_dims), seed=seed, cache_key=key)
    return sampler(batch, seed=seed + 1, warm_start=warm_start, progress=progress, desc=desc or stage.name)


def predict_stage(stage: Stage, params: dict[str, np.ndarray], query: Query | None = None) -> np.ndarray:
    """Law mean at the stage's query for every parameter draw: (draws, points). Run inside x64."""
    return np.asarray(stage.law.mean_draws(params, query or stage.query, stage.data.meta))


def propagate(pred: np.ndarray, n_lanes: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into pooled predictions (lane-major) that become the next stage's datasets.

    With one lane: ``n_draws`` draws (without replacement when there are
    enough). With ``n_draws`` lanes: one random draw of each lane's own posterior,
    so that dataset d of the next stage descends from dataset d of this one.
    """
    per_lane = pred.shape[0] // n_lanes
    if n_lanes == 1:
        return rng.choice(per_lane, size=n_draws, replace=n_draws > per_lane)
    if n_lanes != n_draws:
        raise ValueError(f"cannot propagate {n_lanes} lanes into {n_draws} datasets")
    return np.arange(n_lanes) * per_lane + rng.integers(per_lane, size=n_lanes)


BOOTSTRAP_FIT = {"max_iter": 100, "tol": 1e-6}  # refits start near the optimum; looser than the main fit


def stacked_point_fit(stage: Stage, ys: np.ndarray, *, seed: int, n_starts: int) -> dict[str, np.ndarray]:
    """Point fits of B datasets ``ys`` (B, n_obs) in one call: params with a leading B axis.

    The B copies of the stage's groups (curves for power laws, eval domains for
    the mixing law) are stacked into one multi-start fit (L-BFGS settings
    ``BOOTSTRAP_FIT``).
    """
    B = ys.shape[0]
    a = stage.data.arrays
    group = stage.law.fit_group
    n_groups = len(stage.data.coords[group])
    per_obs = {k for k, v in a.items() if isinstance(v, np.ndarray) and v.shape == (stage.data.n_obs,)}
    arrays = {k: np.tile(v, B) if k in per_obs else v for k, v in a.items()}
    arrays[group] = (a[group][None, :] + n_groups * np.arange(B)[:, None]).ravel()
    coords = dict(stage.data.coords, **{group: list(range(B * n_groups))})
    data = dataclasses.replace(stage.data, arrays=arrays, coords=coords, y=np.asarray(ys, float).ravel())
    point = stage.law.point_fit(data, seed=seed, n_starts=n_starts, **BOOTSTRAP_FIT)
    return {k: v.reshape((B, n_groups) + v.shape[1:]) for k, v in point.items()}


def fitted_at_obs(stage: Stage, params: dict[str, np.ndarray]) -> np.ndarray:
    """Law mean at the stage's own observations for every parameter draw: (draws, n_obs)."""
    return np.asarray(stage.law.fitted(params, stage.data))


def resample_residuals(resid: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` residual-bootstrap draws (n, n_obs): each observation takes a residual drawn
    with replacement from the (mean-centred) residuals of its own group (eval domain)."""
    out = np.empty((n, resid.size))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        pool = resid[idx] - resid[idx].mean()
        out[:, idx] = rng.choice(pool, size=(n, idx.size), replace=True)
    return out

