"""The law zoo on RegMix's 768 real runs: M4, implicit aggregation, BiMix, bootstrap, LightGBM.

For each split (seed s = 0..4: ``numpy.random.default_rng(s).permutation`` of the
sorted run ids, 80% train / 20% test, as in ``bench_mixing.py``), fit on the
training runs' Pile-CC loss and predict the held-out runs:

* ``m4``        Bayesian M4, explicit aggregation (law ``mix``), NUTS;
* ``implicit``  implicit aggregation with K = 30 latent domains (law ``implicit``), NUTS;
* ``bimix``     BiMix's own-proportion law (one checkpoint: L = A r^-alpha), proportions
                below ``--epsilon`` raised to it (RegMix has zero shares of Pile-CC), NUTS;
* ``bootstrap`` M4's multi-start point fit on B resamples of the runs, percentile intervals;
* ``point``     M4's multi-start point fit (the paper's method; the baseline of the ratios);
* ``lightgbm``  the RegMix authors' regressor (1000 trees, learning rate 0.01), if installed.

Columns: MAE and Spearman of the predictive mean, coverage of the central 50% and
90% predictive intervals of the held-out losses, wall time, R-hat (worst, on the
law's diagnostic variables: predictions for implicit), divergences, elpd_loo on
the training runs (PSIS-LOO), and MAE as a ratio to the point fit's.

    python benchmarks/bench_laws.py --out .bench/laws.json
    python benchmarks/bench_laws.py --splits 0 --out .bench/laws_0.json   # one split
    python benchmarks/bench_laws.py --merge .bench/laws_*.json             # table of several runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_ANCHORS,
    coverage,
    markdown_table,
    point_metrics,
    regmix_eval_rows,
    split_runs,
    write_json,
)

METHODS = ("m4", "implicit", "bimix", "bootstrap", "point", "lightgbm")
COLUMNS = ["method", "mae", "spearman", "cover50", "cover90", "seconds", "rhat_max", "divergences", "elpd_loo",
           "mae_ratio"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="folder holding regmix/ (default ../shared/anchors)")
    p.add_argument("--eval", default="pile_cc", help="eval domain (default pile_cc)")
    p.add_argument("--splits", default="0,1,2,3,4", help="comma-separated split seeds (default 0,1,2,3,4)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--latent", type=int, default=30, help="implicit: latent eval domains K (default 30)")
    p.add_argument("--implicit-depth", type=int, default=8, help="implicit: NUTS max tree depth (default 8)")
    p.add_argument("--epsilon", type=float, default=1e-3, help="bimix: proportion floor (default 1e-3)")
    p.add_argument("--boot", type=int, default=100, help="bootstrap resamples B (default 100)")
    p.add_argument("--starts", type=int, default=20, help="point-fit restarts (default 20)")
    p.add_argument("--out", default=".bench/laws.json")
    p.add_argument("--merge", nargs="+", help="only print the table of these JSON outputs (e.g. one per split)")
    return p.parse_args(argv)


def sampler(args, **extra):
    return dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws, progress_bar=False, **extra)


def scores(draws: np.ndarray, observed: np.ndarray) -> dict:
    out = point_metrics(draws.mean(axis=0), observed)
    out.update(cover50=coverage(draws, observed, 0.5), cover90=coverage(draws, observed, 0.9))
    return out


def run_split(runs, split: int, args, methods) -> list[dict]:
    from bayesmix.inference.bootstrap import bootstrap
    from bayesmix.inference.compare import loo_table
    from bayesmix.inference.fit import fit

    train_ids, test_ids = split_runs(sorted(runs["run"].unique()), seed=split)
    train = runs[runs["run"].isin(train_ids)]
    test = runs[runs["run"].isin(test_ids)].sort_values("run")
    mixtures = test[[c for c in test.columns if c.startswith("mix.")]].assign(mixture=test["run"].to_numpy())
    observed = test["loss"].to_numpy()
    rows, fits = [], {}
    bayes = {"m4": ("mix", {}, {}), "implicit": ("implicit", {"latent": args.latent},
                                                 {"max_tree_depth": args.implicit_depth}),
             "bimix": ("bimix", {"epsilon": args.epsilon}, {})}
    for method, (law, options, extra) in bayes.items():
        if method not in methods:
            continue
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(train, law, seed=split, n_starts=args.starts, sampler=sampler(args, **extra), **options)
        seconds = time.perf_counter() - start
        draws = result.predict(mixtures=mixtures, kind="observation", draws=True, seed=split).to_numpy()
        d = result.diagnostics
        rows.append({"method": method, **scores(draws, observed), "seconds": seconds,
                     "rhat_max": float(d.rhat_max), "divergences": int(d.divergences)})
        fits[method] = result
        print(f"split {split}: {method} done in {seconds:.0f} s, MAE {rows[-1]['mae']:.4f}", file=sys.stderr, flush=True)
        if method == "m4" and "point" in methods:
            point = result.predict_point(mixtures=mixtures)["point"].to_numpy()
            rows.append({"method": "point", **point_metrics(point, observed), "seconds": float("nan")})
    if len(fits) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = loo_table(fits)
        for row in rows:
            if row["method"] in fits:
                row["elpd_loo"] = float(loo.loc[row["method"], "elpd_loo"])
                row["pareto_k_bad"] = int(loo.loc[row["method"], "pareto_k_bad"])
    if "bootstrap" in methods:
        start = time.perf_counter()
        boot = bootstrap(train, "mix", seed=split, n_boot=args.boot, n_starts=args.starts, progress=False)
        seconds = time.perf_counter() - start
        draws = boot.predict(mixtures=mixtures, kind="observation", draws=True, seed=split).to_numpy()
        rows.append({"method": "bootstrap", **scores(draws, observed), "seconds": seconds})
        if "point" in methods and not any(r["method"] == "point" for r in rows):
            point = boot.predict_point(mixtures=mixtures)["point"].to_numpy()
            rows.append({"method": "point", **point_metrics(point, observed), "seconds": float("nan")})
    if "lightgbm" in methods:
        rows += lightgbm_row(train, test, observed, split)
    base = next((r["mae"] for r in rows if r["method"] == "point"), float("nan"))
    for row in rows:
        row.update(split=split, mae_ratio=row["mae"] / base)
    return rows


def lightgbm_row(train, test, observed, split: int) -> list[dict]:
    try:
        import lightgbm
    except ImportError:
        print("lightgbm not installed: skipping its row", file=sys.stderr)
        return []
    cols = [c for c in train.columns if c.startswith("mix.")]
    start = time.perf_counter()
    booster = lightgbm.train({"objective": "regression", "learning_rate": 0.01, "verbose": -1, "seed": split},
                             lightgbm.Dataset(train[cols].to_numpy(), train["loss"].to_numpy()), num_boost_round=1000)
    predicted = booster.predict(test[cols].to_numpy())
    return [{"method": "lightgbm", **point_metrics(predicted, observed), "seconds": time.perf_counter() - start}]


def summary(rows: list[dict]) -> list[dict]:
    """Mean of every column per method, in METHODS order."""
    out = []
    warnings.filterwarnings("ignore", message="Mean of empty slice")
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if mine:
            mean = {c: float(np.nanmean([r.get(c, np.nan) for r in mine])) for c in COLUMNS[1:]}
            out.append({"method": method, "splits": len(mine), **mean})
    return out


def print_table(rows: list[dict], header: str) -> None:
    print(header + "\n")
    print(markdown_table(summary(rows), ["method", "splits", *COLUMNS[1:]], floatfmt=".4g"))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:
        rows, settings = [], None
        for path in args.merge:
            payload = json.loads(open(path).read())
            rows += payload["splits"]
            settings = settings or payload["settings"]
        print_table(rows, f"merged {len(args.merge)} files; settings of the first: {settings}")
        return 0
    import jax

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"unknown method(s) {unknown}; choose from {list(METHODS)}", file=sys.stderr)
        return 2
    runs = regmix_eval_rows(args.anchors, args.eval)
    rows = []
    for split in [int(s) for s in args.splits.split(",")]:
        new = run_split(runs, split, args, methods)
        rows += new
        for r in new:
            print(f"split {split} {r['method']}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()
                                                            if isinstance(v, float)), flush=True)
        write_json({"benchmark": "laws_regmix", "settings": vars(args), "splits": rows,
                    "mean": summary(rows)}, args.out)
    print()
    print_table(rows, f"Law zoo on RegMix ({args.eval}), {args.chains} chains x {args.draws} draws "
                      f"(+{args.warmup} warm-up), implicit K={args.latent} (max tree depth {args.implicit_depth}), "
                      f"bootstrap B={args.boot}; device {jax.default_backend()}, {os.cpu_count()} CPU cores")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
