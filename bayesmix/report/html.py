"""A :class:`~bayesmix.report.document.Report` as one self-contained HTML file (figures as base64 PNG),
and as PDF through a headless browser.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns
from bayesmix.laws.overall import OVERALL
from bayesmix.data.io import atomic_write
from bayesmix.report.document import CRITERIA, SECTION_TITLES, SECTIONS, Report


STAGE_REPLAY = {"step": "first half of each curve → its last checkpoint",
                "size": "smaller sizes → the next size", "mix": "all mixtures but one → that one",
                "face": "nothing: no run cut a domain this far (a prior, upward only)"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DOMAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")


MAX_DOMAIN_COLUMNS = 6


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
    if report.confidence_note:
        trusted = report.trusted
        cards.append({"key": f"best-ranked, not confident ({trusted['mixture']})",
                      "value": _fmt_prob(trusted["p_beat"]),
                      "sub": f"P(beats baseline), below the {round(100 * report.confidence)}% a change needs"})
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
    notes = " ".join(n for n in (report.outside_note, report.confidence_note) if n)
    if notes:
        text = html.escape(notes) + " " + text
    if report.caveat:
        text = f"<b>Not a confident recommendation:</b> {html.escape(report.caveat)} " + text
    if str(best["mixture"]) == report.baseline:
        return text + (", which is the baseline itself." if report.confidence_note else
                       ", which is the baseline itself: no candidate is predicted to do better.")
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
    if row.get("notes") and pd.isna(row.get("rhat_max")) and pd.isna(row.get("rhat_pooled")):
        return f"{row['part']}: {row['notes']}"  # a posterior without chains (the exact grid)
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
    if "notes" in diagnostics and diagnostics["notes"].fillna("").astype(bool).any():
        out["mode of inference"] = diagnostics["notes"].fillna("").astype(str)  # e.g. chains combined by stacking
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
        loss = {"loss": row["eval"]} if "eval" in row else {}
        rows.append({**loss, "stage": row["stage"], "replayed": STAGE_REPLAY.get(row["stage"], ""), "from": source,
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
