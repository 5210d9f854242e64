"""``bayesmix predict``: predictions with credible intervals from a saved fit."""

from __future__ import annotations

import argparse

HELP = """Predict from a saved fit (bayesmix fit --out FIT). Give what the law predicts at:
mixtures for the mixing law (a CSV/Parquet/JSONL with one column per domain,
bare or as mix.<domain>, optional 'mixture' label column), steps for the step
law, sizes for the size law. Prints and optionally writes a table with the
posterior predictive mean, sd and the central interval.

examples:
  bayesmix predict fit.nc --mixtures candidates.csv --out predictions.csv
  bayesmix predict steps.nc --steps 30000,100000 --prob 0.5
"""


def _numbers(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict with intervals from a saved fit", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fit", help="a fit written by 'bayesmix fit --out', or a pipeline folder written by "
                   "'bayesmix pipeline --out' (--mixtures only)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mixtures", help="file of mixtures (mixing laws)")
    where.add_argument("--steps", type=_numbers, help="comma-separated steps (step law)")
    where.add_argument("--sizes", type=_numbers, help="comma-separated model sizes (size law)")
    p.add_argument("--prob", type=float, default=0.9, help="credible interval mass (default 0.9)")
    p.add_argument("--kind", default="observation", choices=["observation", "mean"],
                   help="'observation' includes measurement noise (default); 'mean' is the law alone")
    p.add_argument("--out", help="write the table here (.csv, .parquet or .jsonl)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    p.set_defaults(func=run)


def predictions(result, args):
    """The prediction table of a law fit (at mixtures, steps or sizes) or of a pipeline (at mixtures)."""
    from bayesmix.data.table import read_rows

    mixtures = read_rows(args.mixtures, "mixtures table") if args.mixtures else None
    if hasattr(result, "stages"):  # a pipeline predicts mixtures at its target scale only
        if args.steps or args.sizes:
            raise ValueError(f"{args.fit} is a pipeline: it predicts mixtures at its target scale (--mixtures), "
                             "not other steps or sizes")
        return result.predict(mixtures, prob=args.prob, kind=args.kind, seed=args.seed)
    where = ({"mixtures": mixtures} if mixtures is not None else {"steps": args.steps} if args.steps
             else {"sizes": args.sizes})
    return result.predict(prob=args.prob, kind=args.kind, seed=args.seed, **where)


def run(args) -> int:
    from bayesmix.data.table import write_table
    from bayesmix.pipeline.store import load_result
    from bayesmix.data.io import TABLE_SUFFIXES, check_output

    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must lie in (0, 1), got {args.prob}")
    if args.out:
        check_output(args.out, suffixes=TABLE_SUFFIXES, inputs=[args.fit, args.mixtures], what="table")
    table = predictions(load_result(args.fit), args)
    print(table.round(4).to_string(index=False))
    if args.out:
        write_table(table, args.out)
        print(f"wrote {len(table)} predictions to {args.out}")
    return 0
