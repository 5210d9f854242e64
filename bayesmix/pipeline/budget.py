"""Error budget of the nested pipeline: which stage the final uncertainty comes from.

With V(.) the predictive variance of the target-scale loss at the observed
mixtures (averaged over mixtures, for the overall loss or one eval domain), two
methods share it among the stages.

``method="split"`` (the default; no refit). In draws mode lane d of a stage is fitted
on upstream dataset d, and each lane's spread is brought to the stage's own noise
(:mod:`bayesmix.pipeline.lanenoise`), so the law of total variance splits the pooled
predictive at each mixture m exactly into the stage's own part and the upstream part:

    V_m = W_m + B_m,   W_m = mean_d Var_s L_dsm (within lanes),   B_m = Var_d mean_s L_dsm (between)

The mixing stage's W is its own share; its B is the upstream's, shared between the
step and size stages by the same split of the size stage's output (its between-lane
part is the step stage's), at each mixture for the loss budgeted (the overall:
sum_e w_e^2 B_me / sum_e w_e^2 V_me, cross-eval covariances left out):

    share_step = mean_m B_m f_m / mean_m V_m,   share_size = mean_m B_m (1 - f_m) / mean_m V_m,
    share_mix  = mean_m W_m / mean_m V_m,       f_m = B^size_m / V^size_m

``method="refit"`` switches a stage's uncertainty off and refits downstream:

    V_full   all stages propagated (the ``draws`` result)
    V_nostep step-stage output collapsed to its posterior mean, size and mixing refitted
    V_mix    step and size outputs collapsed to their means, mixing law refitted

    share_step = (V_full - V_nostep) / V_full
    share_size = (V_nostep - V_mix)  / V_full
    share_mix  =  V_mix              / V_full

Both agree when the downstream fits are near-linear in their data; the split is
exact for the pooled draws and free, the refit refits the mixing law twice (and the
size law once) and carries their Monte Carlo noise. Differences below zero (Monte
Carlo noise) are set to zero and the shares renormalised, so they are non-negative
and sum to one. A skipped stage has share zero. The recommendation names the stage
with the largest share.

With an extrapolation discrepancy (:mod:`bayesmix.pipeline.discrepancy`), its variance at the observed
mixtures, V_disc, is a fourth row: the law shares are scaled by V_full / (V_full + V_disc) and
``share_discrepancy = V_disc / (V_full + V_disc)``; when it is the largest, the advice names
the stage whose backtests contribute most of it.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from bayesmix.inference.lanes import lane_variance_split
from bayesmix.pipeline import stages as st

RECOMMENDATIONS = {
    "step": "most of the uncertainty comes from extrapolating in training steps: train the proxy runs longer "
            "(later checkpoints) or add checkpoints",
    "size": "most of the uncertainty comes from extrapolating in model size: add a model size closer to the target",
    "mix": "most of the uncertainty comes from the mixing law: run more mixtures at the proxy scale "
           "(see the design step for which)",
}
DISCREPANCY_ADVICE = {
    "step": "train a few proxy runs further along the target's schedule, so the step law extrapolates less",
    "size": "add a model size closer to the target (and a fourth size, so the size law can be backtested)",
    "mix": "run mixtures nearer the ones you want to choose between",
}


@dataclasses.dataclass(frozen=True)
class ErrorBudget:
    """``table``: stage, fitted, variance attributed (share x V_full), share;
    ``recommendation``: one line; ``eval``: the loss it refers to; ``variances``:
    V_full, V_nostep and V_mix by name; ``method``: how they were found ("split" or "refit")."""

    table: pd.DataFrame
    recommendation: str
    eval: str
    variances: dict
    method: str = "split"

    def to_dict(self) -> dict:
        return {"eval": self.eval, "method": self.method, "recommendation": self.recommendation,
                "variances": self.variances,
                "stages": self.table.to_dict(orient="records")}


def shares(v_full: float, v_nostep: float, v_mix: float) -> np.ndarray:
    """(step, size, mix) shares from the three variances; non-negative, summing to one."""
    raw = np.array([v_full - v_nostep, v_nostep - v_mix, v_mix], dtype=float)
    raw = np.where(np.isfinite(raw), np.maximum(raw, 0.0), 0.0)
    total = raw.sum()
    if total <= 0:
        raise ValueError(f"the predictive variances ({v_full}, {v_nostep}, {v_mix}) leave no budget to share")
    return raw / total


METHODS = ("split", "refit")


def upstream_step_fraction(size_split: np.ndarray, labels: pd.DataFrame, mixtures, eval: str,
                           weights: dict[str, float]) -> np.ndarray:
    """Per mixture (in the order of ``mixtures``), the share of the size stage's predictive
    variance between its lanes (the step stage's): f = sum_e w_e^2 B_e / sum_e w_e^2 V_e over
    the eval domains the loss ``eval`` weighs (``weights``, eval -> w_e), from ``size_split``
    (2, P) on the size output's ``labels`` (mixture, eval)."""
    frame = labels[["mixture", "eval"]].assign(within=size_split[0], between=size_split[1])
    frame["w2"] = frame["eval"].map(weights).fillna(0.0) ** 2
    frame = frame.assign(between=frame["between"] * frame["w2"],
                         total=(frame["within"] + frame["between"]) * frame["w2"])
    sums = frame.groupby("mixture")[["between", "total"]].sum().reindex(list(mixtures))
    if sums.isna().any().any():
        raise ValueError("the size stage's output does not cover every observed mixture")
    return np.where(sums["total"] > 0, sums["between"] / sums["total"].where(sums["total"] > 0, 1.0), 0.0)


def split_variances(result, mixtures: pd.DataFrame, eval: str) -> tuple[float, float, float]:
    """(step, size, mix) variances by the law of total variance (module docstring,
    ``method="split"``), averaged over ``mixtures``."""
    from bayesmix.laws.mixing import OVERALL
    from bayesmix.pipeline.lanenoise import mix_predictions

    stage = result.stages["mix"]
    query = stage.law.query(stage.data, mixtures=mixtures)
    with jax.enable_x64(True):
        pred = mix_predictions(stage, result.params, query, result.lane_of_draw, result.lane_ratio)
    pick = query.labels["eval"].to_numpy() == eval
    if result.lane_ratio is None:  # one fit on a deterministic upstream: nothing between lanes
        within, between = pred[:, pick].var(axis=0), np.zeros(int(pick.sum()))
    else:
        within, between = lane_variance_split(pred[:, pick], result.lane_of_draw)
    names = list(stage.data.coords["eval"])
    weights = dict(zip(names, stage.data.meta["weights"])) if eval == OVERALL else {eval: 1.0}
    if "size" in result.stages and "step" in result.stages:
        size_out = result.outputs["size"]
        if size_out.lane_split is None:
            raise ValueError("this pipeline's size stage kept no split of its variance over lanes (saved by an "
                             "older version, or fitted on one dataset): use method='refit'")
        f = upstream_step_fraction(size_out.lane_split, size_out.labels,
                                   query.labels.loc[pick, "mixture"], eval, weights)
    else:
        f = np.full(within.shape, 1.0 if "step" in result.stages else 0.0)
    return float((between * f).mean()), float((between * (1 - f)).mean()), float(within.mean())


def mean_variance(stage: st.Stage, params: dict[str, np.ndarray], mixtures: pd.DataFrame, eval: str,
                  lane_of_draw: np.ndarray | None = None, lane_ratio: np.ndarray | None = None) -> float:
    """Predictive variance of ``eval`` averaged over ``mixtures`` (lanes brought to the
    stage's own noise by ``lane_ratio`` when given, see :func:`bayesmix.pipeline.lanenoise.mix_predictions`)."""
    from bayesmix.pipeline.lanenoise import mix_predictions

    query = stage.law.query(stage.data, mixtures=mixtures)
    with jax.enable_x64(True):
        pred = mix_predictions(stage, params, query, lane_of_draw, lane_ratio)
    pick = query.labels["eval"].to_numpy() == eval
    return float(pred[:, pick].var(axis=0, ddof=1).mean())


def discrepancy_variance(result, eval: str) -> tuple[float, str | None]:
    """Variance of the discrepancy at the observed mixtures, averaged over them (for ``eval``: the
    overall's delta, or the eval domain's own: :meth:`PipelineResult.eval_discrepancy`), and the
    stage contributing most of it at the target (None without a discrepancy)."""
    from bayesmix.laws.mixtures import mix_columns

    if result.discrepancy is None:
        return 0.0, None
    disc, per = result.eval_discrepancy(eval)
    mixtures = result.observed_mixtures()
    delta = disc.draws(mixtures[mix_columns(mixtures)].to_numpy(float), result.n_draws_total)
    table = disc.table().set_index("stage")["target_sd"].fillna(0.0)
    return float((per * delta).var(axis=0, ddof=1).mean()), str(table.idxmax()) if len(table) else None


def collapsed(output):
    """A stage output with its datasets replaced by their mean (one deterministic dataset)."""
    return dataclasses.replace(output, values=output.values.mean(axis=0)[None], sd=None)


def refit_variances(result, mixtures: pd.DataFrame, eval: str, seed: int) -> tuple[float, float, float]:
    """(V_full, V_nostep, V_mix) by refitting with upstream stages collapsed (module docstring,
    ``method="refit"``)."""
    from bayesmix.pipeline.runners import run_mix, run_size

    pipeline, plan = result.pipeline, result.plan
    priors = pipeline.stage_priors(plan.step_law)
    rng = np.random.default_rng(seed)
    v_full = mean_variance(result.stages["mix"], result.params, mixtures, eval, result.lane_of_draw,
                           result.lane_ratio)
    unit = "mixture" if plan.size else "run"
    size_out = result.outputs.get("size")
    if "step" in result.stages:
        step_mean = collapsed(result.outputs["step"])
        if plan.size:
            size_out = run_size(pipeline, plan, step_mean, priors["size"], seed=seed + 11, rng=rng).output
            up = size_out
        else:
            up = step_mean
        mix = run_mix(pipeline, plan, up, unit, priors["mix"], seed=seed + 12, rng=rng)
        v_nostep = mean_variance(mix.stage, mix.params, mixtures, eval, mix.lane_of_draw, mix.lane_ratio)
    else:
        v_nostep = v_full
    if plan.size:
        mix = run_mix(pipeline, plan, collapsed(size_out), unit, priors["mix"], seed=seed + 13, rng=rng)
        v_mix = mean_variance(mix.stage, mix.params, mixtures, eval, mix.lane_of_draw, mix.lane_ratio)
    else:
        v_mix = v_nostep
    return v_full, v_nostep, v_mix


def error_budget(result, *, seed: int = 0, evals=None, method: str = "split") -> ErrorBudget:
    """Share the final predictive variance among the stages; see module docstring.

    ``result`` must come from ``mode="draws"``. ``evals``: the eval domain to
    budget (default: the overall loss, or the only eval domain). ``method``: ``"split"``
    (law of total variance over the lanes, no refit) or ``"refit"`` (stages switched off
    and refitted; ``seed`` seeds those refits).
    """
    from bayesmix.laws.mixing import OVERALL

    if result.mode != "draws":
        raise ValueError(f"the error budget needs a pipeline fitted with mode='draws', not {result.mode!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    names = result.evals
    eval = evals or (OVERALL if len(names) > 1 else names[0])
    if eval != OVERALL and eval not in names:
        raise ValueError(f"unknown eval {eval!r}; the pipeline has {names + [OVERALL]}")
    mixtures = result.observed_mixtures()
    if method == "refit":
        v_full, v_nostep, v_mix = refit_variances(result, mixtures, eval, seed)
    else:
        v_step, v_size, v_own = split_variances(result, mixtures, eval)
        v_full, v_nostep, v_mix = v_step + v_size + v_own, v_size + v_own, v_own
    share = shares(v_full, v_nostep, v_mix)
    v_disc, source = discrepancy_variance(result, eval)
    stages = ["step", "size", "mix"] + (["discrepancy"] if result.discrepancy is not None else [])
    total = v_full + v_disc
    if result.discrepancy is not None:
        share = np.append(share * v_full / total, v_disc / total)
    table = pd.DataFrame({
        "stage": stages,
        "fitted": [name in result.stages or name == "discrepancy" for name in stages],
        "variance": share * total,
        "share": share[:len(stages)],
    })
    top = table["stage"][int(np.argmax(table["share"]))]
    if top == "discrepancy":
        advice = (f"most of the uncertainty comes from the laws' own extrapolation error, measured by the "
                  f"backtests (mostly the {source} stage's): {DISCREPANCY_ADVICE[source]}")
    else:
        advice = RECOMMENDATIONS[top]
    variances = {"all_stages": v_full, "step_off": v_nostep, "step_and_size_off": v_mix, "discrepancy": v_disc}
    return ErrorBudget(table, advice, eval, variances, method)
