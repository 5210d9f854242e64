"""Bayesian M4 mixing law vs the multi-start point fit on RegMix's 768 real runs.

For each of ``--splits`` random 80/20 splits of the runs (seed = split index),
fit M4 on the training runs' loss on one eval domain (Pile-CC by default) and
predict the held-out runs: MAE and Spearman of the posterior mean and of the
point fit, coverage of the 50% and 90% posterior predictive intervals, R-hat,
divergences and wall time. Prints a markdown table and writes JSON.

    python benchmarks/bench_mixing.py --out .bench/mixing.json
"""

from __future__ import annotations

import argparse
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="folder holding regmix/ (default ../shared/anchors)")
    p.add_argument("--eval", default="pile_cc", help="eval domain (default pile_cc)")
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--starts", type=int, default=20, help="point-fit restarts (default 20)")
    p.add_argument("--out", default=".bench/mixing.json")
    return p.parse_args(argv)


def run_split(runs, split: int, args) -> dict:
    from bayesmix.inference.fit import fit

    train_ids, test_ids = split_runs(sorted(runs["run"].unique()), seed=split)
    train = runs[runs["run"].isin(train_ids)]
    test = runs[runs["run"].isin(test_ids)].sort_values("run")
    mixtures = test[[c for c in test.columns if c.startswith("mix.")]]
    observed = test["loss"].to_numpy()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(train, "mix", seed=split, n_starts=args.starts,
                     sampler=dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws,
                                  progress_bar=False))
    seconds = time.perf_counter() - start
    draws = result.predict(mixtures=mixtures, kind="observation", draws=True, seed=split).to_numpy()
    bayes = point_metrics(draws.mean(axis=0), observed)
    point = point_metrics(result.predict_point(mixtures=mixtures)["point"].to_numpy(), observed)
    d = result.diagnostics
    return {
        "split": split, "n_train": len(train_ids), "n_test": len(test_ids),
        "bayes_mae": bayes["mae"], "bayes_spearman": bayes["spearman"],
        "point_mae": point["mae"], "point_spearman": point["spearman"],
        "mae_ratio": bayes["mae"] / point["mae"],
        "cover50": coverage(draws, observed, 0.5), "cover90": coverage(draws, observed, 0.9),
        "rhat_max": float(d.rhat_max), "ess_bulk_min": float(d.ess_bulk_min), "divergences": int(d.divergences),
        "seconds": seconds,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    runs = regmix_eval_rows(args.anchors, args.eval)
    rows = []
    for split in range(args.splits):
        rows.append(run_split(runs, split, args))
        print(f"split {split}: " + ", ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if isinstance(v, float)),
              flush=True)
    columns = ["split", "bayes_mae", "point_mae", "mae_ratio", "bayes_spearman", "point_spearman",
               "cover50", "cover90", "rhat_max", "divergences", "seconds"]
    mean = {c: float(np.mean([r[c] for r in rows])) for c in columns if c != "split"}
    mean["split"] = "mean"
    print(f"\nM4 on RegMix ({args.eval}), {args.chains} chains x {args.draws} draws "
          f"(+{args.warmup} warm-up), device {jax.default_backend()}, {os.cpu_count()} CPU cores\n")
    print(markdown_table(rows + [mean], columns))
    write_json({"benchmark": "mixing_regmix", "settings": vars(args), "splits": rows, "mean": mean}, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
