"""Held-out target-scale runs against the demo pipeline's predictions, beside the baseline.

The bundled demo table is fitted with the demo's settings twice in one run:

* ``schedule-aware``: as shipped (schedule columns, the runs annealed at 800, the
  schedule-aware step law);
* ``power law (baseline)``: the same truncated runs without schedules or annealed runs
  (the pipeline before schedules were recorded: a power law in steps).

Each fit is checked twice: with the backtest-calibrated extrapolation discrepancy (as
shipped, :mod:`bayesmix.pipeline.discrepancy`) and with the laws' own posterior alone (``no
discrepancy``: the same draws, the discrepancy left out).

Each is checked against the bundled held-out runs at 1.2M parameters, step 2400
(``bayesmix/data/bundled/demo_target_runs.parquet``, never fitted): coverage of the 90%
intervals of the overall loss, MAE, mean miss, and whether the predicted order of
the held-out mixtures matches the observed one (Spearman).

    python benchmarks/bench_target_truth.py --json out/bench_target_truth.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import markdown_table, write_json  # noqa: E402


def baseline_table(runs):
    """The demo table as it was before schedules: truncated runs only, no schedule columns."""
    from bayesmix.proxy.demo import DEMO_ANNEAL_SUFFIX

    keep = ~runs["run"].astype(str).str.contains(DEMO_ANNEAL_SUFFIX + "@", regex=False)
    cols = [c for c in runs.columns if c != "lr" and not str(c).startswith("schedule.")]
    return runs.loc[keep, cols].reset_index(drop=True)


def check(name, runs, truth, settings, seed):
    """Fit once; rows (with the discrepancy, without it) and their per-run tables."""
    import dataclasses

    from bayesmix.pipeline.verify import coverage_summary, target_truth

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = settings.pipeline(progress=False).fit(runs, seed=seed)
    seconds = time.perf_counter() - t0
    out = []
    for label, res in ((name, result), (f"{name}, no discrepancy", dataclasses.replace(result, discrepancy=None))):
        table = target_truth(res, truth, seed=seed)
        overall = table[table["eval"] == "overall"]
        row = coverage_summary(table).iloc[0]
        width = float((overall["upper"] - overall["lower"]).mean())
        out.append(({"pipeline": label, "step law": result.plan.step_law, "runs": int(row["runs"]),
                     "covered": int(row["covered"]), "coverage": float(row["coverage"]), "mae": float(row["mae"]),
                     "mean_miss": float(row["mean_miss"]), "mean_width": width,
                     "spearman": float(stats.spearmanr(overall["mean"], overall["observed"]).statistic),
                     "seconds": seconds}, table))
    return out


def main(argv=None) -> int:
    from bayesmix.demo import QUICK
    from bayesmix.proxy.demo import demo_runs, demo_target_runs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs, truth = demo_runs(), demo_target_runs()
    rows, tables = [], {}
    for name, table in (("schedule-aware", runs), ("power law (baseline)", baseline_table(runs))):
        for row, tables[row["pipeline"]] in check(name, table, truth, QUICK, args.seed):
            rows.append(row)
            print(f"{row['pipeline']}: {row['covered']}/{row['runs']} covered, MAE {row['mae']:.3f} "
                  f"({row['seconds']:.0f} s)", flush=True)
    base = next(row for row in rows if row["pipeline"] == "power law (baseline), no discrepancy")
    for row in rows:
        row["mae_ratio"] = row["mae"] / base["mae"]
    print(markdown_table(rows, ["pipeline", "step law", "runs", "covered", "coverage", "mae", "mae_ratio",
                                "mean_miss", "mean_width", "spearman", "seconds"]))
    per_run = []
    for name, table in tables.items():
        overall = table[table["eval"] == "overall"]
        per_run += [{"pipeline": name, "run": r.run, "observed": r.observed, "mean": r.mean, "lower": r.lower,
                     "upper": r.upper, "covered": bool(r.covered)} for r in overall.itertuples()]
    print(markdown_table(per_run, ["pipeline", "run", "observed", "mean", "lower", "upper", "covered"]))
    if args.json:
        write_json({"rows": rows, "per_run": per_run}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
