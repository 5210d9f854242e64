"""``bayesmix fit``: fit one law to a run table with NUTS and save it."""

from __future__ import annotations

import argparse

from bayesmix.cli.arguments import named_values

HELP = """Fit a law to a run table (CSV, Parquet or JSONL in the tidy schema:
run, size, step, eval, loss, mix.<domain>...) with NUTS, print the diagnostics
and a parameter summary, and save the fit as one netCDF file.

examples:
  bayesmix fit runs.csv --law mix --out fit.nc
  bayesmix fit runs.parquet --law step --min-step 1000 --out steps.nc
  bayesmix fit runs.csv --law mix --size 1000000 --prior interaction_scale=1 --strict
"""


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """NUTS options shared by commands that sample."""
    group = parser.add_argument_group("sampler")
    group.add_argument("--chains", type=int, default=4, help="number of chains (default 4)")
    group.add_argument("--warmup", type=int, default=1000, help="warm-up iterations per chain (default 1000)")
    group.add_argument("--draws", type=int, default=1000, help="kept draws per chain (default 1000)")
    group.add_argument("--chain-method", default="vectorized", choices=["vectorized", "parallel", "sequential"],
                       help="how chains run: vectorised on one device (default), parallel over devices, or in turn")
    group.add_argument("--combine", choices=("pooled", "stacking"), default="pooled",
                       help="pool the chains (default) or, for posteriors whose chains do not mix, start each "
                            "from its own point fit and combine them by stacking (use --chains 8 or more)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--strict", action="store_true", help="fail (exit 2) when convergence diagnostics fail")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_sampler_arguments(args) -> None:
    """Fail at once on sampler settings NUTS cannot run with."""
    for name in ("chains", "draws"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")


def sampler_from_args(args):
    from bayesmix.inference.nuts import SamplerConfig

    return SamplerConfig(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws,
                         chain_method=args.chain_method, progress_bar=False if args.no_progress else None)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit a law with NUTS and save it", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="run table: .csv, .parquet or .jsonl")
    p.add_argument("--law", default="mix", help="law to fit: step, size, mix, ... (default mix)")
    p.add_argument("--out", required=True, help="where to write the fit (.nc)")
    p.add_argument("--size", type=int, help="model size to fit (mixing law on a multi-size table)")
    p.add_argument("--step", type=int, help="checkpoint to use (default: each run's last)")
    p.add_argument("--min-step", type=int, help="step law: ignore checkpoints below this step (warm-up)")
    p.add_argument("--evals", help="comma-separated eval domains to fit (default all)")
    p.add_argument("--weights", type=named_values, help="mixing law: eval weights, e.g. web=0.5,code=0.5")
    p.add_argument("--prior", type=named_values, default={}, help="prior overrides, e.g. noise_scale=0.1")
    add_sampler_arguments(p)
    p.set_defaults(func=run)


def law_options(args) -> dict:
    """The law options given on the command line."""
    options = {"size": args.size, "step": args.step, "min_step": args.min_step,
               "evals": args.evals.split(",") if args.evals else None, "weights": args.weights}
    return {k: v for k, v in options.items() if v is not None}


def run(args) -> int:
    from bayesmix.data.table import read_runs
    from bayesmix.inference.fit import fit
    from bayesmix.laws import get_law, resolve_priors
    from bayesmix.data.io import FIT_SUFFIXES, check_output

    check_output(args.out, suffixes=FIT_SUFFIXES, inputs=[args.runs], what="fit (netCDF)")
    get_law(args.law)
    resolve_priors(args.law, args.prior)
    check_sampler_arguments(args)
    runs = read_runs(args.runs)
    result = fit(runs, args.law, seed=args.seed, priors=args.prior, sampler=sampler_from_args(args),
                 combine=args.combine, strict=args.strict, **law_options(args))
    path = result.save(args.out)
    d = result.diagnostics
    print(result.summary().round(4).to_string())
    print(f"\ndiagnostics: R-hat max {d.rhat_max:.3f}, bulk ESS min {d.ess_bulk_min:.0f}, "
          f"tail ESS min {d.ess_tail_min:.0f}, divergences {d.divergences}, E-BFMI min {d.ebfmi_min:.2f}"
          + ("" if d.ok else "  <-- FAILED: " + "; ".join(d.problems)))
    for note in d.notes:
        print(note)
    print(f"saved {args.law} fit to {path}")
    return 0
