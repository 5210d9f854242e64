"""Implicit aggregation with chains combined by stacking, on RegMix, beside M4, the
bootstrap and LightGBM in the same run.

For each split (seed s: ``bench_laws.py``'s 80/20 splits of RegMix's runs, eval
Pile-CC) the implicit law (K latent eval domains, each K of ``--latent``) is fitted with
``fit(..., combine="stacking")``: ``--chains`` chains, each started from its own
multi-start point fit, judged on its own (split R-hat of its halves <= 1.05 and bulk ESS
>= 100 on the law's label-invariant variables: predictions, level, floor, sigma), and
weighted by stacking of their PSIS-LOO densities. Rows per split:

* ``stacked_K``  the stacked predictive, when at least one chain passes its own checks;
                 when none does the fit is a failure (``fit_ok`` 0) and the row scores
                 the pooled draws instead, marked so;
* ``pooled_K``   the same chains pooled (the pre-stacking answer), for comparison;
* ``m4``, ``bootstrap``, ``point``, ``lightgbm``: as in ``bench_laws.py``.

Columns: MAE and Spearman of the predictive mean, 50%/90% coverage of held-out losses,
seconds, ``fit_ok``, ``chains_ok`` (chains passing their own checks), ``n_carrying``
(chains holding 90% of the weight), ``chain_rhat`` / ``chain_ess`` (the best chain's own
split R-hat and bulk ESS), ``rhat_pooled`` (across chains) and ``elpd_loo`` (the stacked
mixture's when stacking worked, else the pooled chains').

    python benchmarks/bench_stacking.py --out .bench/stacking.json
    python benchmarks/bench_stacking.py --splits 0 --latent 5,10,30 --out .bench/stacking_k.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from bench_laws import run_split as baseline_rows  # noqa: E402
from common import DEFAULT_ANCHORS, markdown_table, regmix_eval_rows, split_runs, write_json  # noqa: E402

COLUMNS = ["split", "method", "mae", "spearman", "cover50", "cover90", "seconds", "fit_ok", "chains_ok",
           "n_carrying", "chain_rhat", "chain_ess", "rhat_pooled", "elpd_loo"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="folder holding regmix/ (default ../shared/anchors)")
    p.add_argument("--eval", default="pile_cc")
    p.add_argument("--splits", default="0,1,2,3,4")
    p.add_argument("--latent", default="30", help="comma-separated K grid (default 30)")
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--depth", type=int, default=8, help="NUTS max tree depth (default 8)")
    p.add_argument("--starts", type=int, default=16, help="point-fit starts, shared among the chains (default 16)")
    p.add_argument("--baselines", default="m4,bootstrap,point,lightgbm", help="bench_laws methods beside (or '')")
    p.add_argument("--boot", type=int, default=100)
    p.add_argument("--out", default=".bench/stacking.json")
    return p.parse_args(argv)


def stacked_rows(train, test, split: int, latent: int, args) -> list[dict]:
    import dataclasses

    from bayesmix.inference.fit import fit, fit_diagnostics
    from common import coverage, point_metrics

    mixtures = test[[c for c in test.columns if c.startswith("mix.")]].assign(mixture=test["run"].to_numpy())
    observed = test["loss"].to_numpy()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(train, "implicit", seed=split, latent=latent, combine="stacking", n_starts=args.starts,
                     sampler=dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws,
                                  max_tree_depth=args.depth, progress_bar=False))
        seconds = time.perf_counter() - start
        elpd = float(result.loo().elpd_loo)
    stacking = result.stacking
    best = stacking.checks.sort_values("rhat_max").iloc[0]
    common = {"split": split, "chains_ok": int(stacking.checks["ok"].sum()), "n_carrying": stacking.n_carrying,
              "chain_rhat": float(best["rhat_max"]), "chain_ess": float(best["ess_bulk_min"]),
              "rhat_pooled": float(result.diagnostics.rhat_max)}

    def scored(draws):
        return {**point_metrics(draws.mean(axis=0), observed), "cover50": coverage(draws, observed, 0.5),
                "cover90": coverage(draws, observed, 0.9)}

    stacked = result.predict(mixtures=mixtures, kind="observation", draws=True, seed=split).to_numpy()
    pooled_fit = dataclasses.replace(result, stacking=None, diagnostics=fit_diagnostics(result.idata, result.law))
    pooled = pooled_fit.predict(mixtures=mixtures, kind="observation", draws=True, seed=split).to_numpy()
    return [{"method": f"stacked_K{latent}" + ("" if stacking.ok else " (failed: pooled)"), **scored(stacked),
             "seconds": seconds, "fit_ok": int(result.diagnostics.ok), "elpd_loo": elpd, **common},
            {"method": f"pooled_K{latent}", **scored(pooled), "seconds": seconds,
             "fit_ok": int(pooled_fit.diagnostics.ok),
             "elpd_loo": float(pooled_fit.loo().elpd_loo), **common}]


def main(argv=None) -> int:
    import jax

    args = parse_args(argv)
    runs = regmix_eval_rows(args.anchors, args.eval)
    baselines = [m for m in args.baselines.split(",") if m]
    laws_args = argparse.Namespace(chains=4, warmup=500, draws=500, starts=20, boot=args.boot, latent=30,
                                   implicit_depth=8, epsilon=1e-3)
    rows = []
    for split in [int(s) for s in args.splits.split(",")]:
        train_ids, test_ids = split_runs(sorted(runs["run"].unique()), seed=split)
        train = runs[runs["run"].isin(train_ids)]
        test = runs[runs["run"].isin(test_ids)].sort_values("run")
        for latent in [int(k) for k in args.latent.split(",")]:
            new = stacked_rows(train, test, split, latent, args)
            rows += new
            print(f"split {split} K={latent}: " + "; ".join(
                f"{r['method']} MAE {r['mae']:.4f} cov90 {r['cover90']:.3f}" for r in new)
                + f"; chains ok {new[0]['chains_ok']}/{args.chains}, best chain R-hat {new[0]['chain_rhat']:.2f} "
                  f"ESS {new[0]['chain_ess']:.0f}, {new[0]['seconds']:.0f} s", flush=True)
        if baselines:
            for row in baseline_rows(runs, split, laws_args, baselines):
                rows.append({"split": split, **{k: row.get(k, np.nan) for k in COLUMNS[1:7]}})
        write_json({"benchmark": "stacking_regmix", "settings": vars(args), "rows": rows}, args.out)
    print()
    print(f"Implicit law, chains combined by stacking, RegMix ({args.eval}); {args.chains} chains x {args.draws} "
          f"draws (+{args.warmup} warm-up), tree depth {args.depth}; device {jax.default_backend()}, "
          f"{os.cpu_count()} CPU cores\n")
    print(markdown_table(rows, COLUMNS, floatfmt=".4g"))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
