"""The step stage's two samplers on simulated campaigns: the exact grid against NUTS lanes.

    python benchmarks/bench_step_sampler.py --campaigns 10 --out out/bench_step_sampler.json

Each campaign is drawn as in ``bench_pipeline.py --part calibration`` (a random nested law, 12
mixtures x 3 sizes x 3 evals, checkpoints at 1k..30k, checkpoint noise sd 0.01) without the
per-run offset, so that the truth of every (run, eval) curve at the target step 100k is the
law's own loss there. The pipeline's step stage is fitted with ``step_sampler="grid"`` (as
shipped) and ``"nuts"`` (the baseline: one NUTS lane per curve, the Pipeline's default
``curve_config``); reported per sampler: coverage of the 50% and 90% intervals at the target
step, MAE, mean 90% width, the share of curves failing the sampler's checks and seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import TARGET_STEP, interval_stats  # noqa: E402
from common import markdown_table, write_json  # noqa: E402

from bayesmix.data.simulate import NestedLaw, dirichlet_mixtures, simulate_campaign  # noqa: E402
from bayesmix.laws.mixtures import MIX_PREFIX  # noqa: E402
from bayesmix.pipeline.nested import Pipeline  # noqa: E402
from bayesmix.pipeline import stages as st  # noqa: E402
from bayesmix.pipeline.runners import fit_step_curves, lanes_failed  # noqa: E402

SAMPLERS = ("grid", "nuts")


def step_campaign(seed: int):
    """A campaign without per-run offsets, its step stage and the truth at the target step."""
    law = NestedLaw.random([f"d{j}" for j in range(4)], [f"e{k}" for k in range(3)], seed=seed)
    mixtures = dirichlet_mixtures(12, law.domains, seed=seed + 1000)
    runs = simulate_campaign(law, mixtures, sizes=[2e6, 6e6, 2e7], steps=np.geomspace(1000, 30000, 10).astype(int),
                             seed=seed + 2000, run_noise=0.0)
    plan = st.Plan(step=True, size=True, target_step=TARGET_STEP, target_size=int(2e7))
    pipeline = Pipeline(target_step=TARGET_STEP, progress=False)
    stage = st.step_stage(runs, plan, min_step=1, evals=None, priors=pipeline.stage_priors()["step"])
    labels = stage.query.labels.iloc[stage.handed_off()]
    first = runs.drop_duplicates("run").set_index("run")
    r = first.loc[labels["run"].astype(str), [MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    sizes = first.loc[labels["run"].astype(str), "size"].to_numpy(float)
    evals = labels["eval"].astype(str).map(law.evals.index).to_numpy()
    truth = np.array([law.loss(r[i], sizes[i], TARGET_STEP)[0, evals[i]] for i in range(len(r))])
    return pipeline, stage, truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--out", help="write results as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for c in range(args.campaigns):
        pipeline, stage, truth = step_campaign(100 + c)
        for sampler in SAMPLERS:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, pred, _, summary = fit_step_curves(dataclasses.replace(pipeline, step_sampler=sampler), stage,
                                                      seed=c)
            rows.append({"campaign": c, "sampler": sampler, "curves": len(truth), "seconds": time.perf_counter() - t0,
                         **interval_stats(pred[:, stage.handed_off()], truth), "checks_fail": lanes_failed(summary),
                         "curves_failing": float(summary.get("fail_fraction", np.nan))})
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("sampler", sort=False).agg(
        campaigns=("campaign", "nunique"), curves=("curves", "sum"), cov50=("cov50", "mean"), cov90=("cov90", "mean"),
        cov90_min=("cov90", "min"), mae=("mae", "mean"), width90=("width90", "mean"),
        stages_failing=("checks_fail", "sum"), seconds=("seconds", "mean")).reset_index()
    print(markdown_table(summary.to_dict(orient="records"), list(summary.columns), floatfmt=".3f"))
    if args.out:
        write_json({"summary": summary.to_dict(orient="records"), "rows": rows,
                    "settings": {"campaigns": args.campaigns, "target_step": TARGET_STEP,
                                 "grid": "12 mixtures x 3 sizes x 3 evals, checkpoints 1k..30k, noise 0.01, "
                                         "no run offset"}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
