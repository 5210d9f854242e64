"""Which mixture each decision rule recommends from the demo pipeline, and what it really gives.

One pipeline fit (the demo's settings, the bundled runs, target 1.2M parameters at step 2,400)
and one ranking (:func:`bayesmix.report.build.report_from_pipeline`, baseline uniform) feed
four rules:

* ``lowest mean``: the plain argmin of the posterior mean over every candidate (the simplex
  optimum included), with no trust region: a point-estimate pipeline's recommendation;
* ``range rule``: the lowest mean within the trust radius with every share inside the tried
  range (the trust region before the hull);
* ``hull``: the lowest mean inside the trust region of :mod:`bayesmix.decide.support`
  (radius and convex hull of the tried mixtures), :attr:`bayesmix.report.document.Report.trusted`;
* ``hull + confidence (shipped)``: the same, recommended over the baseline only when
  P(beats baseline) >= 0.9, else the baseline (:attr:`~bayesmix.report.document.Report.best`).

Every distinct chosen mixture is trained at the target scale with the proxy trainer and the
bundled settings (cached in ``--workdir``: a rerun trains nothing twice), except one that is a
bundled held-out run. The table gives the prediction, P(beats uniform), the observed loss and
the observed gain over the observed uniform run.

    python benchmarks/bench_decision.py --json out/bench_decision.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import markdown_table, write_json  # noqa: E402

BASELINE = "uniform"


def choices(report) -> dict[str, pd.Series]:
    """Rule name -> the ranking row it recommends (module docstring)."""
    table = report.ranking
    radius = table.attrs["trust_radius"]
    in_range = table[(table["distance"] <= radius + 1e-9) & (table["outside_range"].fillna("") == "")]
    return {"lowest mean": table.iloc[0], "range rule": in_range.iloc[0], "hull": report.trusted,
            "hull + confidence (shipped)": report.best}


def run_name(row: pd.Series, domains: list[str]) -> str:
    """A name made of the shares in thousandths, e.g. ``c063-e049-s074-d495-t319``."""
    return "-".join(f"{d[0]}{round(1000 * float(row['mix.' + d])):03d}" for d in domains)


def held_out_match(row: pd.Series, truth: pd.DataFrame, domains: list[str]) -> str | None:
    """The bundled held-out run with the same mixture (to 1e-6), if any."""
    cols = [f"mix.{d}" for d in domains]
    runs = truth.drop_duplicates("run")
    close = np.abs(runs[cols].to_numpy(float) - row[cols].to_numpy(float)).max(axis=1) < 1e-6
    return str(runs["run"].iloc[int(np.argmax(close))]) if close.any() else None


def main(argv=None) -> int:
    from bayesmix.demo import QUICK, train_at_target
    from bayesmix.laws.mixtures import MIX_PREFIX
    from bayesmix.pipeline.store import load_result
    from bayesmix.pipeline.verify import target_truth
    from bayesmix.proxy.demo import demo_runs, demo_target_runs
    from bayesmix.report.build import report_from_pipeline

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", type=Path, help="a saved demo pipeline folder to use instead of fitting")
    parser.add_argument("--workdir", type=Path, default=Path("out/bench_decision_runs"),
                        help="training state of the chosen mixtures (default out/bench_decision_runs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs, truth = demo_runs(), demo_target_runs()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = load_result(args.fit) if args.fit else QUICK.pipeline(progress=False).fit(runs, seed=args.seed)
        report = report_from_pipeline(result, baseline=BASELINE, runs=runs, n_random=QUICK.n_random,
                                      n_multiplier=0, seed=args.seed)
    seconds = time.perf_counter() - t0
    domains = result.domains
    picked = choices(report)
    observed_rows, to_train, names = [], {}, {}
    for rule, row in picked.items():
        match = held_out_match(row, truth, domains)
        names[rule] = match or f"{run_name(row, domains)}@1.2M"
        if match:
            observed_rows.append(truth[truth["run"] == match])
        else:
            to_train[run_name(row, domains)] = {d: float(row[MIX_PREFIX + d]) for d in domains}
    if to_train:
        print(f"training {', '.join(to_train)} at the target scale", flush=True)
        observed_rows.append(train_at_target(to_train, settings=QUICK, workdir=args.workdir, progress=False))
    base_run = held_out_match(report.ranking.set_index("mixture").loc[BASELINE], truth, domains)
    observed_rows.append(truth[truth["run"] == base_run])
    checked = target_truth(result, pd.concat(observed_rows, ignore_index=True).drop_duplicates(["run", "step", "eval"]),
                           seed=args.seed)
    overall = checked[checked["eval"] == "overall"].set_index("run")
    base_observed = float(overall.loc[base_run, "observed"])
    rows = []
    for rule, row in picked.items():
        got = overall.loc[names[rule]]
        rows.append({"rule": rule, "mixture": str(row["mixture"]),
                     "shares": ", ".join(f"{d} {float(row[MIX_PREFIX + d]):.2f}" for d in domains),
                     "inside_hull": bool(row["inside_support"]), "predicted": float(row["mean"]),
                     "lower": float(row["lower"]), "upper": float(row["upper"]),
                     "p_beats_uniform": float(row["p_beat"]), "observed": float(got["observed"]),
                     "observed_gain": base_observed - float(got["observed"]), "covered": bool(got["covered"])})
    print(f"fit and ranking: {seconds:.0f} s; observed uniform at the target: {base_observed:.3f}")
    print(markdown_table(rows, ["rule", "mixture", "shares", "inside_hull", "predicted", "lower", "upper",
                                "p_beats_uniform", "observed", "observed_gain", "covered"]))
    if args.json:
        write_json({"rows": rows, "baseline_observed": base_observed, "seconds": seconds}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
