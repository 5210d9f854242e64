"""``bayesmix report``: a self-contained, risk-aware HTML report from a saved fit."""

from __future__ import annotations

import argparse

HELP = """Write one self-contained HTML file (figures embedded, readable offline):
the recommended mixture and runner-ups ranked by posterior mean, probability of
beating the baseline, 90th percentile and CVaR; per-eval-domain losses with
intervals; suggested next runs (when given); fit diagnostics with a warning
block when they fail; and the data and settings used.

FIT is a mixing-law fit saved by `bayesmix fit RUNS --law mix --out FIT`.
The baseline is a tried mixture (its run name, or the part of the run names
before '@'), explicit proportions ('code=0.5,web=0.5'), or 'uniform'.

examples:
  bayesmix report fit.nc --baseline uniform --out report.html
  bayesmix report fit.nc --baseline code=0.5,web=0.3,books=0.2 --rank-by cvar --out report.html
  bayesmix report fit.nc --baseline r000 --candidates my_mixtures.csv --suggestions next.csv --pdf --out r.html
"""

CRITERIA = ("mean", "p_beat", "q90", "cvar")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a self-contained HTML report from a fit",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fit", help="a mixing-law fit (.nc) written by `bayesmix fit --law mix`, or a pipeline folder "
                   "written by `bayesmix pipeline --out`")
    p.add_argument("--runs", help="pipeline: the run table it was fitted on (for the data summary and fan charts)")
    p.add_argument("--baseline", default="uniform",
                   help="the mixture to beat: a tried mixture's name, DOMAIN=P,... proportions, or 'uniform' "
                        "(default uniform)")
    p.add_argument("--out", required=True, help="where to write the report (.html)")
    p.add_argument("--candidates", help="extra mixtures to rank (CSV/Parquet with mix.<domain> or domain columns, "
                                        "optional 'mixture' names)")
    p.add_argument("--suggestions", help="suggested next runs to show (CSV/Parquet, e.g. from `bayesmix suggest`)")
    p.add_argument("--random", type=int, default=1000, dest="n_random",
                   help="random Dirichlet(1) mixtures added to the candidates (default 1000)")
    p.add_argument("--rank-by", default="mean", choices=CRITERIA,
                   help="criterion of the recommendation: posterior mean, P(beats baseline), 90th percentile or "
                        "CVaR (default mean; every criterion is shown)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="P(beats baseline) a mixture needs to be recommended instead of the baseline (default 0.9; "
                        "0 recommends the best-ranked mixture whatever its probability)")
    p.add_argument("--top", type=int, default=8, help="candidates listed (default 8)")
    p.add_argument("--prob", type=float, default=0.9, help="credible interval mass (default 0.9)")
    p.add_argument("--title", default="bayesmix: which data mixture to train on", help="report title")
    p.add_argument("--pdf", action="store_true", help="also print the report to PDF (needs Chromium or Chrome)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from bayesmix.data.table import read_rows
    from bayesmix.pipeline.store import load_result
    from bayesmix.data.io import HTML_SUFFIXES, check_output
    from bayesmix.data.table import read_runs
    from bayesmix.report.build import report_from_fit, report_from_pipeline
    from bayesmix.report.html import write_report

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.n_random < 0:
        raise ValueError(f"--random must be non-negative, got {args.n_random}")
    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must lie in (0, 1), got {args.prob}")
    if not 0 <= args.confidence < 1:
        raise ValueError(f"--confidence must lie in [0, 1), got {args.confidence}")
    inputs = [args.fit, args.candidates, args.suggestions, args.runs]
    out = check_output(args.out, suffixes=HTML_SUFFIXES, inputs=inputs, what="report")
    if args.pdf:
        check_output(out.with_suffix(".pdf"), suffixes=(".pdf",), inputs=inputs, option="--pdf", what="PDF")
    fit = load_result(args.fit)
    pipeline = hasattr(fit, "stages")
    if args.runs and not pipeline:
        raise ValueError("--runs goes with a pipeline folder; a law fit holds its own run table")
    build = (report_from_pipeline if pipeline else report_from_fit)
    extra = {"runs": read_runs(args.runs) if args.runs else None} if pipeline else {}
    report = build(
        fit, **extra, baseline=args.baseline, candidates=read_rows(args.candidates, "candidates table") if args.candidates else None,
        suggestions=read_rows(args.suggestions, "suggestions table") if args.suggestions else None, n_random=args.n_random,
        rank_by=args.rank_by, confidence=args.confidence, top=args.top, prob=args.prob, seed=args.seed,
        title=args.title,
        settings={"pipeline folder" if pipeline else "fit file": args.fit})
    path = write_report(report, args.out, pdf=args.pdf)
    best = report.best
    print(f"recommended: {best['mixture']}  loss {best['mean']:.4f} "
          f"[{best['lower']:.4f}, {best['upper']:.4f}]  P(beats {report.baseline}) "
          + ("-" if best["mixture"] == report.baseline else f"{best['p_beat']:.0%}"))
    if report.failed:
        print("warning: convergence diagnostics failed: " + "; ".join(report.failed))
    print(f"report written to {path.resolve()}" + (f" (and {path.with_suffix('.pdf').resolve()})" if args.pdf else ""))
    return 0
