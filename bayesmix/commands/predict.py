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
    p.add_argument("fit", help="a fit written by 'bayesmix fit --out'")
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


def run(args) -> int:
    from bayesmix.data import read_rows, write_table
    from bayesmix.fit import load_fit
    from bayesmix.outputs import TABLE_SUFFIXES, check_output

    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must lie in (0, 1), got {args.prob}")
    if args.out:
        check_output(args.out, suffixes=TABLE_SUFFIXES, inputs=[args.fit, args.mixtures], what="table")
    result = load_fit(args.fit)
    if args.mixtures:
        inputs = {"mixtures": read_rows(args.mixtures, "mixtures table")}
    elif args.steps:
        inputs = {"steps": args.steps}
    else:
        inputs = {"sizes": args.sizes}
    table = result.predict(prob=args.prob, kind=args.kind, seed=args.seed, **inputs)
    print(table.round(4).to_string(index=False))
    if args.out:
        write_table(table, args.out)
        print(f"wrote {len(table)} predictions to {args.out}")
    return 0
