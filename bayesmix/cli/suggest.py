"""``bayesmix suggest``: the next mixtures to run, from a saved fit."""

from __future__ import annotations

import argparse

from bayesmix.cli.arguments import proportions

HELP = """Suggest the next q mixtures to run from a saved mixing-law fit (bayesmix fit
--out FIT): a batch chosen greedily by qLogEI (expected improvement over the best
posterior mean among the mixtures already run, in log space) over the simplex
with per-domain bounds. Prints and optionally writes one row per suggestion:
the proportions, the acquisition value, LogEI and expected improvement of the
mixture alone, P(improvement), the predicted loss (mean, sd, central interval),
the nearest mixture already run and its distance (total variation: the share
of tokens that would move).

Bounds: --r-max/--r-min/--fixed take DOMAIN=PROPORTION lists; --tokens with
--target-tokens sets r_max = tokens available / target tokens per domain.

examples:
  bayesmix suggest fit.nc --q 4 --r-max code=0.3,papers=0.2 --out next.csv
  bayesmix suggest fit.nc --q 2 --fixed web=0.5 --acquisition ucb
  bayesmix suggest fit.nc --tokens web=4e10,code=5e9,books=2e9 --target-tokens 2e10
  bayesmix suggest fit.nc --pool candidates.csv --q 8      # choose among given mixtures only
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("suggest", help="the next mixtures to run (qLogEI over the bounded simplex)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fit", help="a mixing-law fit written by 'bayesmix fit --out' (.nc), or a pipeline folder "
                   "written by 'bayesmix pipeline --out'")
    p.add_argument("--q", type=int, default=4, help="mixtures to suggest (default 4)")
    p.add_argument("--r-max", type=proportions, help="upper bounds, DOMAIN=PROPORTION,...")
    p.add_argument("--r-min", type=proportions, help="lower bounds, DOMAIN=PROPORTION,...")
    p.add_argument("--fixed", type=proportions, help="pinned proportions, DOMAIN=PROPORTION,...")
    p.add_argument("--tokens", type=proportions, help="tokens available per domain, DOMAIN=COUNT,... (every domain; "
                   "with --target-tokens gives r_max)")
    p.add_argument("--target-tokens", type=float, help="tokens of the target run (with --tokens)")
    p.add_argument("--acquisition", default="logei", choices=["logei", "pi", "ucb"],
                   help="batch acquisition: qLogEI (default), smoothed log qPI or qUCB")
    p.add_argument("--eval", help="eval domain to minimise (default: the weighted overall loss)")
    p.add_argument("--pool", help="file of candidate mixtures: suggest only among them")
    p.add_argument("--candidates", help="file of extra starting mixtures for the search")
    p.add_argument("--steps", type=int, default=150, help="gradient refinement steps per greedy pick (0: none)")
    p.add_argument("--max-draws", type=int, default=512, help="posterior draws used, a seeded subset (default 512)")
    p.add_argument("--prob", type=float, default=0.9, help="credible interval mass (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", help="write the suggestions here (.csv, .parquet or .jsonl)")
    p.set_defaults(func=run)


def build_bounds(args, domains: list[str]):
    """SimplexBounds from the command-line options (token budget or explicit r_max)."""
    from bayesmix.decide.simplex import SimplexBounds

    if (args.tokens is None) != (args.target_tokens is None):
        raise ValueError("--tokens and --target-tokens go together")
    if args.tokens is not None:
        if args.r_max:
            raise ValueError("give either --r-max or --tokens/--target-tokens, not both")
        unknown = sorted(set(args.tokens) - set(domains))
        missing = [d for d in domains if d not in args.tokens]
        if unknown or missing:
            raise ValueError(f"--tokens must name every domain {domains}; unknown {unknown}, missing {missing}")
        tokens = {d: args.tokens[d] for d in domains}
        return SimplexBounds.from_token_budget(tokens, args.target_tokens, r_min=args.r_min, fixed=args.fixed)
    return SimplexBounds(domains, r_min=args.r_min, r_max=args.r_max, fixed=args.fixed)


def run(args) -> int:
    from bayesmix.data.table import read_rows, write_table
    from bayesmix.design.suggest import Search, suggest
    from bayesmix.pipeline.store import load_result
    from bayesmix.data.io import TABLE_SUFFIXES, check_output

    if args.q < 1:
        raise ValueError(f"--q must be at least 1, got {args.q}")
    if args.max_draws < 1:
        raise ValueError(f"--max-draws must be at least 1, got {args.max_draws}")
    if args.steps < 0:
        raise ValueError(f"--steps must be 0 or more, got {args.steps}")
    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must lie in (0, 1), got {args.prob}")
    if args.target_tokens is not None and not args.target_tokens > 0:
        raise ValueError(f"--target-tokens must be positive, got {args.target_tokens}")
    if args.out:
        check_output(args.out, suffixes=TABLE_SUFFIXES, inputs=[args.fit, args.pool, args.candidates], what="table")
    result = load_result(args.fit)
    domains = list(result.domains if hasattr(result, "stages") else result.data.meta.get("domains", []))
    if not domains:
        raise ValueError(f"{args.fit} is a {result.law.name!r} fit; suggest needs a mixing-law fit")
    bounds = build_bounds(args, domains)
    table = suggest(result, q=args.q, bounds=bounds, seed=args.seed, acquisition=args.acquisition, eval=args.eval,
                    pool=read_rows(args.pool, "pool of mixtures") if args.pool else None,
                    candidates=read_rows(args.candidates, "candidates table") if args.candidates else None,
                    search=Search(steps=args.steps), max_draws=args.max_draws, prob=args.prob)
    attrs = table.attrs
    print(f"incumbent: {attrs['incumbent_mixture']} (posterior mean {attrs['incumbent']:.4f}, eval {attrs['eval']}); "
          f"bounds {bounds!r}")
    show = table.drop(columns=["start"]).copy()
    show.columns = [str(c).removeprefix("mix.") for c in show.columns]
    print(show.round(4).to_string(index=False))
    if args.out:
        write_table(table, args.out)
        print(f"wrote {len(table)} suggestions to {args.out}")
    return 0
