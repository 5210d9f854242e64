"""Benchmarks of the nested pipeline: calibration, real curves, speed.

    python benchmarks/bench_pipeline.py --part calibration --campaigns 20 --out out/bench_pipeline_cal.json
    python benchmarks/bench_pipeline.py --part calibration --campaigns 10 --first-campaign 10 ...  # second half
    python benchmarks/bench_pipeline.py --part gemstones --out out/bench_pipeline_gem.json
    python benchmarks/bench_pipeline.py --part speed --draws 128 --out out/bench_pipeline_speed.json

* calibration: campaigns simulated from random nested laws (parameters in the
  range of published fits, see ``NestedLaw.random``); empirical coverage of the
  50% and 90% intervals of the target-scale loss (every mixture x eval domain
  and the overall loss) for ``draws``, ``moments`` and the bootstrap of the
  point chain (``point``), with MAE and interval width, each with the backtest
  discrepancy (as shipped) and without it (the laws' own posterior, same fit).
  Baseline: ``point`` (or the last mode run, with ``--modes``).
* gemstones: real training curves (McLeish et al. 2025). Step law on each run's
  checkpoints up to 25% of training, predicting its final loss (all runs; in draws mode
  also with the step law's curves by NUTS, the sampler before the exact grid); size
  law over the models below 200M parameters at the final step, predicting the
  final loss of the larger models. Draws propagation vs the point chain's
  bootstrap (same number of resamples) and moments; the step task also with the
  step backtest's discrepancy added.
* speed: wall time of the whole pipeline with D draws on a 20 mixtures x 4 sizes
  x 10 checkpoints x 5 eval domains table, cold (tracing and compilation
  included) and warm (same shapes again), against the bootstrap of the point
  chain with the same number of resamples.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ANCHORS, markdown_table, write_json  # noqa: E402

from bayesmix.pipeline import stages as st  # noqa: E402
from bayesmix.laws import resolve_priors  # noqa: E402
from bayesmix.laws.mixtures import MIX_PREFIX  # noqa: E402
from bayesmix.pipeline.lanenoise import shrink_predictions  # noqa: E402
from bayesmix.pipeline.nested import Pipeline  # noqa: E402
from bayesmix.pipeline.runners import StageOutput, fit_downstream, fit_step_curves, own_noise  # noqa: E402
from bayesmix.pipeline.pointchain import bootstrap_stage  # noqa: E402
from bayesmix.data.simulate import NestedLaw, dirichlet_mixtures, simulate_campaign  # noqa: E402

TARGET_SIZE, TARGET_STEP = 200_000_000, 100_000
MODES = ("draws", "moments", "point")


def interval_stats(draws: np.ndarray, truth: np.ndarray) -> dict:
    """Coverage of the central 50% and 90% intervals, MAE of the mean, mean 90% width."""
    out = {"mae": float(np.abs(draws.mean(axis=0) - truth).mean())}
    for prob in (0.5, 0.9):
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        out[f"cov{int(prob * 100)}"] = float(np.mean((lo <= truth) & (truth <= hi)))
        if prob == 0.9:
            out["width90"] = float(np.mean(hi - lo))
    return out


def target_truth(law: NestedLaw, draws) -> np.ndarray:
    """True target-scale loss at each point of ``predict(draws=True)`` output."""
    r = np.stack([draws[MIX_PREFIX + d].to_numpy() for d in law.domains], axis=1)
    per_eval = law.loss(r, TARGET_SIZE, TARGET_STEP)
    overall = per_eval @ law.weights
    evals = draws["eval"].to_numpy()
    return np.array([overall[i] if e == "overall" else per_eval[i, law.evals.index(e)] for i, e in enumerate(evals)])


def campaign(seed: int, *, n_mix: int, n_domains: int, n_evals: int, sizes, n_steps: int):
    law = NestedLaw.random([f"d{j}" for j in range(n_domains)], [f"e{k}" for k in range(n_evals)], seed=seed)
    mixtures = dirichlet_mixtures(n_mix, law.domains, seed=seed + 1000)
    steps = np.geomspace(1000, 30000, n_steps).astype(int)
    return law, simulate_campaign(law, mixtures, sizes=sizes, steps=steps, seed=seed + 2000)


def worst_diagnostics(result) -> dict:
    """Worst share of lanes above the per-lane R-hat threshold, and worst R-hat pooled
    over lanes, across the stages (NaN where no stage has lanes with chains)."""
    diags = result.diagnostics.values()
    pooled = [v["rhat_pooled"] for v in diags if np.isfinite(v.get("rhat_pooled", np.nan))]
    return {"lane_fail_max": max(v.get("fail_fraction", 0.0) for v in diags),
            "rhat_pooled_max": max(pooled) if pooled else float("nan")}


def pipeline_for(mode: str, draws: int) -> Pipeline:
    return Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, mode=mode, n_draws=draws, progress=False)


def part_calibration(args) -> dict:
    rows = []
    for c in range(args.first_campaign, args.first_campaign + args.campaigns):
        law, runs = campaign(100 + c, n_mix=12, n_domains=4, n_evals=3, sizes=[2e6, 6e6, 2e7], n_steps=10)
        for mode in args.modes:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = pipeline_for(mode, args.draws).fit(runs, seed=c)
            seconds = time.perf_counter() - t0
            for label, discrepancy in ((mode, True), (f"{mode}, no discrepancy", False)):
                draws = result.predict(draws=True, discrepancy=discrepancy)
                rows.append({"campaign": c, "mode": label, "seconds": seconds,
                             **interval_stats(draws.to_numpy(), target_truth(law, draws)), **worst_diagnostics(result)})
                print(f"campaign {c} {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in rows[-1].items()
                                                            if isinstance(v, float)), flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("mode", sort=False).mean(numeric_only=True).drop(columns="campaign").reset_index()
    base = summary.set_index("mode")["width90"]
    base = base.get("point", base.iloc[-1])
    summary["width_vs_point"] = summary["width90"] / base
    summary["cov90_gap"] = summary["cov90"] - 0.9
    summary["cov50_gap"] = summary["cov50"] - 0.5
    table = markdown_table(summary.to_dict(orient="records"),
                           ["mode", "cov50", "cov90", "cov50_gap", "cov90_gap", "mae", "width90", "width_vs_point",
                            "lane_fail_max", "rhat_pooled_max", "seconds"])
    return {"table": table, "summary": summary.to_dict(orient="records"), "rows": rows,
            "settings": {"campaigns": args.campaigns, "first_campaign": args.first_campaign, "draws": args.draws, "grid": "12 mixtures x 4 domains x 3 "
                         "sizes (2e6, 6e6, 2e7) x 10 checkpoints (1k..30k) x 3 evals", "target": [TARGET_SIZE,
                                                                                               TARGET_STEP]}}


def gemstones_table(path: Path) -> pd.DataFrame:
    g = pd.read_json(path, lines=True)
    return pd.DataFrame({"run": g["run_name"], "size": g["params_active_precise"].astype(np.int64),
                         "step": g["step"].astype(np.int64), "eval": "train", "loss": g["final_loss"],
                         MIX_PREFIX + "all": 1.0})


def step_discrepancy(early: pd.DataFrame, plan, min_step: int, final_step: int, n: int) -> np.ndarray:
    """Draws (n, 1) of the step stage's backtest discrepancy (:mod:`bayesmix.pipeline.backtest`: the first
    half of each early curve -> its last early checkpoint) at the distance log(final / last early)."""
    from bayesmix.pipeline.backtest import step_backtest
    from bayesmix.pipeline.discrepancy import Discrepancy

    last = early.groupby("run")["step"].max()
    level = float(early.loc[early["step"] == early["run"].map(last), "loss"].median())
    bt = step_backtest(early, plan, min_step=min_step, evals=None, priors=resolve_priors("step"),
                       weightings={"train": {"train": 1.0}}, levels={"train": level}, seed=0, n_starts=16)["train"]
    disc = Discrepancy.build({"step": bt}, {"step": float(np.log(final_step / last.min()))}, np.ones((1, 1)), seed=0)
    print(disc.table().to_string(), flush=True)
    return disc.draws(np.ones((1, 1)), n)


def part_gemstones(args) -> dict:
    path = Path(args.anchors) / "gemstones" / "training_curves.jsonl"
    if not path.is_file():
        return {"table": f"gemstones not found at {path}: skipped", "rows": []}
    runs = gemstones_table(path)
    final_step = int(runs["step"].max())
    final = runs[runs["step"] == final_step].set_index("run")["loss"]
    early = runs[runs["step"] <= 0.25 * final_step]
    small_cut = 200_000_000
    plan = st.Plan(step=True, size=True, target_step=final_step, target_size=small_cut)
    priors = {n: resolve_priors(n) for n in ("step", "size")}
    rows = []
    for mode in args.modes:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        pipeline = dataclasses.replace(pipeline_for(mode if mode != "point" else "draws", args.draws),
                                       min_step=args.min_step)
        stage = st.step_stage(early, plan, min_step=args.min_step, evals=None, priors=priors["step"])
        labels = stage.query.labels[["run", "eval", "size", "step"]].astype({"run": str})
        labels = labels.assign(mixture="m0", **{MIX_PREFIX + "all": 1.0})
        with jax.enable_x64(True):
            if mode == "point":
                point, boot, _ = bootstrap_stage(stage, stage.data.y, None, n_boot=args.draws, seed=0,
                                                  n_starts=16, boot_starts=4, rng=rng)
                pred1 = st.predict_stage(stage, boot)
            else:
                _, pred1, _, _ = fit_step_curves(pipeline, stage, seed=0)
                if mode == "draws":  # the step sampler before the exact grid, as a baseline in the same run
                    _, nuts1, _, _ = fit_step_curves(dataclasses.replace(pipeline, step_sampler="nuts"), stage, seed=0)
        truth1 = final.loc[labels["run"]].to_numpy()
        if mode == "draws":
            rows.append({"mode": "draws, step by NUTS", "task": "step: 25% -> final, all runs", "n": len(truth1),
                         **interval_stats(nuts1, truth1)})
        rows.append({"mode": mode, "task": "step: 25% -> final, all runs", "n": len(truth1),
                     **interval_stats(pred1, truth1)})
        rows.append({"mode": mode, "task": "step: 25% -> final, with the backtest discrepancy", "n": len(truth1),
                     **interval_stats(pred1 + step_discrepancy(early, plan, args.min_step, final_step, pred1.shape[0]),
                                      truth1)})
        # size law over the small models at the final step -> larger models
        small = (labels["size"] < small_cut).to_numpy()
        if mode == "point":
            values, sd = pred1[:, small], None
        elif mode == "moments":
            values, sd = pred1[:, small].mean(axis=0)[None], pred1[:, small].std(axis=0, ddof=1)
        else:
            values, sd = pred1[rng.choice(pred1.shape[0], args.draws, replace=False)][:, small], None
        up = StageOutput(labels[small].reset_index(drop=True), values, sd, pd.DataFrame())
        big = labels.loc[~small, ["run", "size"]].reset_index(drop=True)
        stage2 = st.size_stage(up.labels, values.mean(axis=0), plan, priors=priors["size"])
        query = stage2.law.query(stage2.data, sizes=big["size"].tolist())
        with jax.enable_x64(True):
            if mode == "point":
                _, params2, _ = bootstrap_stage(stage2, values.mean(axis=0)[stage2.inputs], values[:, stage2.inputs],
                                                 n_boot=args.draws, seed=1, n_starts=16, boot_starts=4, rng=rng)
            else:
                lanes = fit_downstream(pipeline, stage2, values[:, stage2.inputs],
                                       None if sd is None else sd[stage2.inputs], seed=1)[0]
                params2 = lanes.pooled()
            pred2 = st.predict_stage(stage2, params2, query)
        if mode == "draws":  # as the pipeline does: each lane's spread brought to the stage's own noise
            k, _ = own_noise(stage2, lanes, values[:, stage2.inputs])
            pred2 = shrink_predictions(pred2, k[:, query.arrays["eval"]])
        truth2 = final.loc[big["run"]].to_numpy()
        rows.append({"mode": mode, "task": "size: <200M -> 475M..2B at final step", "n": len(truth2),
                     **interval_stats(pred2, truth2), "seconds": time.perf_counter() - t0})
        print(rows[-2], rows[-1], flush=True)
    table = markdown_table(rows, ["task", "mode", "n", "mae", "cov50", "cov90", "width90"])
    return {"table": table, "rows": rows, "settings": {"draws": args.draws, "min_step": args.min_step,
                                                       "step_fit_until": int(0.25 * final_step),
                                                       "final_step": final_step, "small_models_below": small_cut}}


def part_speed(args) -> dict:
    law, runs = campaign(7, n_mix=20, n_domains=5, n_evals=5, sizes=[2e6, 6e6, 2e7, 6e7], n_steps=10)
    rows = []
    for mode in ("draws", "point"):
        for attempt in ("cold", "warm"):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = pipeline_for(mode, args.draws).fit(runs, seed=0)
            seconds = time.perf_counter() - t0
            draws = result.predict(draws=True)
            rows.append({"mode": "draws (NUTS)" if mode == "draws" else "bootstrap of point chain",
                         "run": attempt, "seconds": seconds, **{f"{k}_s": v for k, v in result.seconds.items()},
                         **interval_stats(draws.to_numpy(), target_truth(law, draws)), **worst_diagnostics(result)})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    for attempt in ("cold", "warm"):
        sel = frame["run"] == attempt
        base = frame.loc[sel & frame["mode"].str.startswith("bootstrap"), "seconds"].iloc[0]
        frame.loc[sel, "ratio_vs_bootstrap"] = frame.loc[sel, "seconds"] / base
    table = markdown_table(frame.to_dict(orient="records"),
                           ["mode", "run", "seconds", "step_s", "size_s", "mix_s", "ratio_vs_bootstrap", "cov90",
                            "mae", "lane_fail_max", "rhat_pooled_max"], floatfmt=".3f")
    return {"table": table, "rows": frame.to_dict(orient="records"), "device": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "settings": {"draws": args.draws, "grid": "20 mixtures x 5 domains x 4 sizes x 10 checkpoints x 5 evals",
                         "rows": len(runs)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["calibration", "gemstones", "speed", "all"], default="all")
    parser.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="folder of the public anchor tables")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="propagation modes compared (calibration, gemstones)")
    parser.add_argument("--campaigns", type=int, default=20, help="simulated campaigns (calibration)")
    parser.add_argument("--first-campaign", type=int, default=0,
                        help="index of the first campaign (to split the calibration across processes)")
    parser.add_argument("--draws", type=int, default=128, help="upstream draws D = bootstrap resamples")
    parser.add_argument("--min-step", type=int, default=2000, help="gemstones: warm-up checkpoints excluded")
    parser.add_argument("--out", help="write results as JSON here")
    args = parser.parse_args(argv)
    parts = ["calibration", "gemstones", "speed"] if args.part == "all" else [args.part]
    results = {"backend": jax.default_backend()}
    for part in parts:
        results[part] = globals()[f"part_{part}"](args)
        print(f"\n## {part}\n\n{results[part]['table']}\n", flush=True)
    if args.out:
        write_json(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
