"""``bayesmix compare``: rank laws by PSIS-LOO, with held-out error on a test table."""

from __future__ import annotations

import argparse

from bayesmix.cli.arguments import named_values
from bayesmix.cli.fit import add_sampler_arguments, check_sampler_arguments, sampler_from_args

HELP = """Fit several laws to the same losses with NUTS and rank them by PSIS-LOO
(expected log predictive density, higher is better; elpd_diff and its standard
error dse say how far each law is behind the best). Observations with Pareto
k > 0.7 are counted and warned about: their LOO estimate is unreliable. With
--test, every law also predicts the held-out runs: MAE, Spearman and the
coverage of the 50% and 90% predictive intervals.

Laws: mix (M4), implicit (K latent eval domains), m1, m2, m3 (the paper's
alternative forms), bimix (own proportion x step; needs --epsilon when some
run has a zero share of an eval domain), multiscale (M4 over (size, step)
groups). Every law must see the same losses, e.g. one eval domain (--evals).

--latent takes one K or a grid (e.g. 5,10,30): each K is its own row
(implicit_K5, ...), and the weight column then stacks the K values. With
--combine stacking each law's chains start from their own point fits and are
combined by stacking (for posteriors whose chains do not mix; use --chains 8
or more); a chain that fails its own checks gets weight 0.

examples:
  bayesmix compare runs.csv --laws mix,implicit,bimix --evals pile_cc --epsilon 1e-3
  bayesmix compare runs.csv --laws mix,implicit --latent 5,10,30 --combine stacking --chains 8
  bayesmix compare train.csv --laws mix,m1,m2 --test test.csv --out ranking.csv
"""


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one law, e.g. mix,implicit")
    return names


def _counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"give positive integers, e.g. 30 or 5,10,30; got {text!r}")
    return counts


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="rank laws by PSIS-LOO (and held-out error)", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="run table to fit: .csv, .parquet or .jsonl")
    p.add_argument("--laws", type=_names, default=["mix", "implicit"],
                   help="comma-separated laws to compare (default mix,implicit)")
    p.add_argument("--test", help="held-out run table: adds test MAE, Spearman and interval coverage")
    p.add_argument("--out", help="write the ranking here (.csv, .parquet or .jsonl)")
    p.add_argument("--size", type=int, help="model size to fit (tables with several sizes)")
    p.add_argument("--step", type=int, help="checkpoint to use (default: each run's last)")
    p.add_argument("--evals", help="comma-separated eval domains (every law sees the same losses)")
    p.add_argument("--weights", type=named_values, help="eval weights of the overall loss, e.g. web=0.5,code=0.5")
    p.add_argument("--latent", type=_counts,
                   help="implicit: number of latent eval domains K, or a comma-separated grid (default 30)")
    p.add_argument("--epsilon", type=float, help="bimix: raise own proportions below this to it (allows zeros)")
    add_sampler_arguments(p)
    p.set_defaults(func=run)


def comparison_options(args) -> tuple[dict, dict]:
    """(options shared by every law, law-specific options) from the command line."""
    common = {"size": args.size, "step": args.step, "evals": args.evals.split(",") if args.evals else None,
              "weights": args.weights}
    latent = args.latent[0] if args.latent and len(args.latent) == 1 else None
    specific = {"implicit": {"latent": latent}, "bimix": {"epsilon": args.epsilon}}
    specific = {law: {k: v for k, v in opts.items() if v is not None} for law, opts in specific.items()
                if law in args.laws}
    return {k: v for k, v in common.items() if v is not None}, {k: v for k, v in specific.items() if v}


def comparison_laws(args) -> list[str] | dict:
    """The laws to compare: the names given, with the implicit law expanded over a K grid."""
    from bayesmix.inference.compare import latent_grid

    if not args.latent or len(args.latent) == 1 or "implicit" not in args.laws:
        return list(args.laws)
    out = {}
    for name in args.laws:
        out.update(latent_grid(args.latent) if name == "implicit" else {name: name})
    return out


def run(args) -> int:
    import pandas as pd

    from bayesmix.inference.compare import compare_laws
    from bayesmix.data.table import read_runs, write_table
    from bayesmix.laws import get_law
    from bayesmix.data.io import TABLE_SUFFIXES, check_output

    for name in args.laws:
        get_law(name)  # unknown names fail before any fitting
    check_sampler_arguments(args)
    if args.out:
        check_output(args.out, suffixes=TABLE_SUFFIXES, inputs=[args.runs, args.test], what="table")
    runs = read_runs(args.runs)
    test = read_runs(args.test) if args.test else None
    common, specific = comparison_options(args)
    table = compare_laws(runs, comparison_laws(args), seed=args.seed, test=test, sampler=sampler_from_args(args),
                         options=specific, strict=args.strict, combine=args.combine, **common)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(4).to_string())
    if args.out:
        write_table(table.reset_index(), args.out)
        print(f"\nwrote {args.out}")
    return 0
