"""The risk-aware report: one self-contained HTML file a person can read offline.

    report = report_from_pipeline(result, baseline="uniform", suggestions=next_runs, seed=0)
    write_report(report, "report.html")            # figures embedded as base64 PNG

A :class:`Report` holds plain data (tables as DataFrames, figures as PNG
bytes, settings as text), so it can be built from a nested-pipeline result
(:func:`report_from_pipeline`), a single-law fit (:func:`report_from_fit`) or
by hand, and rendered without the fit. Sections, in order: a warning block when
convergence diagnostics fail; the recommended mixture; candidates ranked by
posterior mean, probability of beating the baseline, 90th percentile and CVaR;
per-eval-domain losses (capability balance); the effective compute
multiplier; the error budget; suggested next experiments; fit diagnostics;
figures of the fitted laws; the data and settings used.

Risk measures of a candidate's loss L (lower is better), from joint posterior
draws L_d, d = 1..D (the same draw index is the same posterior world for
every mixture, so comparisons are paired):

* mean ``E[L]``;  ``P(beat) = P(L < L_baseline) = (1/D) sum_d 1[L_d < L_base,d]``;
* ``q90``: the 90th percentile of L (a pessimistic value);
* ``CVaR_0.9 = E[L | L >= q90]``: the mean of the worst 10% of draws.

(computed by :mod:`bayesmix.decide.decisions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.inference.diagnostics import adequacy_problems
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns, mixture_labels
from bayesmix.laws.overall import OVERALL
from bayesmix.data.keyvalues import parse_key_values
from bayesmix.decide.simplex import SimplexBounds
from bayesmix.decide.support import support_table
from bayesmix.design import candidates as cand
from bayesmix.report.document import CRITERIA, Report
from bayesmix.report.figures import finish_figures, fit_figures, loss_surface_fn, pipeline_figures

CANDIDATE_STREAM = 7211  # random candidates use their own stream: never the draws that designed the runs


# ----------------------------------------------------------------------------- risk measures

def select_eval(draws: xr.DataArray, eval: str | None = None) -> xr.DataArray:
    """Points of one eval domain from (draw, point) draws: ``eval``, else ``overall``
    when present, else the only eval domain."""
    if "eval" not in draws.coords:
        return draws
    evals = list(dict.fromkeys(draws["eval"].to_numpy().astype(str)))
    if eval is None:
        if OVERALL in evals:
            eval = OVERALL
        elif len(evals) == 1:
            eval = evals[0]
        else:
            raise ValueError(f"several eval domains {evals} and no 'overall': name the eval to rank by")
    if eval not in evals:
        raise KeyError(f"eval {eval!r} is not predicted; choose one of {evals}")
    return draws.isel(point=np.flatnonzero(draws["eval"].to_numpy().astype(str) == eval))


def risk_table(
    draws: xr.DataArray,
    baseline: str,
    *,
    label: str = "mixture",
    prob: float = 0.9,
    quantile: float = 0.9,
) -> pd.DataFrame:
    """Risk-aware summary of candidate mixtures' loss draws, one row per mixture.

    ``draws``: (draw, point) of one eval domain, one point per mixture (coord
    ``label``), joint over mixtures. Columns: the point labels, ``mean``, ``sd``,
    ``lower``/``upper`` (central ``prob`` interval), ``p_beat`` (P(L < L_baseline),
    NaN for the baseline itself), ``q90`` (the ``quantile`` quantile), ``cvar``
    (CVaR at that level), ``delta`` (mean difference to the baseline) and
    ``rank_<criterion>`` (1 = best) for each criterion in :data:`CRITERIA`.
    Means, quantiles, CVaR and P(beats) are :func:`bayesmix.decide.decisions.rank_mixtures`'.
    """
    from bayesmix.decide.decisions import rank_mixtures

    frame = pd.DataFrame({c: draws[c].to_numpy() for c in draws.coords if draws[c].dims == ("point",)})
    if label not in frame:
        raise KeyError(f"draws have no {label!r} coordinate; got {list(frame.columns)}")
    frame[label] = frame[label].astype(str)
    if frame[label].duplicated().any():
        raise ValueError(f"one point per {label} expected; repeated: {sorted(frame[label][frame[label].duplicated()])}")
    if baseline not in set(frame[label]):
        raise KeyError(f"baseline {baseline!r} is not among the ranked mixtures")
    values = draws.transpose("draw", "point").to_numpy().astype(float)
    by_mixture = xr.DataArray(values, dims=("draw", "point"), coords={"mixture": ("point", frame[label].to_numpy())})
    stats = rank_mixtures(by_mixture, baseline=baseline, quantile=quantile).set_index("mixture")
    stats = stats.loc[frame[label].to_numpy()]
    q_name = f"q{round(100 * quantile)}"
    alpha = (1 - prob) / 2
    frame["mean"] = stats["mean"].to_numpy()
    frame["sd"] = stats["sd"].to_numpy()
    frame["lower"] = np.quantile(values, alpha, axis=0)
    frame["upper"] = np.quantile(values, 1 - alpha, axis=0)
    frame["p_beat"] = stats["prob_beats"].to_numpy()
    frame.loc[frame[label] == baseline, "p_beat"] = np.nan
    frame["q90"] = stats[q_name].to_numpy()
    frame["cvar"] = stats["cvar"].to_numpy()
    frame["delta"] = frame["mean"] - float(frame.loc[frame[label] == baseline, "mean"].iloc[0])
    for name, (_, ascending) in CRITERIA.items():
        column = frame[name].fillna(-np.inf if name == "p_beat" else np.inf)
        frame[f"rank_{name}"] = column.rank(ascending=ascending, method="min").astype(int)
    frame.attrs.update(prob=prob, quantile=quantile, baseline=baseline)
    return frame


def rank(table: pd.DataFrame, by: str = "mean") -> pd.DataFrame:
    """``table`` (from :func:`risk_table`) sorted best first by criterion ``by``."""
    if by not in CRITERIA:
        raise ValueError(f"rank_by must be one of {list(CRITERIA)}, got {by!r}")
    out = table.sort_values([f"rank_{by}", "rank_mean"], kind="stable").reset_index(drop=True)
    out.attrs = dict(table.attrs, rank_by=by)
    return out


# ----------------------------------------------------------------------------- mixtures and baseline

def name_mixtures(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct mixture of a run table: ``mixture`` (``m<k>``, or the table's own
    ``mixture`` column when it has one), ``name``, ``mix.*``.

    ``name`` is the run name's part before ``@`` when every run of that mixture
    shares it (``uniform@100k``, ``uniform@200k`` -> ``uniform``), else the first
    run's name.
    """
    cols = mix_columns(runs)
    if not cols:
        raise KeyError("the run table has no mix.<domain> columns")
    keep = ["run", "mixture", *cols] if "mixture" in runs else ["run", *cols]
    frame = runs[keep].drop_duplicates("run").reset_index(drop=True)
    if "mixture" not in frame:
        frame.insert(0, "mixture", mixture_labels(frame).to_numpy())
    frame["mixture"] = frame["mixture"].astype(str)
    rows = []
    for label, group in frame.groupby("mixture", sort=False):
        stems = {str(r).split("@", 1)[0] for r in group["run"]}
        name = stems.pop() if len(stems) == 1 else str(group["run"].iloc[0])
        rows.append({"mixture": label, "name": name, **group.iloc[0][cols].to_dict()})
    out = pd.DataFrame(rows)
    dup = out["name"].duplicated(keep=False)
    out.loc[dup, "name"] = out.loc[dup, "name"] + " (" + out.loc[dup, "mixture"] + ")"
    return out


def parse_mixture(text: str, domains: Sequence[str]) -> dict[str, float]:
    """``"code=0.3,english=0.7"`` -> proportions over ``domains`` (missing domains 0)."""
    out = dict.fromkeys(domains, 0.0)
    for key, value in parse_key_values(text, form="DOMAIN=PROPORTION").items():
        if key not in out:
            raise KeyError(f"unknown domain {key!r} in mixture {text!r}; domains are {list(domains)}")
        out[key] = value
    return out


def resolve_baseline(spec: str | Mapping[str, float], named: pd.DataFrame, domains: Sequence[str]) -> pd.Series:
    """The baseline mixture as one row (``name``, ``mix.*``).

    ``spec``: a mixture's name or label in ``named`` (see :func:`name_mixtures`),
    a run name, ``"DOMAIN=P,..."`` proportions or a dict of them, or
    ``"uniform"`` (equal proportions) when no mixture is named so.
    """
    cols = [MIX_PREFIX + d for d in domains]
    if isinstance(spec, Mapping) or (isinstance(spec, str) and "=" in spec):
        props = dict(spec) if isinstance(spec, Mapping) else parse_mixture(spec, domains)
        r, _ = as_mixture_matrix({d: float(props.get(d, props.get(MIX_PREFIX + d, 0.0))) for d in domains},
                                 list(domains))
        match = named[np.all(np.abs(named[cols].to_numpy(float) - r[0]) < 1e-6, axis=1)] if len(named) else named
        name = str(match["name"].iloc[0]) if len(match) else "baseline"
        return pd.Series({"name": name, **dict(zip(cols, r[0]))})
    spec = str(spec)
    for column in ("name", "mixture", "run"):
        if column in named and (named[column].astype(str) == spec).any():
            row = named[named[column].astype(str) == spec].iloc[0]
            return pd.Series({"name": str(row["name"]), **row[cols].astype(float).to_dict()})
    if spec.split("@", 1)[0] in set(named.get("name", pd.Series(dtype=str)).astype(str)):
        return resolve_baseline(spec.split("@", 1)[0], named, domains)
    if spec == "uniform":
        return pd.Series({"name": "uniform", **dict.fromkeys(cols, 1.0 / len(domains))})
    known = ", ".join(named["name"].astype(str).tolist()[:20]) if len(named) else "none"
    raise KeyError(f"unknown baseline {spec!r}: name a tried mixture ({known}), give proportions "
                   "like 'code=0.5,web=0.5', or 'uniform'")


def candidate_mixtures(
    named: pd.DataFrame,
    domains: Sequence[str],
    baseline: pd.Series,
    *,
    n_random: int = 1000,
    extra: pd.DataFrame | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Mixtures to rank: tried ones, the baseline, ``extra`` (e.g. an optimiser's
    optimum or a user's list; its ``source`` column is kept, default "given") and
    ``n_random`` Dirichlet(1) draws over the simplex. Random draws that repeat a
    mixture already listed are dropped.

    Columns: ``mixture`` (display name, unique), ``source`` (tried / baseline /
    given / random / ...), ``mix.*``.
    """
    cols = [MIX_PREFIX + d for d in domains]
    parts = [named.assign(mixture=named["name"].astype(str), source="tried")[["mixture", "source", *cols]]]
    if not (np.abs(named[cols].to_numpy(float) - baseline[cols].to_numpy(float)) < 1e-6).all(axis=1).any():
        parts.append(pd.DataFrame([{"mixture": str(baseline["name"]), "source": "baseline",
                                    **baseline[cols].astype(float).to_dict()}]))
    if extra is not None and len(extra):
        r, frame = as_mixture_matrix(extra.drop(columns=["source"], errors="ignore"), list(domains))
        given = frame.assign(source=extra["source"].astype(str).to_numpy() if "source" in extra else "given")
        if "mixture" not in extra:
            given["mixture"] = [f"given{i + 1}" for i in range(len(given))]
        parts.append(given[["mixture", "source", *cols]])
    if n_random > 0:
        stream = int(np.random.SeedSequence([seed, CANDIDATE_STREAM]).generate_state(1)[0])
        r = cand.dirichlet(SimplexBounds(list(domains)), n_random, seed=stream, concentration=1.0)  # Dirichlet(1)
        width = len(str(n_random))
        random = pd.DataFrame(r, columns=cols)
        random.insert(0, "source", "random")
        random.insert(0, "mixture", [f"cand{i + 1:0{width}d}" for i in range(n_random)])
        parts.append(random)
    out = pd.concat(parts, ignore_index=True)
    same = out[cols].round(6).duplicated(keep="first") & (out["source"] != "tried")
    out = out[~same].reset_index(drop=True)
    dup = out["mixture"].duplicated(keep="first")
    out.loc[dup, "mixture"] = out.loc[dup, "mixture"] + "#" + out.index[dup].astype(str)
    return out


# ----------------------------------------------------------------------------- the report object





# ----------------------------------------------------------------------------- HTML















































# ----------------------------------------------------------------------------- building a report from a fit

def per_eval_table(draws: xr.DataArray, mixtures: Sequence[str], *, prob: float = 0.9) -> pd.DataFrame:
    """Mean and central ``prob`` interval per (mixture, eval) for the named ``mixtures``
    (in that order) from (draw, point) draws with ``mixture`` and ``eval`` coords."""
    from bayesmix.inference.fit import summarise_draws

    names = draws["mixture"].to_numpy().astype(str)
    keep = np.flatnonzero(np.isin(names, list(mixtures)))
    table = summarise_draws(draws.isel(point=keep), prob)
    table["mixture"] = table["mixture"].astype(str)
    order = {m: i for i, m in enumerate(mixtures)}
    table = table.sort_values("mixture", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    return table[["mixture", "eval", "mean", "sd", "lower", "upper"]]


def data_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """A small two-column description of a run table."""
    sizes = sorted(runs["size"].unique().tolist())
    steps = sorted(runs["step"].unique().tolist())
    cols = mix_columns(runs)
    rows = [
        ("rows", len(runs)),
        ("runs", runs["run"].nunique()),
        ("distinct mixtures", int(mixture_labels(runs.drop_duplicates("run")).nunique()) if cols else 0),
        ("model sizes", ", ".join(f"{s:,}" for s in sizes)),
        ("checkpoints", f"{len(steps)} ({steps[0]:,} to {steps[-1]:,} steps)"),
        ("eval domains", ", ".join(map(str, runs["eval"].unique()))),
        ("training domains", ", ".join(c[len(MIX_PREFIX):] for c in cols)),
    ]
    return pd.DataFrame(rows, columns=["what", "value"])


def _budget_long(budget) -> pd.DataFrame | None:
    """An error budget as (eval, stage, share) rows; accepts long or wide frames."""
    if budget is None:
        return None
    frame = getattr(budget, "table", budget)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"budget must be a DataFrame, got {type(budget).__name__}")
    if {"stage", "share"} <= set(frame.columns):
        frame = frame if "eval" in frame else frame.assign(eval=str(getattr(budget, "eval", OVERALL)))
        return frame[["eval", "stage", "share"]].reset_index(drop=True)
    wide = frame.set_index("eval") if "eval" in frame.columns else frame
    wide = wide.select_dtypes("number")
    wide.index.name = "eval"
    return wide.reset_index().melt(id_vars="eval", var_name="stage", value_name="share")










def ranked_candidates(named: pd.DataFrame, domains: Sequence[str], baseline_row: pd.Series, predict_draws, *,
                      candidates: pd.DataFrame | None, n_random: int, rank_by: str, prob: float,
                      seed: int) -> tuple[pd.DataFrame, xr.DataArray, pd.DataFrame | None]:
    """The candidates (:func:`candidate_mixtures`) ranked from ``predict_draws(mixtures) -> (draw, point)``.

    Returns the ranking (:func:`risk_table` rows, best first by ``rank_by``, with ``source`` and
    the trust-region columns of :func:`bayesmix.decide.support.support_table`), the overall-loss
    draws, and the per-eval table of the three best and the baseline (None with one eval).
    """
    cands = candidate_mixtures(named, domains, baseline_row, n_random=n_random, extra=candidates, seed=seed)
    cols = [MIX_PREFIX + d for d in domains]
    draws = predict_draws(cands[["mixture", *cols]])
    overall = select_eval(draws)
    table = rank(risk_table(overall, str(baseline_row["name"]), prob=prob), rank_by)
    table = table.merge(cands[["mixture", "source"]], on="mixture", how="left")
    table.attrs = dict(table.attrs)
    tried = named[cols].drop_duplicates().to_numpy(float)
    if len(tried) >= 2:
        support = support_table(table[cols].to_numpy(float), tried, domains)
        for column in support:
            table[column] = support[column].to_numpy()
        table.attrs["trust_radius"] = support.attrs["trust_radius"]
    shown = list(table["mixture"].astype(str).head(3))
    if str(baseline_row["name"]) not in shown:
        shown.append(str(baseline_row["name"]))
    per_eval = per_eval_table(draws, shown, prob=prob) if "eval" in draws.coords else None
    return table, overall, per_eval


def stage_diagnostics(result) -> pd.DataFrame:
    """One row per fitted stage of a pipeline: R-hat, divergences, lanes, failures, problems."""
    from bayesmix.pipeline.runners import lanes_failed, lanes_problem

    grid = {name: diag.get("sampler") == "grid" for name, diag in result.diagnostics.items()}
    stage_names = {"step": "step law (exact grid posterior per curve)" if grid.get("step") else
                   "step law (one lane per curve)",
                   "size": "size law (exact grid posterior per dataset and eval domain)" if grid.get("size") else
                   "size law (one lane per dataset)", "mix": "mixing law (one lane per dataset)"}
    rows = []
    for name, diag in result.diagnostics.items():
        lanes = int(diag.get("lanes", 1))
        frac = float(diag.get("fail_fraction", 0.0))
        ok = not lanes_failed(diag)
        problems = "" if ok else lanes_problem(diag)
        rows.append({"part": stage_names.get(name, name), "rhat_max": diag.get("rhat_max", np.nan),
                     "rhat_pooled": diag.get("rhat_pooled", np.nan),
                     "divergences": diag.get("divergences", 0), "lanes": lanes, "fail_fraction": frac,
                     "ok": ok, "problems": problems, "notes": _grid_note(diag)})
    return pd.DataFrame(rows)


def pipeline_settings(result, n_random: int, settings: Mapping[str, object] | None) -> dict:
    """The report's "data and settings" entries of a pipeline, then ``settings``."""
    plan, p = result.plan, result.pipeline
    info = {"target size": f"{plan.target_size:,} non-embedding parameters", "target step": f"{plan.target_step:,}",
            "stages fitted": ", ".join(result.stages), "propagation mode": p.mode,
            "upstream draws (D)": p.n_draws, "posterior draws pooled": result.n_draws_total,
            "min step (warm-up cut)": p.min_step, "eval weights": _weights_text(result),
            "step-law sampler": _step_sampler_text(p), "size-law sampler": _size_sampler_text(p),
            "lane sampler": _config_text(p.lane_config),
            "single-fit sampler": _config_text(p.fit_config),
            "seconds per stage": ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()),
            "seed": result.seed, "candidates ranked": f"tried + baseline + given + {n_random} Dirichlet(1) draws",
            **(settings or {})}
    rising = result.diagnostics.get("step", {}).get("rising") or []
    if rising:
        info["curves rising with steps (law violated)"] = (f"{len(rising)}: {', '.join(rising[:12])}"
                                                           + (" ..." if len(rising) > 12 else ""))
    return info


def missing_sections(plan) -> dict[str, str]:
    """Why each optional section is empty until it is filled."""
    missing = {"multiplier": "Not computed for this report.",
               "budget": "Not computed for this report (it refits the pipeline with each stage's uncertainty "
                         "switched off).",
               "suggestions": "No suggestions were computed for this report.",
               "truth": "No run at the target scale was given to check the predictions against; "
                        "bayesmix verify trains the recommended mixture and the baseline there."}
    if not plan.step:
        missing["multiplier"] = ("Not available: the compute multiplier goes through the step law, and every run "
                                 "already ends at the target step.")
    return missing


HULL_OPTIMUM = "optimum-in-hull"


def with_optimum(result, candidates: pd.DataFrame | None, *, seed: int) -> tuple[pd.DataFrame, str]:
    """``candidates`` plus the pipeline's predicted optimum over the simplex ("optimum") and
    over the convex hull of the mixtures the mixing law saw (:data:`HULL_OPTIMUM`,
    :func:`bayesmix.decide.decisions.predicted_optimum` with ``region="hull"``), and how they were
    found."""
    from bayesmix.decide.decisions import predicted_optimum

    best, _ = predicted_optimum(result, seed=seed)
    inside, _ = predicted_optimum(result, region="hull", seed=seed)
    rows = pd.DataFrame([{"mixture": name, "source": "optimum", **{MIX_PREFIX + d: float(o.mixture[d])
                                                                   for d in result.domains}}
                         for name, o in (("optimum", best), (HULL_OPTIMUM, inside))])
    candidates = rows if candidates is None else pd.concat([candidates, rows], ignore_index=True)

    def how(o) -> str:
        return f"{'moved from its start' if o.moved else 'at its start'}, {'feasible' if o.feasible else 'INFEASIBLE'}"

    return candidates, (f"projected-Adam refinement of the posterior mean over the simplex ({how(best)}); "
                        f"{HULL_OPTIMUM}: the same over the convex hull of the tried mixtures ({how(inside)})")


def add_multiplier(report: Report, result, named: pd.DataFrame, *, n: int, prob: float) -> None:
    """The compute multiplier of the ``n`` best mixtures over the baseline, when the baseline was run."""
    base_label = named.loc[named["name"].astype(str) == report.baseline, "mixture"]
    if len(base_label):
        report.multiplier = multiplier_table(result, report.ranking, str(base_label.iloc[0]),
                                             baseline_name=report.baseline, n=n, prob=prob)
    else:
        report.missing["multiplier"] = (f"Not available: the baseline {report.baseline!r} was not run, so it "
                                        "has no step law to measure the multiplier with.")


def report_from_pipeline(
    result,
    *,
    baseline: str | Mapping[str, float] = "uniform",
    runs: pd.DataFrame | None = None,
    candidates: pd.DataFrame | None = None,
    n_random: int = 1000,
    suggestions: pd.DataFrame | None = None,
    acquisition: pd.DataFrame | None = None,
    suggestions_note: str = "",
    budget=None,
    budget_advice: str | None = None,
    multiplier: pd.DataFrame | None = None,
    optimum: bool = True,
    n_multiplier: int = 3,
    rank_by: str = "mean",
    confidence: float = 0.9,
    prob: float = 0.9,
    top: int = 8,
    seed: int = 0,
    title: str = "bayesmix: which data mixture to train on",
    settings: Mapping[str, object] | None = None,
    truth: pd.DataFrame | None = None,
) -> Report:
    """A report from a fitted nested pipeline (:class:`bayesmix.pipeline.result.PipelineResult`).

    Ranks the tried mixtures, the baseline, ``candidates``, the predicted
    optimum over the simplex (``optimum``, :func:`bayesmix.decide.decisions.predicted_optimum`)
    and ``n_random`` Dirichlet draws by their predicted target-scale overall
    loss. The compute multiplier over the baseline
    (:func:`bayesmix.decide.decisions.effective_compute_multiplier`) is computed for the
    ``n_multiplier`` best mixtures unless ``multiplier`` (mixture, median, lower,
    upper[, prob_above_1]) is given. ``budget`` (the pipeline's
    :class:`~bayesmix.pipeline.budget.ErrorBudget` or a table) and ``suggestions`` (the
    next runs; ``acquisition`` holds the acquisition value of every candidate for
    the landscape figure) are shown when given. ``confidence``: the P(beats baseline) a
    mixture needs to be recommended instead of the baseline (:attr:`Report.best`). ``runs``:
    the run table, for the data summary. ``truth``: held-out runs at the target scale (a run table, never
    fitted), checked against the predictions (:func:`bayesmix.pipeline.verify.target_truth`).
    """
    domains = result.domains
    step_labels = result.outputs["step"].labels
    named_all = name_mixtures(step_labels[["run", "mixture", *mix_columns(step_labels)]])
    fitted = set(result.observed_mixtures()["mixture"].astype(str))
    named = named_all[named_all["mixture"].astype(str).isin(fitted)].reset_index(drop=True)
    baseline_row = resolve_baseline(baseline, named, domains)
    plan = result.plan

    def predict_draws(mixtures):
        return result.predict(mixtures, kind="mean", draws=True, seed=seed)

    diagnostics = stage_diagnostics(result)
    target = f"{plan.target_size:,} parameters, {plan.target_step:,} steps"
    info = pipeline_settings(result, n_random, settings)
    missing = missing_sections(plan)
    if budget_advice is None and getattr(budget, "recommendation", None):
        text = str(budget.recommendation)
        budget_advice = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    if optimum:
        candidates, info["optimum"] = with_optimum(result, candidates, seed=seed)
    table, overall, per_eval = ranked_candidates(named, domains, baseline_row, predict_draws, candidates=candidates,
                                                 n_random=n_random, rank_by=rank_by, prob=prob, seed=seed)
    report = Report(title=title, baseline=str(baseline_row["name"]), ranking=table, diagnostics=diagnostics,
                    rank_by=rank_by, confidence=confidence, prob=prob, top=top, target=target, per_eval=per_eval,
                    multiplier=multiplier,
                    budget=_budget_long(budget), budget_advice=budget_advice, suggestions=suggestions,
                    suggestions_note=suggestions_note, settings=info,
                    data_summary=data_summary(runs) if runs is not None else None, missing=missing)
    if multiplier is None and n_multiplier > 0 and plan.step:
        add_multiplier(report, result, named, n=n_multiplier, prob=prob)
    if truth is not None:
        add_truth(report, result, truth, prob=prob, seed=seed)
    if result.discrepancy is not None:
        report.backtest = result.discrepancy.tables(prob)
    params = {k: result.params[k] for k in ("level", "floor", "t", "sigma") if k in result.params}
    mix = result.stages["mix"]
    surface = loss_surface_fn(params, mix.law, mix.data, seed=seed)
    return finish_figures(report, overall=overall, acquisition=acquisition, observed=named, surface_fn=surface,
                   domains=domains, extra_model_figures=pipeline_figures(result, report, named))


def add_truth(report: Report, result, runs: pd.DataFrame, *, prob: float, seed: int) -> None:
    """Check ``result``'s predictions against held-out target-scale ``runs``: the table, a
    sentence on coverage and error, and the predicted-against-observed figure."""
    from bayesmix.report.plots import predicted_vs_observed
    from bayesmix.pipeline.verify import coverage_summary, target_truth, truth_sentence

    truth = target_truth(result, runs, prob=prob, seed=seed)
    report.truth = truth
    report.truth_note = truth_sentence(coverage_summary(truth), prob, truth)
    shown = truth.copy()
    shown.attrs["prob"] = prob
    report.figures.pop("truth", None)
    report.add_figure("truth", predicted_vs_observed(shown, title=None), "Predicted (mean and interval) against "
                      "observed loss of every held-out target-scale run, per eval domain and overall.", width=520)


def multiplier_table(result, ranking: pd.DataFrame, baseline_label: str, *, baseline_name: str, n: int = 3,
                     prob: float = 0.9) -> pd.DataFrame:
    """Effective compute multiplier over the baseline (an observed mixture's label) of the
    ``n`` best mixtures of ``ranking``: mixture, median, lower, upper, prob_above_1."""
    from bayesmix.decide.decisions import effective_compute_multiplier

    cols = mix_columns(ranking)
    rows = []
    for _, row in ranking[ranking["mixture"].astype(str) != baseline_name].head(n).iterrows():
        k = effective_compute_multiplier(result, {c: float(row[c]) for c in cols}, baseline_label, prob=prob)
        rows.append({"mixture": str(row["mixture"]), "median": k["median"], "lower": k["lower"],
                     "upper": k["upper"], "prob_above_1": k["prob_above_1"]})
    return pd.DataFrame(rows)


def _weights_text(result) -> str:
    w = result.stages["mix"].data.meta.get("weights")
    return ", ".join(f"{e} {v:.3g}" for e, v in zip(result.evals, w)) if w is not None else "equal"


def _grid_note(diag) -> str:
    """A grid posterior's checks in words (empty for a sampler with chains)."""
    if diag.get("sampler") != "grid":
        return ""
    return (f"exact posterior by quadrature, no chains: largest posterior share on the grid's edge "
            f"{diag.get('edge_mass_max', np.nan):.1g}, coarsest resolution {diag.get('resolution_min', np.nan):.1f} "
            "cells per posterior sd")


def _step_sampler_text(pipeline) -> str:
    """How the step law's curves were sampled."""
    if getattr(pipeline, "step_sampler", "nuts") == "grid":
        return "exact posterior per curve by quadrature over (exponent, noise sd), Normal likelihood"
    return "NUTS per curve, " + _config_text(pipeline.curve_config)


def _size_sampler_text(pipeline) -> str:
    """How the size law was fitted on each upstream dataset."""
    mode = pipeline.mode
    if getattr(pipeline, "size_sampler", "nuts") == "grid" and mode == "draws":
        return "exact posterior per dataset and eval domain by quadrature over (exponent, noise sd), Normal likelihood"
    return "NUTS lanes warm-started from an anchor fit" if mode == "draws" else "one fit (see the single-fit sampler)"


def _config_text(config) -> str:
    return (f"{config.num_chains} chains x {config.num_samples} draws after {config.num_warmup} warm-up"
            + (", dense mass" if getattr(config, "dense_mass", False) else ""))


def report_from_fit(
    fit,
    *,
    baseline: str | Mapping[str, float] = "uniform",
    candidates: pd.DataFrame | None = None,
    n_random: int = 1000,
    suggestions: pd.DataFrame | None = None,
    acquisition: pd.DataFrame | None = None,
    suggestions_note: str = "",
    rank_by: str = "mean",
    confidence: float = 0.9,
    prob: float = 0.9,
    top: int = 8,
    seed: int = 0,
    title: str = "bayesmix: which data mixture to train on",
    settings: Mapping[str, object] | None = None,
) -> Report:
    """A report from a single mixing-law fit (:class:`bayesmix.inference.fit.FitResult` of law ``mix``).

    The mixing law sits at one (size, step): there is no step law for the
    compute multiplier and no upstream stage for an error budget; those
    sections say so.
    """
    if fit.law.name != "mix":
        raise ValueError(f"the report ranks mixtures and needs a mixing-law fit (law 'mix'); this fit is "
                         f"law {fit.law.name!r}")
    obs = _fit_observations(fit)
    domains = list(fit.data.meta["domains"])
    named = name_mixtures(obs)
    baseline_row = resolve_baseline(baseline, named, domains)

    def predict_draws(mixtures):
        return fit.predict(mixtures=mixtures, kind="mean", draws=True, seed=seed)

    d = fit.diagnostics
    diagnostics = pd.DataFrame([{"part": "mixing law", "rhat_max": d.rhat_max, "ess_bulk_min": d.ess_bulk_min,
                                 "ess_tail_min": d.ess_tail_min, "divergences": d.divergences,
                                 "ebfmi_min": d.ebfmi_min, "treedepth_saturation": d.treedepth_saturation,
                                 "ok": d.ok, "problems": "; ".join(d.problems), "notes": "; ".join(d.notes)}])
    attrs = fit.idata.posterior.attrs
    meta = fit.data.meta
    target = f"{int(meta['size']):,} parameters, {int(meta['step']):,} steps" if "size" in meta else ""
    info = {"law": "mix (M4, explicit aggregation)", "model size": f"{int(meta.get('size', 0)):,}",
            "step": f"{int(meta.get('step', 0)):,}",
            "eval weights": ", ".join(f"{e} {w:.3g}" for e, w in zip(fit.data.coords["eval"], meta["weights"])),
            "priors": ", ".join(f"{k}={v:g}" for k, v in fit.priors.items()),
            "sampler": attrs.get("sampler", ""), "seed": attrs.get("seed", ""),
            "fitted with bayesmix": attrs.get("bayesmix_version", ""),
            "candidates ranked": f"tried + baseline + given + {n_random} Dirichlet(1) draws", **(settings or {})}
    rerun = "Rerun the fit with longer chains (e.g. bayesmix fit ... --warmup 2000 --draws 1000)"
    missing = {"multiplier": "Not available for a single mixing-law fit: the multiplier goes through the step "
                             "law (run the nested pipeline on checkpointed runs).",
               "budget": "Not available for a single mixing-law fit: the error budget splits the uncertainty of "
                         "the nested pipeline's stages.",
               "suggestions": "No suggestions were computed for this report."}
    table, overall, per_eval = ranked_candidates(named, domains, baseline_row, predict_draws, candidates=candidates,
                                                 n_random=n_random, rank_by=rank_by, prob=prob, seed=seed)
    report = Report(title=title, baseline=str(baseline_row["name"]), ranking=table, diagnostics=diagnostics,
                    rank_by=rank_by, confidence=confidence, prob=prob, top=top, target=target, per_eval=per_eval,
                    suggestions=suggestions, suggestions_note=suggestions_note, settings=info,
                    data_summary=data_summary(obs), missing=missing)
    report.rerun_hint = rerun
    report.caveat = "; ".join(adequacy_problems(d.loo_r2 or {}))
    fit_figures(fit, report, obs)
    surface = loss_surface_fn(fit.posterior(), fit.law, fit.data, seed=seed)
    return finish_figures(report, overall=overall, acquisition=acquisition, observed=named, surface_fn=surface,
                   domains=domains)


def _fit_observations(fit) -> pd.DataFrame:
    """The observations of a fit as run-table rows (run, size, step, eval, loss, mix.*)."""
    if len(fit.data.obs_index):
        obs = fit.data.obs_index.copy()
        obs["loss"] = fit.data.y
        return obs
    idata = fit.idata
    if "constant_data" not in idata.groups() or "observed_data" not in idata.groups():
        raise ValueError("the fit holds no observations (constant_data/observed_data); refit with bayesmix fit")
    obs = idata.constant_data.to_dataframe().reset_index(drop=True)
    obs["loss"] = idata.observed_data["obs"].to_numpy()
    return obs


