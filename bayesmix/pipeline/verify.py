"""Check predictions against real runs at the target scale.

    truth = target_truth(result, held_out_runs)        # one row per (run, eval): observed vs predicted
    coverage_summary(truth)                            # coverage of the intervals, MAE, mean miss
    truth = verify(result, {"best": {...}}, size="1.2M", steps=2400, **train_settings)   # train, then check

A held-out run was trained at the pipeline's target size to its target step
and never fitted. Its measured loss on eval e, ``y_e``, and the overall loss
``sum_e w_e y_e`` (the pipeline's weights) are compared with the pipeline's
*observation* predictive at its mixture (law mean plus the mixing law's noise:
a real run is one noisy measurement). A run is covered when ``lower <= y <=
upper`` for the central ``prob`` interval.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayesmix.data.table import validate_runs
from bayesmix.laws.overall import OVERALL, weighted_overall
from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns
from bayesmix.decide.support import support_table


def observed_at(runs: pd.DataFrame, *, size: int, step: int, evals: list[str],
                weights: np.ndarray) -> pd.DataFrame:
    """Per (run, eval) the loss at ``step`` of runs of ``size``, with the weighted ``overall``
    row when there are several evals: columns ``run, eval, observed, mix.*``.

    Raises ValueError when no run of that size reached that step, or a run lacks an eval."""
    rows = runs[(runs["size"] == size) & (runs["step"] == step)]
    if rows.empty:
        raise ValueError(f"no run of size {size:,} has a checkpoint at step {step:,}: nothing to check against")
    wide = rows.pivot_table(index="run", columns="eval", values="loss", aggfunc="first")
    missing = [e for e in evals if e not in wide.columns]
    if missing:
        raise ValueError(f"the held-out runs lack eval domain(s) {missing}; the pipeline predicts {evals}")
    wide = wide[evals].dropna()
    long = wide.reset_index().melt(id_vars="run", var_name="eval", value_name="observed")
    if len(evals) > 1:
        overall = pd.DataFrame({"run": wide.index, "eval": OVERALL, "observed": weighted_overall(wide.to_numpy(), weights)})
        long = pd.concat([long, overall], ignore_index=True)
    mixtures = rows.drop_duplicates("run").set_index("run")[mix_columns(rows)]
    return long.join(mixtures, on="run")


def target_truth(result, runs: pd.DataFrame, *, prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Observed against predicted for held-out runs at the target scale of ``result``
    (a :class:`bayesmix.pipeline.result.PipelineResult`).

    Returns one row per (run, eval) (``overall`` included): ``run, eval, observed, mean,
    lower, upper, covered, miss`` (observed - mean), ``inside_support`` (the run's mixture lies
    in the trust region of the fitted ones, :func:`bayesmix.decide.support.support_table`) and the
    ``mix.*`` columns.
    """
    runs = validate_runs(runs)
    stage = result.stages["mix"]
    evals = list(stage.data.coords["eval"])
    weights = np.asarray(stage.data.meta["weights"], float)
    observed = observed_at(runs, size=result.plan.target_size, step=result.plan.target_step, evals=evals,
                           weights=weights)
    domains = result.domains
    mixtures = observed.drop_duplicates("run")[["run", *(MIX_PREFIX + d for d in domains)]]
    query = mixtures.rename(columns={"run": "mixture"})
    pred = result.predict(mixtures=query, kind="observation", prob=prob, seed=seed)
    pred = pred.rename(columns={"mixture": "run"})[["run", "eval", "mean", "lower", "upper"]]
    out = observed.merge(pred, on=["run", "eval"], how="left", validate="one_to_one")
    out["covered"] = (out["observed"] >= out["lower"]) & (out["observed"] <= out["upper"])
    out["miss"] = out["observed"] - out["mean"]
    tried = result.tried_mixtures()
    if len(tried) >= 2:
        support = support_table(mixtures[[MIX_PREFIX + d for d in domains]].to_numpy(float), tried, domains)
        out = out.merge(support[["inside_support"]].assign(run=mixtures["run"].to_numpy()), on="run", how="left")
    cols = ["run", "eval", "observed", "mean", "lower", "upper", "covered", "miss"]
    return out[cols + [c for c in out.columns if c not in cols]]


def coverage_summary(truth: pd.DataFrame) -> pd.DataFrame:
    """Per eval (``overall`` first): runs, runs covered, coverage, MAE and mean miss."""
    g = truth.groupby("eval", sort=False)
    table = pd.DataFrame({"runs": g.size(), "covered": g["covered"].sum(), "coverage": g["covered"].mean(),
                          "mae": g["miss"].apply(lambda m: float(np.mean(np.abs(m)))),
                          "mean_miss": g["miss"].mean()}).reset_index()
    order = np.argsort(table["eval"] != OVERALL, kind="stable")
    return table.iloc[order].reset_index(drop=True)


def truth_sentence(summary: pd.DataFrame, prob: float = 0.9, truth: pd.DataFrame | None = None) -> str:
    """One sentence on the overall loss's coverage and error; with the ``truth`` table, also
    the coverage of the runs inside the trust region (where recommendations are made)."""
    row = summary.iloc[0]
    text = (f"{int(row['covered'])} of {int(row['runs'])} held-out target-scale runs lie inside their "
            f"{round(100 * prob)}% interval of the {row['eval']} loss; mean absolute error "
            f"{row['mae']:.3f} nats, mean miss {row['mean_miss']:+.3f} (observed minus predicted).")
    if truth is not None and "inside_support" in truth:
        rows = truth[truth["eval"] == row["eval"]]
        inside = rows[rows["inside_support"].astype(bool)]
        if len(inside) < len(rows):
            text += (f" Inside the trust region of the fitted mixtures: {int(inside['covered'].sum())} of "
                     f"{len(inside)}; outside it: {int(rows['covered'].sum() - inside['covered'].sum())} of "
                     f"{len(rows) - len(inside)}.")
    return text


def train_at_target(mixtures: Mapping[str, Mapping[str, float]], *, target_size: int, target_step: int,
                    size: str | None = None, **train) -> pd.DataFrame:
    """Train ``mixtures`` (name -> mixture) at ``target_size`` non-embedding parameters to
    ``target_step`` with the proxy trainer; returns their run-table rows.

    ``size``: the proxy size name (by default the one with ``target_size`` parameters);
    ``train``: :func:`bayesmix.proxy.sweeps.sweep` settings (``steps`` defaults to, and must
    equal, the target step; ``corpus``, ``workdir``, ``workers``, ...).
    """
    from bayesmix.proxy.model import SIZES, non_embedding_params
    from bayesmix.proxy.sweeps import sweep

    if size is None:
        names = [name for name, s in SIZES.items() if s.non_embedding_params == target_size]
        if not names:
            raise ValueError(f"no proxy model size has {target_size:,} non-embedding parameters: cannot train "
                             "at the target")
        size = names[0]
    if int(non_embedding_params(size)) != target_size:
        raise ValueError(f"size {size!r} has {int(non_embedding_params(size)):,} non-embedding parameters; the "
                         f"pipeline predicts {target_size:,}")
    steps = int(train.setdefault("steps", target_step))
    if steps != target_step:
        raise ValueError(f"steps={steps} must equal the pipeline's target step {target_step}")
    return sweep(dict(mixtures), [size], **train)


def verify(result, mixtures: Mapping[str, Mapping[str, float]], *, size: str | None = None, prob: float = 0.9,
           seed: int = 0, **train) -> pd.DataFrame:
    """Train ``mixtures`` (name -> mixture) at the target scale of ``result`` with the proxy
    trainer (:func:`train_at_target`) and compare with the predictions (:func:`target_truth`)."""
    rows = train_at_target(mixtures, target_size=result.plan.target_size, target_step=result.plan.target_step,
                           size=size, **train)
    return target_truth(result, rows, prob=prob, seed=seed)
