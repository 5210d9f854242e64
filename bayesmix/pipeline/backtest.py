"""Each stage replays its own extrapolation inside the data (point fits, no sampler).

* **step**: every curve fitted on its checkpoints up to ``STEP_CUT`` of its run's last
  checkpoint (the same step law, the schedule included); predicted at the last one.
  Distance: log(last step / last step kept).
* **size**: the size law fitted on the k smallest sizes of each mixture, predicted at the
  next size (every k from ``MIN_SIZES``), on the losses at each run's last checkpoint.
  Distance: log(size predicted / largest size fitted). Needs ``MIN_SIZES + 1`` sizes.
* **mix**: the mixing law fitted without one mixture, predicted at it, on the mixing
  stage's own inputs. Distance: total variation to the nearest remaining mixture. With more
  than ``MAX_LEFT_OUT`` mixtures, the farthest half and a seeded draw of the rest. The
  exponential law can extrapolate without bound from few mixtures; a prediction is clipped
  to the remaining mixtures' range widened by that range on each side (a miss no larger
  than a guess that knows only the range), so one blow-up widens the scale, not overflows it.

Every miss is on a weighted loss ``sum_e w_e L_e``: the overall loss (the quantity decisions
are made on) and, with several eval domains, each eval domain alone (w = 1 on it), from the
same replayed fits: ``miss = observed - predicted``. Errors of the eval domains partly cancel
in the overall, so one domain's own misses can be wider than its share of the overall's; each
gets its own discrepancy. Each stage's ``noise`` is the in-sample residual sd of that loss; a
replayed step or size prediction also has its own spread ``sd``, from a residual bootstrap of
the replayed fit (``BOOT`` refits), so that only the misses beyond the fit's own uncertainty
count as discrepancy (:class:`bayesmix.pipeline.discrepancy.Backtest`). The mixing law's
replays have no bootstrap (a leave-one-out fit per mixture is the cost already): their misses
count whole, which widens intervals away from the tried mixtures only.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
import pandas as pd

from bayesmix.pipeline import stages as st
from bayesmix.pipeline.discrepancy import PRIOR_SHARE, Backtest, Discrepancy
from bayesmix.laws.mixing import OVERALL
from bayesmix.laws.mixtures import mix_columns
from bayesmix.laws.size import MIN_SIZES
from bayesmix.decide.support import nearest_distance

STEP_CUT = 0.5
MIN_CHECKPOINTS = 3
MAX_LEFT_OUT = 24
BOOT = 16  # residual-bootstrap refits of a replayed step or size fit
BOOT_STARTS = 2


def overall(frame: pd.DataFrame, value: str, weights: dict[str, float], by: str) -> pd.Series:
    """``sum_e w_e frame[value]`` per ``by`` (units missing an eval domain are dropped; :func:`overall_matrix`)."""
    units, W = overall_matrix(frame, weights, by)
    return pd.Series(W @ frame[value].to_numpy(float), index=units)


def overall_noise(resid: np.ndarray, evals: np.ndarray, weights: dict[str, float], names: list[str]) -> float:
    """sd of the overall loss's residual, ``sqrt(sum_e w_e^2 mean(resid_e^2))`` (evals independent)."""
    total = 0.0
    for e, name in enumerate(names):
        pick = evals == e
        if pick.any() and name in weights:
            total += weights[name] ** 2 * float(np.mean(resid[pick] ** 2))
    return float(np.sqrt(total))


def _backtest(stage: str, rows: list[pd.DataFrame], noise: list[float], level: float) -> Backtest | None:
    if not rows:
        return None
    misses = pd.concat(rows, ignore_index=True)
    misses["miss"] = misses["observed"] - misses["predicted"]
    return Backtest(stage, misses, float(np.sqrt(np.mean(np.square(noise)))), PRIOR_SHARE[stage] * level)


def _backtests(stage: str, rows: dict[str, list], noise: dict[str, list], levels: dict[str, float]) -> dict:
    """One :class:`Backtest` (or None) per weighting, from its replayed rows and noises."""
    return {name: _backtest(stage, rows[name], noise[name], levels[name]) for name in levels}


def weightings(weights: dict[str, float]) -> dict[str, dict[str, float]]:
    """The weighted losses to backtest: ``OVERALL`` (``weights``) and, with several eval
    domains, each one alone (``{e: 1.0}``)."""
    out = {OVERALL: dict(weights)}
    if len(weights) > 1:
        out.update({e: {e: 1.0} for e in weights})
    return out


def last_losses(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows at each run's last checkpoint."""
    return runs[runs["step"] == runs.groupby("run")["step"].transform("max")]


def overall_matrix(labels: pd.DataFrame, weights: dict[str, float], by: str) -> tuple[pd.Index, np.ndarray]:
    """Units (``by``) with every eval domain among the points ``labels`` (P rows: ``by``, eval),
    and W (U, P) with W[u, p] = w_e when point p is unit u's eval e: overall = W @ values."""
    keys = labels[by].astype(str).to_numpy()
    evals = labels["eval"].astype(str).to_numpy()
    count = pd.Series(keys[np.isin(evals, list(weights))]).value_counts()
    units = pd.Index(sorted(count[count == len(weights)].index))
    W = np.zeros((len(units), len(labels)))
    rows = units.get_indexer(keys)
    for p, (u, e) in enumerate(zip(rows, evals)):
        if u >= 0 and e in weights:
            W[u, p] = weights[e]
    return units, W


def replay(stage: st.Stage, *, seed: int, n_starts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stage's point fit and a residual bootstrap of it (``BOOT`` refits, as the point chain
    does): (prediction at the query (P,), bootstrap predictions (BOOT, P), residuals (n_obs,))."""
    with warnings.catch_warnings(), jax.enable_x64(True):
        warnings.simplefilter("ignore")
        point = {k: np.asarray(v)[None] for k, v in
                 st.point_fit(stage, stage.data.y, seed=seed, n_starts=n_starts).items()}
        pred = st.predict_stage(stage, point)[0]
        fitted = st.fitted_at_obs(stage, point)[0]
        resid = stage.data.y - fitted
        ys = fitted[None, :] + st.resample_residuals(resid, stage.data.arrays["eval"], BOOT,
                                                      np.random.default_rng(seed))
        boot = st.predict_stage(stage, st.stacked_point_fit(stage, ys, seed=seed + 1, n_starts=BOOT_STARTS))
    return pred, boot, resid


def replayed_misses(labels: pd.DataFrame, pred: np.ndarray, boot: np.ndarray, observed: pd.Series,
                    distance, weights: dict[str, float], by: str) -> pd.DataFrame:
    """unit, distance, predicted, sd (bootstrap), observed of every unit with all eval domains
    predicted and observed; ``distance`` a scalar or a Series by unit."""
    units, W = overall_matrix(labels, weights, by)
    units_seen = units.intersection(observed.index)
    pick = units.get_indexer(units_seen)
    x = distance[units_seen].to_numpy(float) if isinstance(distance, pd.Series) else np.full(len(pick), distance)
    return pd.DataFrame({"unit": units_seen, "distance": x, "predicted": (W @ pred)[pick],
                         "sd": (boot @ W.T).std(axis=0, ddof=1)[pick], "observed": observed[units_seen].to_numpy()})


def step_backtest(runs: pd.DataFrame, plan: st.Plan, *, min_step: int, evals, priors: dict,
                  weightings: dict[str, dict[str, float]], levels: dict[str, float], seed: int,
                  n_starts: int) -> dict[str, Backtest | None]:
    """First ``STEP_CUT`` of every curve -> its last checkpoint (module docstring); one
    backtest per weighting (:func:`weightings`)."""
    last = runs.groupby("run")["step"].transform("max")
    kept = runs[(runs["step"] <= STEP_CUT * last) & (runs["step"] >= min_step)]
    enough = kept.groupby("run")["step"].nunique()
    kept = kept[kept["run"].isin(enough[enough >= MIN_CHECKPOINTS].index)]
    observed = {name: overall(last_losses(runs), "loss", w, "run") for name, w in weightings.items()}
    rows, noise = {name: [] for name in weightings}, {name: [] for name in weightings}
    for target, group in kept.groupby(kept["run"].map(runs.groupby("run")["step"].max())):
        sub = dataclasses.replace(plan, step=True, target_step=int(target), target_schedule=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stage = st.step_stage(group, sub, min_step=min_step, evals=evals, priors=priors)
        pred, boot, resid = replay(stage, seed=seed, n_starts=n_starts)
        kept_last = group.groupby(group["run"].astype(str))["step"].max()
        for name, w in weightings.items():
            rows[name].append(replayed_misses(stage.query.labels, pred, boot, observed[name],
                                              np.log(target / kept_last), w, "run"))
            noise[name].append(overall_noise(resid, stage.data.arrays["eval"], w, list(stage.data.coords["eval"])))
    return _backtests("step", rows, noise, levels)


def size_backtest(runs: pd.DataFrame, plan: st.Plan, *, evals, priors: dict,
                  weightings: dict[str, dict[str, float]], levels: dict[str, float], seed: int,
                  n_starts: int) -> dict[str, Backtest | None]:
    """Sizes 1..k of each mixture -> size k+1, for every k >= ``MIN_SIZES`` (module docstring);
    one backtest per weighting (:func:`weightings`)."""
    ends = last_losses(runs if evals is None else runs[runs["eval"].isin(evals)])
    frame = st.run_mixtures_frame(runs)
    labels = st.with_mixtures(ends[["run", "eval", "size", "step"]].astype({"run": str, "eval": str})
                              .reset_index(drop=True), frame)
    loss = ends["loss"].to_numpy(float)
    sizes = sorted(labels["size"].unique())
    rows, noise = {name: [] for name in weightings}, {name: [] for name in weightings}
    for k in range(MIN_SIZES, len(sizes)):
        fit = (labels["size"] < sizes[k]).to_numpy()
        sub = dataclasses.replace(plan, size=True, target_size=int(sizes[k]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stage = st.size_stage(labels[fit].reset_index(drop=True), loss[fit], sub, priors=priors)
        except Exception:  # too few sizes per mixture below this one: nothing to replay
            continue
        pred, boot, resid = replay(stage, seed=seed, n_starts=n_starts)
        at = (labels["size"] == sizes[k]).to_numpy()
        for name, w in weightings.items():
            observed = overall(labels[at].assign(loss=loss[at]), "loss", w, "mixture")
            rows[name].append(replayed_misses(st.size_labels(stage), pred, boot, observed,
                                              np.log(sizes[k] / sizes[k - 1]), w, "mixture"))
            noise[name].append(overall_noise(resid, stage.data.arrays["eval"], w, list(stage.data.coords["eval"])))
    return _backtests("size", rows, noise, levels)


def left_out_units(r: np.ndarray, *, seed: int, limit: int = MAX_LEFT_OUT) -> np.ndarray:
    """Indices of the mixtures to leave out: all when at most ``limit``, else the farthest
    half (by distance to the nearest other) and a seeded draw of the rest."""
    n = len(r)
    if n <= limit:
        return np.arange(n)
    order = np.argsort(-nearest_distance(r), kind="stable")
    far = order[: limit // 2]
    rest = np.random.default_rng(seed).choice(order[limit // 2:], size=limit - far.size, replace=False)
    return np.sort(np.concatenate([far, rest]))


def widened_range(values: pd.Series) -> tuple[float, float]:
    """``(min - span, max + span)`` with span = max - min."""
    lo, hi = float(values.min()), float(values.max())
    return lo - (hi - lo), hi + (hi - lo)


def mix_backtest(labels: pd.DataFrame, mean: np.ndarray, plan: st.Plan, *, unit: str, weights: dict[str, float],
                 weightings: dict[str, dict[str, float]], priors: dict, levels: dict[str, float], seed: int,
                 n_starts: int) -> dict[str, Backtest | None]:
    """Leave one mixture out of the mixing law (fitted with the eval ``weights``), predict it
    (module docstring); one backtest per weighting (:func:`weightings`)."""
    cols = mix_columns(labels)
    units = labels[[unit, *cols]].drop_duplicates(unit).reset_index(drop=True)
    r = units[cols].to_numpy(float)
    observed = {name: overall(labels.assign(value=mean), "value", w, unit) for name, w in weightings.items()}
    nearest = nearest_distance(r)
    rows, noise = {name: [] for name in weightings}, {name: [] for name in weightings}
    none = {name: None for name in weightings}
    with warnings.catch_warnings(), jax.enable_x64(True):
        warnings.simplefilter("ignore")
        full = st.mix_stage(labels, mean, plan, unit=unit, weights=weights, priors=priors)
        point = {k: np.asarray(v)[None] for k, v in st.point_fit(full, full.data.y, seed=seed,
                                                                   n_starts=n_starts).items()}
        resid = full.data.y - st.fitted_at_obs(full, point)[0]
        for name, w in weightings.items():
            noise[name].append(overall_noise(resid, full.data.arrays["eval"], w, list(full.data.coords["eval"])))
        for i in left_out_units(r, seed=seed):
            name = str(units[unit].iloc[i])
            keep = (labels[unit].astype(str) != name).to_numpy()
            try:
                stage = st.mix_stage(labels[keep].reset_index(drop=True), mean[keep], plan, unit=unit,
                                     weights=weights, priors=priors)
            except Exception:  # too few mixtures left for the law: nothing to replay
                return none
            fit = {k: np.asarray(v)[None] for k, v in st.point_fit(stage, stage.data.y, seed=seed,
                                                                     n_starts=n_starts).items()}
            query = stage.law.query(stage.data, mixtures=units.iloc[[i]].rename(columns={unit: "mixture"}))
            pred = st.predict_stage(stage, fit, query)[0]
            for label, w in weightings.items():
                seen = observed[label]
                predicted = overall(query.labels.astype({"eval": str}).assign(value=pred, unit=name), "value",
                                    w, "unit").clip(*widened_range(seen.drop(name, errors="ignore")))
                rows[label].append(pd.DataFrame({"unit": [name], "distance": [nearest[i]],
                                                 "predicted": predicted.to_numpy(),
                                                 "observed": [seen.get(name, np.nan)]}))
    return _backtests("mix", rows, noise, levels)


def target_distances(runs: pd.DataFrame, plan: st.Plan, handed_off_runs: list[str] | None = None) -> dict:
    """x_step = max(0, log(S* / the earliest last step of the runs handed downstream)) and
    x_size = min_i |log(N* / N_i)| (0 for a stage that does not run)."""
    last = runs.groupby(runs["run"].astype(str))["step"].max()
    if handed_off_runs is not None:
        last = last[last.index.isin(handed_off_runs)]
    x_step = max(0.0, float(np.log(plan.target_step / last.min()))) if plan.step else 0.0
    sizes = np.asarray(sorted(runs["size"].unique()), float)
    x_size = float(np.min(np.abs(np.log(plan.target_size / sizes)))) if plan.size else 0.0
    return {"step": x_step, "size": x_size}


def fit_discrepancy(runs: pd.DataFrame, plan: st.Plan, mix_input: tuple[pd.DataFrame, np.ndarray, str], *,
                    tried: np.ndarray, weights: dict[str, float], priors: dict, min_step: int, evals,
                    handed_off_runs: list[str] | None, seed: int, n_starts: int = 4) -> Discrepancy:
    """Run every stage's backtest and build the :class:`bayesmix.pipeline.discrepancy.Discrepancy`
    of the overall loss, with one per eval domain in its ``evals`` when there are several.

    ``mix_input``: (labels, mean values, unit) the mixing stage was fitted on; ``tried``
    (k, M): its mixtures; ``priors``: per stage. The typical loss of each weighting (median over
    the mixing stage's inputs) sets its prior scales."""
    labels, mean, unit = mix_input
    weighted = weightings(weights)
    levels = {name: float(np.median(overall(labels.assign(value=mean), "value", w, unit)))
              for name, w in weighted.items()}
    per_stage = {}
    if plan.step:
        per_stage["step"] = step_backtest(runs, plan, min_step=min_step, evals=evals, priors=priors["step"],
                                          weightings=weighted, levels=levels, seed=seed, n_starts=n_starts)
    if plan.size:
        per_stage["size"] = size_backtest(runs, plan, evals=evals, priors=priors["size"], weightings=weighted,
                                          levels=levels, seed=seed, n_starts=n_starts)
    per_stage["mix"] = mix_backtest(labels, mean, plan, unit=unit, weights=weights, weightings=weighted,
                                    priors=priors["mix"], levels=levels, seed=seed, n_starts=n_starts)
    distances = target_distances(runs, plan, handed_off_runs)

    def build(name: str) -> Discrepancy:
        backtests = {}
        for stage, by_weighting in per_stage.items():
            backtests[stage] = by_weighting[name] or Backtest(  # nothing to replay: the scale keeps its prior
                stage, pd.DataFrame(columns=["unit", "distance", "predicted", "observed", "miss"]), 0.0,
                PRIOR_SHARE[stage] * levels[name])
        return Discrepancy.build(backtests, distances, tried, seed=seed)

    per_eval = {name: build(name) for name in weighted if name != OVERALL}
    return dataclasses.replace(build(OVERALL), evals=per_eval)


__all__ = ["fit_discrepancy", "mix_backtest", "size_backtest", "step_backtest", "target_distances", "weightings"]
