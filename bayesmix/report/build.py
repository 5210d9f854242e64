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

import base64
import dataclasses
import datetime as _dt
import html
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.inference.diagnostics import adequacy_problems
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns, mixture_labels
from bayesmix.laws.overall import OVERALL
from bayesmix.data.keyvalues import parse_key_values
from bayesmix.data.io import atomic_write
from bayesmix.decide.support import support_table

SECTIONS = ("recommendation", "truth", "ranking", "capabilities", "multiplier", "budget", "suggestions",
            "diagnostics", "model", "data")
SECTION_TITLES = {"recommendation": "Recommendation", "truth": "Real target runs", "ranking": "Ranking", "capabilities": "Capabilities",
                  "multiplier": "Compute multiplier", "budget": "Error budget", "suggestions": "Next experiments",
                  "diagnostics": "Diagnostics", "model": "Fitted laws", "data": "Data & settings"}
CRITERIA = {"mean": ("posterior mean", True), "p_beat": ("P(beats baseline)", False),
            "q90": ("90th percentile", True), "cvar": ("CVaR 90%", True)}
DOMAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")
MAX_DOMAIN_COLUMNS = 6
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
        rng = np.random.default_rng([seed, CANDIDATE_STREAM])
        r = rng.dirichlet(np.ones(len(domains)), size=n_random)
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

@dataclasses.dataclass
class EmbeddedFigure:
    """An embedded figure: PNG bytes, a caption and its display width (px)."""

    png: bytes
    caption: str
    width: int = 760
    wide: bool = False


@dataclasses.dataclass
class Report:
    """Everything the HTML shows, as plain data.

    ``ranking``: :func:`risk_table` rows (best first; ``mix.*`` columns, a
    ``source`` column optional); ``baseline`` its name. Optional tables are
    ``None`` when unavailable, with the reason in ``missing[section]``:
    ``per_eval`` (mixture, eval, mean, lower, upper), ``multiplier`` (mixture,
    median, lower, upper[, prob_above_1]), ``budget`` (eval, stage, share) with ``budget_advice``,
    ``suggestions`` (mix.* plus any columns), ``truth`` (held-out target-scale runs observed
    against predicted: :func:`bayesmix.pipeline.verify.target_truth`) with ``truth_note``, ``backtest`` (one row per stage
    replayed: :meth:`bayesmix.pipeline.discrepancy.Discrepancy.table`). ``diagnostics``: one row per fitted
    part (``part``, ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``,
    ``divergences``, ``ok``, ``problems``). ``figures``: section -> embedded
    figures. ``settings``: label -> value, in order. ``data_summary``: a small
    table describing the run table.
    """

    title: str
    baseline: str
    ranking: pd.DataFrame
    diagnostics: pd.DataFrame
    rank_by: str = "mean"
    prob: float = 0.9
    top: int = 8
    target: str = ""
    per_eval: pd.DataFrame | None = None
    multiplier: pd.DataFrame | None = None
    budget: pd.DataFrame | None = None
    budget_advice: str | None = None
    suggestions: pd.DataFrame | None = None
    suggestions_note: str = ""
    truth: pd.DataFrame | None = None
    truth_note: str = ""
    backtest: pd.DataFrame | None = None
    trust_region: bool = True
    figures: dict[str, list[EmbeddedFigure]] = dataclasses.field(default_factory=dict)
    settings: dict[str, object] = dataclasses.field(default_factory=dict)
    data_summary: pd.DataFrame | None = None
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    rerun_hint: str = "Rerun with longer chains (more warm-up and draws)"
    caveat: str = ""  # plain text put before the recommendation (e.g. the law explains less than a constant)
    created: str = dataclasses.field(default_factory=lambda: _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))

    def __post_init__(self):
        if self.rank_by not in CRITERIA:
            raise ValueError(f"rank_by must be one of {list(CRITERIA)}, got {self.rank_by!r}")
        required = ["mixture", "mean", "lower", "upper", "p_beat", "q90", "cvar"]
        missing = [c for c in required if c not in self.ranking]
        if missing:
            raise KeyError(f"ranking table lacks column(s) {missing} (build it with risk_table)")
        if self.baseline not in set(self.ranking["mixture"].astype(str)):
            raise KeyError(f"baseline {self.baseline!r} is not in the ranking table")

    @property
    def failed(self) -> list[str]:
        """One line per fitted part whose diagnostics failed."""
        bad = self.diagnostics[~self.diagnostics["ok"].astype(bool)] if len(self.diagnostics) else self.diagnostics
        return [f"{row['part']}: {row['problems']}" for _, row in bad.iterrows()]

    @property
    def best(self) -> pd.Series:
        """The recommended mixture: the first row of the ranking inside the trust region of
        the tried mixtures (``inside_support``, :mod:`bayesmix.decide.support`) unless
        ``trust_region`` is False or no row is inside; else the first row."""
        table = self.ranking
        if self.trust_region and "inside_support" in table and table["inside_support"].any():
            return table[table["inside_support"].astype(bool)].iloc[0]
        return table.iloc[0]

    def _why_outside(self, row: pd.Series) -> str:
        """Why a ranked mixture lies outside the trust region, in words."""
        radius = self.ranking.attrs.get("trust_radius", float("nan"))
        reasons = []
        if row["distance"] > radius + 1e-9:
            reasons.append(f"total-variation distance {row['distance']:.2f} to the nearest tried mixture, beyond the "
                           f"design's widest gap {radius:.2f}")
        if str(row.get("outside_range", "") or ""):
            reasons.append(f"its share of {row['outside_range']} lies outside the range the tried mixtures span "
                           "(a domain cut below every tried share can get worse with training, which no run saw)")
        return "; ".join(reasons) or "outside the trust region"

    @property
    def outside_note(self) -> str:
        """Why the top-ranked mixture is not the recommended one (empty when it is)."""
        top, best = self.ranking.iloc[0], self.best
        if str(top["mixture"]) == str(best["mixture"]):
            if "inside_support" in self.ranking and not bool(best["inside_support"]):
                return (f"{best['mixture']} lies outside the trust region of the tried mixtures "
                        f"({self._why_outside(best)}): its prediction is an extrapolation.")
            return ""
        return (f"The lowest predicted loss, {top['mixture']} ({top['mean']:.4f}), lies outside the trust region of "
                f"the tried mixtures ({self._why_outside(top)}); it is not recommended until a run near it "
                "confirms it.")

    def add_figure(self, section: str, fig, caption: str, *, width: int = 760, dpi: int = 110,
                   wide: bool = False) -> None:
        """Embed a matplotlib figure (or PNG bytes) in ``section``; ``wide`` figures take the
        full page width instead of a column."""
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}; sections are {list(SECTIONS)}")
        from bayesmix.report.figures import figure_png

        png = fig if isinstance(fig, bytes) else figure_png(fig, dpi=dpi)
        self.figures.setdefault(section, []).append(EmbeddedFigure(png, caption, width, wide))


# ----------------------------------------------------------------------------- HTML

def _fmt_loss(x) -> str:
    return "" if pd.isna(x) else f"{float(x):.4f}"


def _fmt_mult(x) -> str:
    """A compute multiplier: ``1.48x``; infinite when the baseline never reaches the loss."""
    return "&infin;" if not np.isfinite(float(x)) else f"{float(x):.2f}x"


def _fmt_prob(x) -> str:
    return "&mdash;" if pd.isna(x) else f"{float(x):.0%}" if 0.005 <= float(x) <= 0.995 else (
        "&lt;1%" if float(x) < 0.005 else "&gt;99%")


def _table(frame: pd.DataFrame, *, row_classes: Sequence[str] | None = None, raw: Sequence[str] = ()) -> str:
    """An escaped HTML table; columns named in ``raw`` hold trusted HTML."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f"<td>{v if c in raw else html.escape(str(v))}</td>" for c, v in row.items())
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _proportions_text(row: pd.Series, domains: Sequence[str], k: int = 4) -> str:
    values = sorted(((float(row[MIX_PREFIX + d]), d) for d in domains), reverse=True)
    return ", ".join(f"{d} {v:.2f}" for v, d in values[:k] if v >= 0.005) + (" ..." if len(domains) > k else "")


def ranking_frame(report: Report) -> tuple[pd.DataFrame, list[str]]:
    """The displayed ranking: top ``report.top`` rows plus the baseline; row classes."""
    table = report.ranking
    domains = [c[len(MIX_PREFIX):] for c in mix_columns(table)]
    shown = table.head(report.top)
    if report.baseline not in set(shown["mixture"].astype(str)):
        shown = pd.concat([shown, table[table["mixture"].astype(str) == report.baseline]])
    pct = round(100 * report.prob)
    names = [html.escape(str(m)) for m in shown["mixture"]]
    if "source" in shown:
        names = [f"{n} <small>{html.escape(str(src))}</small>" if str(src) != str(m) else n
                 for n, m, src in zip(names, shown["mixture"], shown["source"])]
    out = pd.DataFrame({"rank": shown[f"rank_{report.rank_by}"].to_numpy(), "mixture": names})
    if len(domains) <= MAX_DOMAIN_COLUMNS:
        for d in domains:
            out[d] = [f"{v:.3f}" for v in shown[MIX_PREFIX + d]]
    elif domains:
        out["proportions"] = [_proportions_text(r, domains) for _, r in shown.iterrows()]
    out["mean loss"] = [_fmt_loss(v) for v in shown["mean"]]
    out[f"{pct}% interval"] = [f"{float(a):.4f} &ndash; {float(b):.4f}" for a, b in zip(shown["lower"], shown["upper"])]
    out["vs baseline"] = [f"{float(v):+.4f}" for v in shown["delta"]] if "delta" in shown else ""
    out["P(beats base)"] = [_fmt_prob(v) for v in shown["p_beat"]]
    out["90th pct"] = [_fmt_loss(v) for v in shown["q90"]]
    out["CVaR 90%"] = [_fmt_loss(v) for v in shown["cvar"]]
    if "distance" in shown:
        out["distance to tried"] = [f"{v:.2f}" + ("" if inside else " (outside)")
                                    for v, inside in zip(shown["distance"], shown["inside_support"])]
    others = [n for n in CRITERIA if n != report.rank_by and f"rank_{n}" in shown]
    if others:
        short = {"mean": "mean", "p_beat": "P", "q90": "q90", "cvar": "CVaR"}
        out[f"ranks by {' / '.join(short[n] for n in others)}"] = [
            " / ".join(str(int(row[f"rank_{n}"])) for n in others) for _, row in shown.iterrows()]
    best = str(report.best["mixture"])
    classes = ["best" if m == best else "baseline" if m == report.baseline else ""
               for m in shown["mixture"].astype(str)]
    return out, classes


def _per_eval_frame(per_eval: pd.DataFrame, prob: float) -> pd.DataFrame:
    """Wide capability table: one row per mixture, one 'mean [lower, upper]' cell per eval."""
    per_eval = per_eval.assign(cell=[f"{m:.4f}<br><small>[{lo:.4f}, {hi:.4f}]</small>" for m, lo, hi in
                                     zip(per_eval["mean"], per_eval["lower"], per_eval["upper"])])
    wide = per_eval.pivot_table(index="mixture", columns="eval", values="cell", aggfunc="first", sort=False)
    evals = list(dict.fromkeys(per_eval["eval"].astype(str)))
    evals = [e for e in evals if e != OVERALL] + ([OVERALL] if OVERALL in evals else [])
    return wide[evals].reset_index()


def _cards(report: Report) -> list[dict]:
    """The headline cards: ``key`` is plain text (names from the data; escaped when rendered),
    ``value`` and ``sub`` are trusted HTML made of numbers only."""
    best = report.best
    pct = round(100 * report.prob)
    cards = [{"key": f"predicted loss{' (' + report.target + ')' if report.target else ''}",
              "value": f"{best['mean']:.4f}", "sub": f"{pct}% interval {best['lower']:.4f} &ndash; {best['upper']:.4f}"}]
    if str(best["mixture"]) != report.baseline:
        base = report.ranking[report.ranking["mixture"].astype(str) == report.baseline].iloc[0]
        cards.append({"key": f"vs baseline ({report.baseline})", "value": f"{best['mean'] - base['mean']:+.4f}",
                      "sub": f"baseline {base['mean']:.4f} [{base['lower']:.4f}, {base['upper']:.4f}]"})
        cards.append({"key": "P(beats baseline)", "value": _fmt_prob(best["p_beat"]),
                      "sub": "share of posterior draws with a lower loss"})
    if report.multiplier is not None and len(report.multiplier):
        row = _multiplier_row(report)
        if row is not None:
            cards.append({"key": "compute multiplier", "value": _fmt_mult(row["median"]),
                          "sub": f"{pct}% interval {_fmt_mult(row['lower'])} &ndash; {_fmt_mult(row['upper'])}"})
    cards.append({"key": "CVaR 90% / 90th pct", "value": f"{best['cvar']:.4f}", "sub": f"90th percentile {best['q90']:.4f}"})
    return cards


def _multiplier_row(report: Report):
    table = report.multiplier
    match = table[table["mixture"].astype(str) == str(report.best["mixture"])]
    return match.iloc[0] if len(match) else None


def _headline(report: Report) -> str:
    best = report.best
    pct = round(100 * report.prob)
    target = f" at {report.target}" if report.target else ""
    text = (f"Train on <b>{html.escape(str(best['mixture']))}</b>: predicted loss{html.escape(target)} "
            f"{best['mean']:.4f} ({pct}% interval {best['lower']:.4f}&ndash;{best['upper']:.4f})")
    if report.outside_note:
        text = html.escape(report.outside_note) + " " + text
    if report.caveat:
        text = f"<b>Not a confident recommendation:</b> {html.escape(report.caveat)} " + text
    if str(best["mixture"]) == report.baseline:
        return text + ", which is the baseline itself: no candidate is predicted to do better."
    return text + (f", {_fmt_prob(best['p_beat'])} probability of beating the baseline "
                   f"<b>{html.escape(report.baseline)}</b>.")


def _disagreement(report: Report) -> str:
    table = report.ranking
    lines = []
    for name, (title, _) in CRITERIA.items():
        if name == report.rank_by:
            continue
        top = table.loc[table[f"rank_{name}"].idxmin(), "mixture"]
        if str(top) != str(report.best["mixture"]):
            lines.append(f"by {title} the best is {top}")
    if not lines:
        return "All four criteria (posterior mean, P(beats baseline), 90th percentile, CVaR) agree on this mixture."
    return "The criteria disagree: " + "; ".join(lines) + ". A risk-averse choice favours the CVaR ranking."


def _diag_line(row: pd.Series) -> str:
    """One part's diagnostics in a few words."""
    rhat = f"max R-hat {row['rhat_max']:.3f}" if pd.notna(row.get("rhat_max")) else "R-hat not computed"
    lanes = row.get("lanes")
    if pd.notna(lanes) and int(lanes) > 1:
        pooled = row.get("rhat_pooled")
        pooled = f"pooled R-hat {pooled:.3f}, " if pd.notna(pooled) else ""
        return (f"{row['part']}: {pooled}{row.get('fail_fraction', 0.0):.0%} of {int(lanes)} lanes above the "
                f"per-lane R-hat threshold, {rhat}, {int(row.get('divergences', 0))} divergences")
    return f"{row['part']}: {rhat}, {int(row.get('divergences', 0))} divergences"


def _diag_frame(diagnostics: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = pd.DataFrame({"part": diagnostics["part"].astype(str)})
    for col, fmt in (("rhat_max", "{:.3f}"), ("rhat_pooled", "{:.3f}"), ("ess_bulk_min", "{:.0f}"),
                     ("ess_tail_min", "{:.0f}"), ("divergences", "{:.0f}"), ("ebfmi_min", "{:.2f}"),
                     ("treedepth_saturation", "{:.0%}"), ("lanes", "{:.0f}"), ("fail_fraction", "{:.0%}")):
        if col in diagnostics and diagnostics[col].notna().any():
            out[col.replace("_", " ")] = [fmt.format(v) if pd.notna(v) else "" for v in diagnostics[col]]
    out["status"] = ['<span class="good">ok</span>' if ok else '<span class="bad">FAILED</span>'
                     for ok in diagnostics["ok"].astype(bool)]
    out["problems"] = diagnostics["problems"].fillna("").astype(str)
    return out, ["" for _ in range(len(out))]


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("bayesmix.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True)


def render_html(report: Report) -> str:
    """The report as one HTML string (no external references)."""
    import jinja2

    from bayesmix import __version__

    safe = jinja2.utils.markupsafe.Markup
    domains = [c[len(MIX_PREFIX):] for c in mix_columns(report.ranking)]
    best = report.best
    ranking, classes = ranking_frame(report)
    raw = [c for c in ranking.columns if "interval" in c or c in ("P(beats base)", "mixture")]
    diag, _ = _diag_frame(report.diagnostics)
    pct = round(100 * report.prob)
    bar = [{"domain": d, "pct": round(100 * float(best[MIX_PREFIX + d]), 1), "text": f"{float(best[MIX_PREFIX + d]):.2f}",
            "colour": DOMAIN_COLOURS[k % len(DOMAIN_COLOURS)]} for k, d in enumerate(domains)]
    context = {
        "title": report.title,
        "subtitle": f"baseline: {report.baseline} · ranked by {CRITERIA[report.rank_by][0]} · "
                    f"{len(report.ranking)} candidate mixtures" + (f" · target {report.target}" if report.target else ""),
        "version": __version__,
        "created": report.created,
        "toc": [(s, SECTION_TITLES[s]) for s in SECTIONS],
        "warnings": report.failed,
        "rerun_hint": report.rerun_hint,
        "diagnostics_line": "; ".join(_diag_line(r) for _, r in report.diagnostics.iterrows()) or "no failures",
        "headline": safe(_headline(report)),
        "best_bar": [b for b in bar if b["pct"] > 0],
        "cards": [{k: v if k == "key" else safe(v) for k, v in c.items()} for c in _cards(report)],
        "disagreement": _disagreement(report),
        "ranking_note": (f"The top {min(report.top, len(report.ranking))} of {len(report.ranking)} candidates, ranked "
                         f"by {CRITERIA[report.rank_by][0]}, and the baseline. Mean and {pct}% interval of the predicted "
                         "loss; P(beats baseline) compares the same posterior draws; the 90th percentile and CVaR "
                         "(mean of the worst 10% of draws) penalise uncertain, extrapolated mixtures."),
        "ranking_table": safe(_table(ranking, row_classes=classes, raw=raw)),
        "prob_pct": pct,
        "capabilities_table": safe(_table(cap := _per_eval_frame(report.per_eval, report.prob),
                                          raw=[c for c in cap.columns if c != "mixture"]))
        if report.per_eval is not None and len(report.per_eval) else None,
        "multiplier_table": None,
        "multiplier_line": "",
        "budget_table": None,
        "budget_advice": report.budget_advice,
        "suggestions_table": None,
        "suggestions_note": report.suggestions_note,
        "truth_table": safe(_table(_truth_frame(report.truth, report.prob)))
        if report.truth is not None and len(report.truth) else None,
        "truth_note": report.truth_note,
        "backtest_table": safe(_table(_backtest_frame(report.backtest, report.prob)))
        if report.backtest is not None and len(report.backtest) else None,
        "diagnostics_table": safe(_table(diag, raw=["status"])),
        "data_table": safe(_table(report.data_summary)) if report.data_summary is not None else None,
        "settings": [(k, str(v)) for k, v in report.settings.items()],
        "missing": {s: report.missing.get(s, "Not available for this fit.") for s in SECTIONS},
        "figures": {s: [{"png": base64.b64encode(f.png).decode("ascii"), "caption": f.caption, "width": f.width,
                         "wide": f.wide} for f in report.figures.get(s, [])] for s in SECTIONS},
    }
    if report.multiplier is not None and len(report.multiplier):
        m = report.multiplier
        shown = pd.DataFrame({"mixture": m["mixture"].astype(str),
                              "multiplier (median)": [_fmt_mult(v) for v in m["median"]],
                              f"{pct}% interval": [f"{_fmt_mult(a)} &ndash; {_fmt_mult(b)}"
                                                   for a, b in zip(m["lower"], m["upper"])]})
        if "prob_above_1" in m:
            shown["P(more than 1x)"] = [_fmt_prob(v) for v in m["prob_above_1"]]
        context["multiplier_table"] = safe(_table(shown, raw=["multiplier (median)", f"{pct}% interval",
                                                              "P(more than 1x)"]))
        row = _multiplier_row(report)
        if row is not None:
            context["multiplier_line"] = safe(
                f"Training on <b>{html.escape(str(row['mixture']))}</b> is as good as <b>{_fmt_mult(row['median'])}</b> "
                f"({pct}% interval {_fmt_mult(row['lower'])}&ndash;{_fmt_mult(row['upper'])}) the steps on "
                f"<b>{html.escape(report.baseline)}</b>.")
    if report.budget is not None and len(report.budget):
        budget = report.budget.pivot_table(index="eval", columns="stage", values="share", aggfunc="sum", sort=False)
        shown = budget.map(lambda v: f"{v:.0%}" if pd.notna(v) else "").reset_index()
        context["budget_table"] = safe(_table(shown))
    if report.suggestions is not None and len(report.suggestions):
        context["suggestions_table"] = safe(_table(_suggestions_frame(report.suggestions)))
    return _environment().get_template("report.html.j2").render(**context)


STAGE_REPLAY = {"step": "first half of each curve → its last checkpoint",
                "size": "smaller sizes → the next size", "mix": "all mixtures but one → that one"}


def _backtest_frame(table: pd.DataFrame, prob: float) -> pd.DataFrame:
    """The discrepancy table (:meth:`bayesmix.pipeline.discrepancy.Discrepancy.table`) as shown."""
    pct = round(100 * prob)

    def per_unit(row, name):
        return "" if pd.isna(row[name]) else f"{row[name]:+.3f}" if name == "bias_median" else f"{row[name]:.3f}"

    rows = []
    for _, row in table.iterrows():
        source = {"backtests": f"{int(row['backtests'])} backtests", "prior": "prior (nothing to replay)"}.get(
            row["source"], f"borrowed from {row['source']}")
        at_target = ("per mixture (grows with its distance)" if pd.isna(row["target_distance"]) else
                     f"{row['target_mean']:+.3f} ± {row['target_sd']:.3f} at {row['target_distance']:.2f}")
        coverage = ("" if pd.isna(row["coverage_with"]) else
                    f"{row['coverage_without']:.0%} → {row['coverage_with']:.0%}")
        rows.append({"stage": row["stage"], "replayed": STAGE_REPLAY.get(row["stage"], ""), "from": source,
                     "distance": row["distance"], "largest miss": "" if pd.isna(row["max_abs_miss"])
                     else f"{row['max_abs_miss']:.3f}", "bias / unit": per_unit(row, "bias_median"),
                     "spread / unit": per_unit(row, "k_median"), "at the target (mean ± sd)": at_target,
                     f"{pct}% coverage (law alone → with discrepancy)": coverage})
    return pd.DataFrame(rows)


def _truth_frame(truth: pd.DataFrame, prob: float) -> pd.DataFrame:
    """The overall loss of each held-out target-scale run: observed, predicted interval, inside it."""
    rows = truth[truth["eval"] == OVERALL] if (truth["eval"] == OVERALL).any() else truth
    return pd.DataFrame({"run": rows["run"].astype(str), "eval": rows["eval"].astype(str),
                         "observed": [_fmt_loss(v) for v in rows["observed"]],
                         "predicted (mean)": [_fmt_loss(v) for v in rows["mean"]],
                         f"{round(100 * prob)}% interval": [f"{_fmt_loss(a)} - {_fmt_loss(b)}"
                                                            for a, b in zip(rows["lower"], rows["upper"])],
                         "inside": ["yes" if c else "NO" for c in rows["covered"]],
                         "miss": [f"{v:+.3f}" for v in rows["miss"]],
                         **({"mixture in trust region": ["yes" if c else "no (extrapolated)"
                                                         for c in rows["inside_support"]]}
                            if "inside_support" in rows else {})})


def _suggestions_frame(suggestions: pd.DataFrame) -> pd.DataFrame:
    out = suggestions.copy()
    out.columns = [str(c)[len(MIX_PREFIX):] if str(c).startswith(MIX_PREFIX) else str(c) for c in out.columns]
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [f"{v:.4f}" if pd.notna(v) else "" for v in out[col]]
    out.insert(0, "#", range(1, len(out) + 1))
    return out


def write_report(report: Report, path, *, pdf: bool = False) -> Path:
    """Write the HTML (atomically) to ``path``; with ``pdf`` also ``path`` with suffix .pdf."""
    path = Path(path)
    text = render_html(report)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    if pdf:
        html_to_pdf(path, path.with_suffix(".pdf"))
    return path


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """A headless-capable Chromium on PATH (or ``BAYESMIX_BROWSER``), else None."""
    env = os.environ.get("BAYESMIX_BROWSER")
    if env:
        return env
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def html_to_pdf(html_path, pdf_path, *, timeout: float = 120.0) -> Path:
    """Print an HTML file to PDF with headless Chromium (raises FileNotFoundError without one)."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("PDF output needs Chromium or Chrome on PATH (or BAYESMIX_BROWSER); "
                                "the HTML report was written")
    pdf_path = Path(pdf_path).resolve()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
           f"--print-to-pdf={pdf_path}", Path(html_path).resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    if not pdf_path.is_file():
        raise RuntimeError(f"{browser} did not write {pdf_path}")
    return pdf_path


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


def _loss_surface_fn(params: Mapping[str, np.ndarray], law, data, *, max_draws: int = 200, seed: int = 0,
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
    from bayesmix.report import figures as plots

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
    from bayesmix.report import figures as plots

    if acquisition is None or not len(acquisition):
        return
    value = next((c for c in ("log_ei", "logei", "acquisition", "value") if c in acquisition), None)
    if value is None:
        return
    fig = plots.acquisition_landscape(acquisition, value=value, observed=observed, suggested=report.suggestions)
    report.add_figure("suggestions", fig, f"Acquisition ({value}) over candidate mixtures; crosses: mixtures "
                      "already run; stars: the suggested next runs.")


def _finish(report: Report, *, overall: xr.DataArray, acquisition, observed, surface_fn, domains,
            extra_model_figures=()) -> Report:
    """Figures shared by every report source."""
    from bayesmix.report import figures as plots

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


def _assemble(*, title, baseline_row, named, domains, predict_draws, rank_by, prob, top, seed, n_random,
              candidates, suggestions, suggestions_note, budget, budget_advice, multiplier, missing, diagnostics,
              settings, summary, target) -> tuple[Report, xr.DataArray]:
    """Rank candidates from ``predict_draws(mixtures) -> (draw, point)`` and build the report."""
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
    report = Report(title=title, baseline=str(baseline_row["name"]), ranking=table, diagnostics=diagnostics,
                    rank_by=rank_by, prob=prob, top=top, target=target, per_eval=per_eval, multiplier=multiplier,
                    budget=_budget_long(budget), budget_advice=budget_advice, suggestions=suggestions,
                    suggestions_note=suggestions_note, settings=settings, data_summary=summary, missing=missing)
    return report, overall


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
    the landscape figure) are shown when given. ``runs``: the run table, for the
    data summary. ``truth``: held-out runs at the target scale (a run table, never
    fitted), checked against the predictions (:func:`bayesmix.pipeline.verify.target_truth`).
    """
    from bayesmix.pipeline.runners import lanes_failed, lanes_problem

    domains = result.domains
    step_labels = result.outputs["step"].labels
    named_all = name_mixtures(step_labels[["run", "mixture", *mix_columns(step_labels)]])
    fitted = set(result.observed_mixtures()["mixture"].astype(str))
    named = named_all[named_all["mixture"].astype(str).isin(fitted)].reset_index(drop=True)
    baseline_row = resolve_baseline(baseline, named, domains)
    plan = result.plan

    def predict_draws(mixtures):
        return result.predict(mixtures, kind="mean", draws=True, seed=seed)

    stage_names = {"step": "step law (one lane per curve)", "size": "size law (one lane per dataset)",
                   "mix": "mixing law (one lane per dataset)"}
    rows = []
    for name, diag in result.diagnostics.items():
        lanes = int(diag.get("lanes", 1))
        frac = float(diag.get("fail_fraction", 0.0))
        ok = not lanes_failed(diag)
        problems = "" if ok else lanes_problem(diag)
        rows.append({"part": stage_names.get(name, name), "rhat_max": diag.get("rhat_max", np.nan),
                     "rhat_pooled": diag.get("rhat_pooled", np.nan),
                     "divergences": diag.get("divergences", 0), "lanes": lanes, "fail_fraction": frac,
                     "ok": ok, "problems": problems})
    diagnostics = pd.DataFrame(rows)
    target = f"{plan.target_size:,} parameters, {plan.target_step:,} steps"
    p = result.pipeline
    info = {"target size": f"{plan.target_size:,} non-embedding parameters", "target step": f"{plan.target_step:,}",
            "stages fitted": ", ".join(result.stages), "propagation mode": p.mode,
            "upstream draws (D)": p.n_draws, "posterior draws pooled": result.n_draws_total,
            "min step (warm-up cut)": p.min_step, "eval weights": _weights_text(result),
            "step-law sampler": _config_text(p.curve_config), "lane sampler": _config_text(p.lane_config),
            "single-fit sampler": _config_text(p.fit_config),
            "seconds per stage": ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()),
            "seed": result.seed, "candidates ranked": f"tried + baseline + given + {n_random} Dirichlet(1) draws",
            **(settings or {})}
    rising = result.diagnostics.get("step", {}).get("rising") or []
    if rising:
        info["curves rising with steps (law violated)"] = (f"{len(rising)}: {', '.join(rising[:12])}"
                                                           + (" ..." if len(rising) > 12 else ""))
    missing = {"multiplier": "Not computed for this report.",
               "budget": "Not computed for this report (it refits the pipeline with each stage's uncertainty "
                         "switched off).",
               "suggestions": "No suggestions were computed for this report.",
               "truth": "No run at the target scale was given to check the predictions against; "
                        "bayesmix verify trains the recommended mixture and the baseline there."}
    if not plan.step:
        missing["multiplier"] = ("Not available: the compute multiplier goes through the step law, and every run "
                                 "already ends at the target step.")
    if budget_advice is None and getattr(budget, "recommendation", None):
        text = str(budget.recommendation)
        budget_advice = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    if optimum:
        from bayesmix.decide.decisions import predicted_optimum

        best, _ = predicted_optimum(result, seed=seed)
        row = pd.DataFrame([{"mixture": "optimum", "source": "optimum",
                             **{MIX_PREFIX + d: float(best.mixture[d]) for d in domains}}])
        candidates = row if candidates is None else pd.concat([candidates, row], ignore_index=True)
        info["optimum"] = (f"projected-gradient refinement of the posterior mean over the simplex "
                           f"({'moved from its start' if best.moved else 'at its start'}, "
                           f"{'feasible' if best.feasible else 'INFEASIBLE'})")
    report, overall = _assemble(
        title=title, baseline_row=baseline_row, named=named, domains=domains, predict_draws=predict_draws,
        rank_by=rank_by, prob=prob, top=top, seed=seed, n_random=n_random, candidates=candidates,
        suggestions=suggestions, suggestions_note=suggestions_note, budget=budget, budget_advice=budget_advice,
        multiplier=multiplier, missing=missing, diagnostics=diagnostics, settings=info,
        summary=data_summary(runs) if runs is not None else None, target=target)
    if multiplier is None and n_multiplier > 0 and plan.step:
        base_label = named.loc[named["name"].astype(str) == report.baseline, "mixture"]
        if len(base_label):
            report.multiplier = multiplier_table(result, report.ranking, str(base_label.iloc[0]),
                                                 baseline_name=report.baseline, n=n_multiplier, prob=prob)
        else:
            report.missing["multiplier"] = (f"Not available: the baseline {report.baseline!r} was not run, so it "
                                            "has no step law to measure the multiplier with.")
    if truth is not None:
        add_truth(report, result, truth, prob=prob, seed=seed)
    if result.discrepancy is not None:
        report.backtest = result.discrepancy.table(prob)
    params = {k: result.params[k] for k in ("level", "floor", "t", "sigma") if k in result.params}
    mix = result.stages["mix"]
    surface = _loss_surface_fn(params, mix.law, mix.data, seed=seed)
    return _finish(report, overall=overall, acquisition=acquisition, observed=named, surface_fn=surface,
                   domains=domains, extra_model_figures=_pipeline_figures(result, report, named))


def add_truth(report: Report, result, runs: pd.DataFrame, *, prob: float, seed: int) -> None:
    """Check ``result``'s predictions against held-out target-scale ``runs``: the table, a
    sentence on coverage and error, and the predicted-against-observed figure."""
    from bayesmix.report.figures import predicted_vs_observed
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


def _config_text(config) -> str:
    return (f"{config.num_chains} chains x {config.num_samples} draws after {config.num_warmup} warm-up"
            + (", dense mass" if getattr(config, "dense_mass", False) else ""))


def _pipeline_figures(result, report: Report, named: pd.DataFrame) -> list:
    """Fit-vs-input and fan charts of a pipeline result: [(figure, caption)]."""
    from bayesmix.report import figures as plots

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
    from bayesmix.report import figures as plots

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
    from bayesmix.report import figures as plots

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
                                 "ok": d.ok, "problems": "; ".join(d.problems)}])
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
    report, overall = _assemble(
        title=title, baseline_row=baseline_row, named=named, domains=domains, predict_draws=predict_draws,
        rank_by=rank_by, prob=prob, top=top, seed=seed, n_random=n_random, candidates=candidates,
        suggestions=suggestions, suggestions_note=suggestions_note, budget=None, budget_advice=None,
        multiplier=None, missing=missing, diagnostics=diagnostics, settings=info, summary=data_summary(obs),
        target=target)
    report.rerun_hint = rerun
    report.caveat = "; ".join(adequacy_problems(d.loo_r2 or {}))
    _fit_figures(fit, report, obs)
    surface = _loss_surface_fn(fit.posterior(), fit.law, fit.data, seed=seed)
    return _finish(report, overall=overall, acquisition=acquisition, observed=named, surface_fn=surface,
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


def _fit_figures(fit, report: Report, obs: pd.DataFrame) -> None:
    from bayesmix.report import figures as plots

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
