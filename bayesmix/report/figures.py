"""The figures of a report: ranking, suggestions and the acquisition landscape, the fitted laws
(fan charts, surfaces, predicted vs observed), from a pipeline or a single-law fit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns
from bayesmix.laws.overall import OVERALL
from bayesmix.report.document import CRITERIA, Report


def loss_surface_fn(params: Mapping[str, np.ndarray], law, data, *, max_draws: int = 200, seed: int = 0,
                     chunk: int = 2048):
    """``r (n, M) -> (n,)``: posterior mean of the overall (or only) loss of a mixing law,
    over at most ``max_draws`` draws, evaluated in chunks."""
    import jax

    n = next(iter(params.values())).shape[0]
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_draws), replace=False))
    sub = {k: np.asarray(v)[idx] for k, v in params.items()}

    def fn(r):
        out = []
        for start in range(0, r.shape[0], chunk):
            query = law.query(data, mixtures=np.asarray(r[start:start + chunk]))
            with jax.enable_x64(True):
                values = np.asarray(law.mean_draws(sub, query, data.meta), dtype=float)
            n_evals = len(query.evals)
            pick = query.evals.index(OVERALL) if OVERALL in query.evals else 0
            out.append(values.reshape(values.shape[0], -1, n_evals)[:, :, pick].mean(axis=0))
        return np.concatenate(out)

    return fn


def _ranking_figures(report: Report, overall: xr.DataArray) -> None:
    from bayesmix.report import plots

    shown = list(report.ranking["mixture"].astype(str).head(report.top))
    if report.baseline not in shown:
        shown.append(report.baseline)
    names = overall["mixture"].to_numpy().astype(str)
    sub = overall.isel(point=[int(np.flatnonzero(names == m)[0]) for m in shown])
    fig = plots.risk_ranking(sub, baseline=report.baseline, order=shown,
                             title=f"top candidates by {CRITERIA[report.rank_by][0]}, with the baseline")
    report.add_figure("ranking", fig, "Predicted loss of the top candidates and the baseline (dashed line): "
                      "mean, 50% and 90% intervals.")
    if report.per_eval is not None and len(report.per_eval):
        fig = plots.capability_balance(report.per_eval, baseline=report.baseline)
        report.add_figure("capabilities", fig, "Per-eval-domain loss of the recommended mixture and runner-ups, "
                          "relative to the baseline (below zero: better than the baseline), with intervals.")


def _suggestion_figures(report: Report, acquisition: pd.DataFrame | None, observed: pd.DataFrame) -> None:
    from bayesmix.report import plots

    if acquisition is None or not len(acquisition):
        return
    value = next((c for c in ("log_ei", "logei", "acquisition", "value") if c in acquisition), None)
    if value is None:
        return
    fig = plots.acquisition_landscape(acquisition, value=value, observed=observed, suggested=report.suggestions)
    report.add_figure("suggestions", fig, f"Acquisition ({value}) over candidate mixtures; crosses: mixtures "
                      "already run; stars: the suggested next runs.")


def finish_figures(report: Report, *, overall: xr.DataArray, acquisition, observed, surface_fn, domains,
            extra_model_figures=()) -> Report:
    """Figures shared by every report source."""
    from bayesmix.report import plots

    _ranking_figures(report, overall)
    if report.budget is not None and len(report.budget):
        report.add_figure("budget", plots.error_budget_bars(report.budget),
                          "Share of the final predictive variance due to each stage, per eval domain.", width=640)
    _suggestion_figures(report, acquisition, observed)
    best = report.best[[MIX_PREFIX + d for d in domains]].to_numpy(float)[None]
    fig = plots.mixing_surface(surface_fn, domains, observed=observed, best=best,
                               resolution=40 if len(domains) <= 3 else 24)
    report.add_figure("model", fig, "Predicted target-scale loss (posterior mean) over the mixtures; dots: "
                      "mixtures already run; star: the recommended mixture." +
                      (" With more than three domains, each panel varies two domains and shares the rest as in "
                       "the recommended mixture." if len(domains) > 3 else ""),
                      width=1080 if len(domains) > 3 else 620, wide=len(domains) > 3)
    for fig, caption in extra_model_figures:
        report.add_figure("model", fig, caption, width=620)
    return report


def pipeline_figures(result, report: Report, named: pd.DataFrame) -> list:
    """Fit-vs-input and fan charts of a pipeline result: [(figure, caption)]."""
    from bayesmix.report import plots

    figures = []
    mix = result.stages["mix"]
    up = result.outputs["size"] if "size" in result.stages else result.outputs["step"]
    unit = "mixture" if "size" in result.stages else "run"
    inputs = up.summary.iloc[mix.inputs].reset_index(drop=True)
    fitted = result.predict(kind="observation", prob=report.prob, seed=result.seed)
    key = inputs[unit].astype(str) if unit == "mixture" else inputs["mixture"].astype(str)
    lookup = fitted.set_index(["mixture", "eval"])
    rows = []
    for (_, row), m in zip(inputs.iterrows(), key):
        if (m, row["eval"]) in lookup.index:
            hit = lookup.loc[(m, row["eval"])]
            rows.append({"eval": row["eval"], "observed": row["mean"], "mean": float(hit["mean"]),
                         "lower": float(hit["lower"]), "upper": float(hit["upper"])})
    if rows:
        table = pd.DataFrame(rows)
        table.attrs["prob"] = report.prob
        what = "upstream predictions at the target scale" if "size" in result.stages or result.plan.step else \
            "measured losses"
        fig = plots.predicted_vs_observed(table, title=None)
        report.add_figure("diagnostics", fig, f"Mixing law at the target scale against its inputs ({what}), "
                          f"with {round(100 * report.prob)}% predictive intervals.", width=520)
    base_name = report.baseline
    base_mix = named.loc[named["name"].astype(str) == base_name, "mixture"]
    focus = base_mix.iloc[0] if len(base_mix) else named["mixture"].iloc[0]
    focus_name = named.loc[named["mixture"] == focus, "name"].iloc[0]
    eval0 = result.evals[0]
    if result.step_shape is not None and "step" in result.stages:
        fig = step_fan_chart(result, focus, eval0)
        if fig is not None:
            figures.append((fig, f"Step law of the {focus_name} runs on eval {eval0}: fitted checkpoints (dots) and "
                                 "the predicted loss up to the target step, with 50/80/95% intervals."))
    if "size" in result.stages:
        fig = size_fan_chart(result, focus, eval0)
        if fig is not None:
            figures.append((fig, f"Size law of {focus_name} on eval {eval0}: loss at the target step predicted at "
                                 "each proxy size (step law) and at the target size (size law)."))
    return figures


def step_curve_draws(result, mixture: str, eval: str, n_grid: int = 40):
    """The step law of one mixture's runs on one eval domain along a grid of steps up to the
    target step S*, from the pipeline's step-law draws (for the schedule-aware law, along each
    run's schedule or the target's): ``(draws (draw, point) with run and step coords, the
    fitted checkpoints (run, step, loss))``, or ``None`` when the mixture has no step-law curve."""
    import jax

    from bayesmix.pipeline import stages as st

    labels = result.step_shape["labels"].reset_index(drop=True)
    pick = np.flatnonzero((labels["mixture"].astype(str) == mixture).to_numpy()
                          & (labels["eval"].astype(str) == eval).to_numpy())
    if not pick.size:
        return None
    s_star = float(result.plan.target_step)
    stage = result.stages["step"]
    obs = stage.data.obs_index.assign(loss=stage.data.y)
    runs_k = labels.loc[pick, "run"].astype(str).to_numpy()
    obs = obs[(obs["eval"].astype(str) == eval).to_numpy() & obs["run"].astype(str).isin(runs_k).to_numpy()]
    lo = float(obs["step"].min()) if len(obs) else s_star / 20
    grid = np.unique(np.append(np.geomspace(lo, s_star, n_grid).round().astype(int), int(s_star)))
    options = {} if result.plan.target_schedule is None else {"schedule": result.plan.target_schedule}
    query = stage.law.query(stage.data, steps=grid, **options)
    q = query.labels.reset_index(drop=True)
    keep = np.flatnonzero(q["run"].astype(str).isin(runs_k).to_numpy() & (q["eval"].astype(str) == eval).to_numpy())
    with jax.enable_x64(True):
        values = st.predict_stage(stage, result.step_shape["params"], query)[:, keep]
    point = q.iloc[keep][["run", "step"]].astype({"run": str})
    draws = xr.DataArray(values, dims=("draw", "point"), coords={c: ("point", point[c].to_numpy()) for c in point})
    return draws, obs[["run", "step", "loss"]]


def step_fan_chart(result, mixture: str, eval: str):
    """Fan chart of :func:`step_curve_draws`: the fitted checkpoints and the step law up to the
    target step, one band per upstream draw set; ``None`` when the mixture has no curve."""
    from bayesmix.report import plots

    curves = step_curve_draws(result, mixture, eval)
    if curves is None:
        return None
    draws, obs = curves
    return plots.fan_chart(draws, obs, x="step", group="run", target=float(result.plan.target_step),
                           title=f"step law, eval {eval}")


def size_fan_chart(result, mixture: str, eval: str):
    """Loss at the target step vs model size for one mixture (label) and eval domain of a
    pipeline result: the step stage's predictions at each proxy size and the size stage's
    at the target size, as nested intervals. ``None`` when the mixture was not fitted."""
    from bayesmix.report import plots

    step_out, size_out = result.outputs["step"], result.outputs["size"]
    a = np.flatnonzero((step_out.labels["mixture"].astype(str) == mixture).to_numpy()
                       & (step_out.labels["eval"].astype(str) == eval).to_numpy())
    b = np.flatnonzero((size_out.labels["mixture"].astype(str) == mixture).to_numpy()
                       & (size_out.labels["eval"].astype(str) == eval).to_numpy())
    if not a.size or not b.size or step_out.values.shape[0] != size_out.values.shape[0]:
        return None
    sizes = np.concatenate([step_out.labels["size"].to_numpy(float)[a], [float(result.plan.target_size)]])
    values = np.concatenate([step_out.values[:, a], size_out.values[:, b[:1]]], axis=1)
    draws = xr.DataArray(values, dims=("draw", "point"), coords={"size": ("point", sizes)})
    return plots.fan_chart(draws, None, x="size", style="bars", target=float(result.plan.target_size),
                           title=f"size law, eval {eval} (at {result.plan.target_step:,} steps)")


def fit_figures(fit, report: Report, obs: pd.DataFrame) -> None:
    from bayesmix.report import plots

    observed = obs.drop_duplicates("run")
    pred = fit.predict(mixtures=observed[["run", *mix_columns(observed)]].rename(columns={"run": "mixture"}),
                       kind="observation", prob=report.prob, seed=0)
    table = obs[["run", "eval", "loss"]].astype({"run": str, "eval": str}).merge(
        pred.astype({"mixture": str, "eval": str}).rename(columns={"mixture": "run"}), on=["run", "eval"])
    table = table.rename(columns={"loss": "observed"})
    table.attrs["prob"] = report.prob
    report.add_figure("diagnostics", plots.predicted_vs_observed(table),
                      f"Fitted mixing law against the measured losses, with {round(100 * report.prob)}% "
                      "predictive intervals.", width=520)
    report.add_figure("diagnostics", plots.posterior_predictive(fit.idata),
                      "Posterior predictive check: density of the measured losses (black) against replicated "
                      "datasets (blue).", width=560)
