"""``bayesmix pipeline``: the nested step -> size -> mixing prediction with uncertainty."""

from __future__ import annotations

import argparse

from bayesmix.cli.arguments import count as _count
from bayesmix.cli.arguments import proportions as _bounds

HELP = """Predict the target-scale loss of every mixture from small proxy runs:
step law per (run, eval) -> loss at the target step; size law per (mixture,
eval) -> loss at the target size; mixing law over mixtures -> any mixture.
Uncertainty is carried from stage to stage (--mode draws: each stage refitted
on D draws of the previous one, in one vectorised NUTS run; moments: upstream
mean and sd as measurement error; point: the paper's point chain with a
residual bootstrap). Prints the stages' diagnostics and the predictions, and
optionally the error budget, the predicted optimum over the simplex, and the
compute multiplier over a baseline mixture.

examples:
  bayesmix pipeline runs.csv --target-size 1000000000 --target-step 100000
  bayesmix pipeline runs.csv --target-size 1e9 --target-step 1e5 --min-step 1000 --budget --optimum
  bayesmix pipeline runs.csv --target-size 1e9 --target-step 1e5 --baseline m0 --mixtures cands.csv --out fit
  bayesmix suggest fit --q 4 --out next.csv        (then: bayesmix report fit --out r.html)
  bayesmix pipeline regmix.csv --mode point --n-draws 200        (one size and step: the mixing law alone)
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="nested step -> size -> mixing prediction with uncertainty",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="run table: .csv, .parquet or .jsonl (run, size, step, eval, loss, mix.<domain>...)")
    p.add_argument("--target-size", type=_count, help="model size to predict (non-embedding parameters; "
                   "default: the table's only size)")
    p.add_argument("--target-step", type=_count, help="training step to predict (default: each run's last)")
    p.add_argument("--min-step", type=_count, default=1, help="step law: ignore checkpoints below this (warm-up)")
    p.add_argument("--mode", default="draws", choices=["draws", "moments", "point"],
                   help="how uncertainty is propagated (default draws)")
    p.add_argument("--n-draws", type=_count, default=128,
                   help="upstream draws propagated (draws) or bootstrap resamples (point); default 128")
    p.add_argument("--evals", help="comma-separated eval domains (default all)")
    p.add_argument("--weights", type=_bounds, help="eval weights of the overall loss, e.g. web=0.5,code=0.5")
    p.add_argument("--mixtures", help="file of mixtures to predict (one column per domain; default: the observed)")
    p.add_argument("--prob", type=float, default=0.9, help="credible-interval mass (default 0.9)")
    p.add_argument("--no-discrepancy", action="store_true",
                   help="leave out the backtest-calibrated extrapolation discrepancy (the laws' own posterior only)")
    p.add_argument("--budget", action="store_true",
                   help="also compute the error budget (draws mode; the variance split over the lanes)")
    p.add_argument("--budget-method", choices=("split", "refit"), default="split",
                   help="error budget: split the variance over the lanes (no refit; default) or switch each "
                        "stage off and refit")
    p.add_argument("--optimum", action="store_true", help="also find the predicted optimum over the simplex")
    p.add_argument("--r-min", type=_bounds, help="optimum: lower bounds, DOMAIN=PROPORTION,... e.g. code=0.1")
    p.add_argument("--r-max", type=_bounds, help="optimum: upper bounds (token budgets), e.g. books=0.2")
    p.add_argument("--fixed", type=_bounds, help="optimum: fixed proportions, e.g. math=0.05")
    p.add_argument("--baseline", help="observed mixture label: P(beats baseline) and the compute multiplier")
    p.add_argument("--out", help="save the fitted pipeline to this folder (for `bayesmix suggest`, `predict` and "
                   "`report`)")
    p.add_argument("--predictions", help="write the prediction table here (.csv, .parquet or .jsonl)")
    p.add_argument("--json", help="write a JSON summary (stages, diagnostics, budget, optimum) here")
    group = p.add_argument_group("sampler")
    group.add_argument("--chains", type=_count, default=2, help="chains per downstream lane (default 2)")
    group.add_argument("--warmup", type=_count, default=100,
                       help="warm-up per downstream lane, after the long anchor fit it starts from (default 100)")
    group.add_argument("--draws", type=_count, default=100, help="kept draws per chain and lane (default 100)")
    group.add_argument("--step-sampler", default="grid", choices=["grid", "nuts"],
                       help="step law's curves: exact grid posterior (default) or one NUTS lane per curve")
    group.add_argument("--size-sampler", default="nuts", choices=["grid", "nuts"],
                       help="size law on each upstream draw: NUTS lanes warm-started from an anchor fit (default) "
                            "or the exact grid posterior per eval domain (about 20 times faster; the demo's choice)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--strict", action="store_true", help="fail (exit 2) when a stage's convergence checks fail")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def check_outputs(args) -> None:
    """Every destination checked before any work: one line naming the option at fault."""
    from bayesmix.data.io import JSON_SUFFIXES, TABLE_SUFFIXES, check_output, same_file
    from bayesmix.data.store import check_result_folder

    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must lie in (0, 1), got {args.prob}")
    inputs = [args.runs, args.mixtures]
    if args.out:
        check_result_folder(args.out, inputs=inputs)
    if args.predictions:
        check_output(args.predictions, suffixes=TABLE_SUFFIXES, inputs=inputs, option="--predictions", what="table")
    if args.json:
        check_output(args.json, suffixes=JSON_SUFFIXES, inputs=inputs, option="--json", what="summary")
        if args.predictions and same_file(args.predictions, args.json):
            raise ValueError(f"--predictions and --json name the same file {args.predictions}")


def pipeline_from_args(args):
    """The :class:`~bayesmix.pipeline.nested.Pipeline` the options describe."""
    from bayesmix.inference.nuts import SamplerConfig
    from bayesmix.pipeline.nested import Pipeline

    return Pipeline(
        target_size=args.target_size, target_step=args.target_step, min_step=args.min_step, mode=args.mode,
        n_draws=args.n_draws, evals=tuple(args.evals.split(",")) if args.evals else None, weights=args.weights,
        lane_config=SamplerConfig.for_lanes(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws),
        strict=args.strict, progress=False if args.no_progress else None, discrepancy=not args.no_discrepancy,
        step_sampler=args.step_sampler,
        size_sampler=args.size_sampler,
    )


def print_backtests(result, prob: float) -> list[dict]:
    """The extrapolation backtests' table, printed; its rows for the JSON summary."""
    backtests = result.discrepancy.tables(prob)
    print("\nextrapolation backtests (misses of the overall loss and of each eval domain; the discrepancy they "
          "set is in every interval below):")
    print(backtests[["eval", "stage", "source", "backtests", "max_abs_miss", "bias_median", "k_median",
                     "target_distance", "target_mean", "target_sd", "coverage_without",
                     "coverage_with"]].round(4).to_string(index=False))
    return backtests.to_dict(orient="records")


def prediction_table(result, mixtures, args):
    """Predictions at ``mixtures`` (default the observed), with P(beats baseline) when one is named."""
    import pandas as pd

    from bayesmix.decide.decisions import prob_beats

    table = result.predict(mixtures, prob=args.prob, seed=args.seed)
    if not args.baseline:
        return table
    draws = result.predict(mixtures, draws=True, seed=args.seed)
    if args.baseline not in set(draws["mixture"].to_numpy().astype(str)):
        observed = result.observed_mixtures()
        rows = pd.concat([observed[observed["mixture"].astype(str) == args.baseline], mixtures])
        draws = result.predict(rows, draws=True, seed=args.seed)
        table = result.predict(rows, prob=args.prob, seed=args.seed)
    beats = prob_beats(draws, args.baseline, prob=args.prob)
    return table.merge(beats[["mixture", "prob_beats"]], on="mixture", how="left")


def print_optimum(result, args) -> dict:
    from bayesmix.decide.decisions import predicted_optimum
    from bayesmix.decide.simplex import SimplexBounds
    from bayesmix.decide.support import hull_distance

    bounds = SimplexBounds(result.domains, r_min=args.r_min, r_max=args.r_max, fixed=args.fixed)
    best, table = predicted_optimum(result, bounds=bounds, baseline=args.baseline, prob=args.prob, seed=args.seed)
    print("\npredicted optimum:", ", ".join(f"{d}={v:.3f}" for d, v in best.mixture.items()),
          "" if best.moved else "  (refinement did not move from its start: check the fit)")
    print(table[[c for c in table.columns if not c.startswith("mix.")]].round(4).to_string(index=False))
    summary = best.to_dict()
    if args.r_min is None and args.r_max is None and args.fixed is None:
        inside, table = predicted_optimum(result, region="hull", baseline=args.baseline, prob=args.prob,
                                          seed=args.seed)
        gap = float(hull_distance(best.mixture.to_numpy(float), result.tried_mixtures())[0])
        print(f"\npredicted optimum inside the tried mixtures' convex hull (the one above lies {gap:.3f} outside "
              "it, in total variation):", ", ".join(f"{d}={v:.3f}" for d, v in inside.mixture.items()))
        print(table[[c for c in table.columns if not c.startswith("mix.")]].round(4).to_string(index=False))
        summary = {**summary, "hull_distance": gap, "inside_hull": inside.to_dict()}
    return summary


def print_multipliers(result, baseline: str, prob: float) -> list[dict]:
    import pandas as pd

    from bayesmix.decide.decisions import effective_compute_multiplier

    rows = [{"mixture": mixture, **effective_compute_multiplier(result, mixture, baseline, prob=prob)}
            for mixture in result.observed_mixtures()["mixture"].astype(str) if mixture != baseline]
    multipliers = pd.DataFrame(rows)
    print(f"\ncompute multiplier over {baseline} (steps the baseline needs to match, x target step):")
    print(multipliers[["mixture", "median", "lower", "upper", "prob_above_1"]].round(3).to_string(index=False))
    return multipliers.to_dict(orient="records")


def run(args) -> int:
    import json

    from bayesmix.data.io import atomic_write
    from bayesmix.data.table import read_rows, read_runs, write_table

    check_outputs(args)
    runs = read_runs(args.runs)
    mixtures = read_rows(args.mixtures, "mixtures table") if args.mixtures else None
    result = pipeline_from_args(args).fit(runs, seed=args.seed)
    summary = {"target_size": result.plan.target_size, "target_step": result.plan.target_step,
               "mode": result.mode, "stages": result.stage_table().to_dict(orient="records")}
    print(f"target: {result.plan.target_size:,} parameters at step {result.plan.target_step:,}; mode {result.mode}")
    print(result.stage_table().to_string(index=False))
    if result.discrepancy is not None:
        summary["discrepancy"] = print_backtests(result, args.prob)
    table = prediction_table(result, mixtures, args)
    print(f"\npredicted loss at the target scale ({args.prob:.0%} intervals):")
    print(table[[c for c in table.columns if not c.startswith("mix.")]].round(4).to_string(index=False))
    if args.predictions:
        write_table(table, args.predictions)
        print(f"\nwrote predictions to {args.predictions}")
    if args.budget:
        budget = result.error_budget(seed=args.seed, method=args.budget_method)
        print(f"\nerror budget ({budget.eval} loss):")
        print(budget.table.round(4).to_string(index=False))
        print(budget.recommendation)
        summary["budget"] = budget.to_dict()
    if args.optimum:
        summary["optimum"] = print_optimum(result, args)
    if args.baseline and result.step_shape is not None:
        summary["multiplier"] = print_multipliers(result, args.baseline, args.prob)
    if args.out:
        result.save(args.out)
        print(f"saved the fitted pipeline to {args.out} (bayesmix suggest/predict/report {args.out})")
    if args.json:
        with atomic_write(args.json, "w") as fh:
            json.dump(summary, fh, indent=2, default=float)
        print(f"wrote summary to {args.json}")
    return 0
