"""The error budget two ways on the bundled demo runs: the variance split over the lanes against refits.

    python benchmarks/bench_budget.py --out out/bench_budget.json

Fits the demo's pipeline (``bayesmix.demo.QUICK``) once, then budgets its overall loss and
every eval domain with ``method="split"`` (the law of total variance over the lanes, no refit;
:mod:`bayesmix.pipeline.budget`) and, as the baseline, ``method="refit"`` (each stage's
uncertainty switched off and the downstream stages refitted). One row per method and loss:
seconds, the three variances, the shares and the recommendation's stage.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

from bayesmix.demo import QUICK, demo_table  # noqa: E402
from bayesmix.laws.mixing import OVERALL  # noqa: E402


def budget_row(result, method: str, eval: str, seed: int) -> dict:
    """One budget: seconds, variances, shares by stage."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        budget = result.error_budget(seed=seed, evals=eval, method=method)
    seconds = time.perf_counter() - t0
    shares = budget.table.set_index("stage")["share"]
    top = str(shares.idxmax())
    return {"method": method, "loss": eval, "seconds": seconds,
            "v_all": budget.variances["all_stages"], "v_step_off": budget.variances["step_off"],
            "v_mix_own": budget.variances["step_and_size_off"],
            **{f"share_{k}": float(v) for k, v in shares.items()}, "largest": top}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evals", default=OVERALL,
                        help="comma-separated losses to budget (default: the overall loss; 'all' for every one)")
    parser.add_argument("--out", help="write results as JSON here")
    args = parser.parse_args(argv)
    runs, source = demo_table(seed=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = QUICK.pipeline(progress=False).fit(runs, seed=args.seed)
    fit_seconds = time.perf_counter() - t0
    evals = [OVERALL, *result.evals] if args.evals == "all" else args.evals.split(",")
    rows = [budget_row(result, method, eval, args.seed) for eval in evals for method in ("split", "refit")]
    print(f"pipeline fitted in {fit_seconds:.0f} s on {source}; {result.n_draws_total} pooled draws\n")
    columns = ["method", "loss", "seconds", "v_all", "v_step_off", "v_mix_own", "share_step", "share_size",
               "share_mix", "share_discrepancy", "largest"]
    print(markdown_table(rows, [c for c in columns if any(c in r for r in rows)], floatfmt=".4g"))
    if args.out:
        write_json({"source": source, "fit_seconds": fit_seconds, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
