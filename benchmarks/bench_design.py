"""Benchmarks of active experiment design: pool-based campaigns on RegMix, and a
simulated campaign on a known nested law.

    python benchmarks/bench_design.py --part regmix --seeds 20 --rounds 20 --out out/bench_design_regmix.json
    python benchmarks/bench_design.py --part nested --seeds 4 --rounds 4 --out out/bench_design_nested.json

* regmix: the 768 RegMix runs (Liu et al. 2024, 17 Pile domains, Pile-CC
  validation loss) are a pool; an "experiment" reveals a pool run's measured
  loss. Every seed starts from the same 8 random runs for every strategy and
  adds q = 4 runs per round by (a) qLogEI from the M4 mixing law refitted by
  NUTS every round (pool-based: the acquisition is maximised over the untried
  pool runs), (b) random order, which is RegMix's own strategy (the pool is
  RegMix's Dirichlet sample, so a random pool run is a random Dirichlet draw),
  (c) Algorithm 2 order (Ye et al. 2024): Algorithm 2 mixtures in the order
  drawn, each replaced by the nearest untried pool run (total variation).
  Reports the median number of runs until a run in the pool's best 1% is run
  (censored at the cap: ">cap") and the median regret curve (best loss run so
  far minus the pool's best). The M4 fits of all seeds of one round run as one
  vmapped NUTS computation (:mod:`bayesmix.inference.lanes`). Baseline: random; target
  qLogEI runs <= 1/3 of random's.
* nested: campaigns on random nested laws (``NestedLaw.random``): every
  mixture is run at three proxy sizes with six checkpoints; the nested pipeline
  (draws propagation) is refitted every round and ``suggest`` proposes q
  mixtures by qLogEI on the predicted target-scale loss; the baseline adds
  random Dirichlet(1) mixtures instead. Regret at the target scale: the true
  target-scale loss of the pipeline's predicted optimum minus the true optimum
  over the simplex, and the same for the best mixture run so far.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ANCHORS, markdown_table, regmix_eval_rows, write_json

from bayesmix.design import candidates as cand
from bayesmix.inference.lanes import LaneSampler
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.design.suggest import Search, suggest
from bayesmix.laws import resolve_priors
from bayesmix.laws.mixing import m4_mean, m4_model
from bayesmix.laws.mixtures import MIX_PREFIX
from bayesmix.decide.simplex import SimplexBounds

STRATEGIES = ("qlogei", "random", "algorithm2")


# ---------------------------------------------------------------- regmix pool


def load_pool(anchors: Path, eval_name: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """RegMix's runs as a pool: proportions (N, M), losses (N,), run names, domains."""
    rows = regmix_eval_rows(anchors, eval_name).reset_index(drop=True)
    cols = [c for c in rows.columns if c.startswith(MIX_PREFIX)]
    return (rows[cols].to_numpy(float), rows["loss"].to_numpy(float), rows["run"].astype(str).tolist(),
            [c[len(MIX_PREFIX):] for c in cols])


def m4_lanes(r: np.ndarray, y: np.ndarray, *, seed: int, config: SamplerConfig) -> tuple[dict, np.ndarray, dict]:
    """NUTS fits of the single-eval M4 law, one per lane: r (L, n, M), y (L, n).

    Uses the package's M4 model and default priors (the law's own prepare
    insists on M + 2 mixtures; a campaign starts below that and leans on the
    prior). Returns pooled draws {level, floor, t} (L, D, ...), r0 (L, M) and
    lane diagnostics."""
    L, n, M = r.shape
    r0 = r.mean(axis=1)
    batch = {"r_centered": r - r0[:, None, :], "run": np.tile(np.arange(n, dtype=np.int32), (L, 1)),
             "eval": np.zeros((L, n), np.int32), "y_ref": y.mean(axis=1, keepdims=True),
             "loss_scale": y.mean(axis=1), "y": y}
    priors = resolve_priors("mix")

    def model(data):
        m4_model({k: v for k, v in data.items() if k != "y"}, priors, y=data["y"])

    with jax.enable_x64(True):
        sampler = LaneSampler(model, {k: v[0] for k, v in batch.items()}, config=config,
                              keep=("level", "floor", "t"), seed=seed, cache_key=("bench_design_m4", M))
        lanes = sampler(batch, seed=seed + 1)
    draws = {k: v.reshape((L, -1) + v.shape[3:]) for k, v in lanes.samples.items()}
    return draws, r0, lanes.summary()


def lane_draws_fn(draws: dict, r0: np.ndarray, lane: int):
    level, floor, t = (jnp.asarray(draws[k][lane]) for k in ("level", "floor", "t"))
    r0 = jnp.asarray(r0[lane])

    def f(r):
        return jax.vmap(m4_mean, in_axes=(None, 0, 0, 0))(r - r0, level, floor, t)[..., 0]

    return f


def algorithm2_order(pool: np.ndarray, start: list[int], n: int, seed: int) -> list[int]:
    """Pool indices in Algorithm 2 order: each Algorithm 2 mixture's nearest untried pool run."""
    bounds = SimplexBounds([str(j) for j in range(pool.shape[1])])
    targets = cand.algorithm2(bounds, 4 * n, delta=0.01, seed=seed)
    order = np.random.default_rng(seed).permutation(len(targets))
    used = set(start)
    picked = []
    for k in order:
        dist = cand.tv_distance(targets[k][None], pool)[0]
        dist[list(used)] = np.inf
        j = int(np.argmin(dist))
        used.add(j)
        picked.append(j)
        if len(picked) >= n:
            break
    rest = [j for j in np.random.default_rng(seed + 1).permutation(len(pool)) if j not in used]
    return picked + rest[: max(0, n - len(picked))]


def runs_to_find(sequence: list[int], top: set[int]) -> float:
    """1-based position of the first top run in the sequence (inf when absent)."""
    for k, j in enumerate(sequence):
        if j in top:
            return float(k + 1)
    return float("inf")


def _runs(value: float, cap: int):
    """A run count for the table: ``">cap"`` when censored."""
    return value if value <= cap else f">{cap}"


def regret_curve(sequence: list[int], y: np.ndarray) -> np.ndarray:
    return np.minimum.accumulate(y[np.asarray(sequence)]) - y.min()


def bench_regmix(args) -> dict:
    r, y, runs, domains = load_pool(Path(args.anchors), args.eval)
    n_pool = len(y)
    n_top = int(np.ceil(args.top * n_pool))
    top = set(np.argsort(y)[:n_top].tolist())
    cap = args.n_init + args.q * args.rounds
    starts = [np.random.default_rng(1000 + s).choice(n_pool, size=args.n_init, replace=False).tolist()
              for s in range(args.seeds)]
    sequences = {name: [list(st) for st in starts] for name in STRATEGIES}
    for s in range(args.seeds):  # the model-free strategies are cheap: run them through the whole pool
        rest = [j for j in np.random.default_rng(2000 + s).permutation(n_pool) if j not in set(starts[s])]
        sequences["random"][s] += rest
        sequences["algorithm2"][s] += algorithm2_order(r, starts[s], n_pool - args.n_init, seed=3000 + s)

    config = SamplerConfig.for_lanes(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples,
                        max_tree_depth=args.tree_depth)
    fit_log = []
    t_start = time.time()
    for rnd in range(args.rounds):
        seqs = sequences["qlogei"]
        idx = np.array(seqs)  # (S, n) - every seed has the same number of runs
        t0 = time.time()
        draws, r0, diag = m4_lanes(r[idx], y[idx], seed=rnd, config=config)
        t_fit = time.time() - t0
        t0 = time.time()
        for s in range(args.seeds):
            tried = cand.mixtures_frame(r[seqs[s]], domains, labels=[runs[j] for j in seqs[s]])
            left = np.setdiff1d(np.arange(n_pool), seqs[s])
            pool = cand.mixtures_frame(r[left], domains, labels=[str(j) for j in left])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = suggest(lane_draws_fn(draws, r0, s), q=args.q, domains=domains, tried=tried, pool=pool,
                                seed=rnd, search=Search(steps=0))
            seqs[s] += [int(j) for j in table["mixture"]]
        t_acq = time.time() - t0
        found = np.mean([runs_to_find(sq, top) < np.inf for sq in seqs])
        fit_log.append({"round": rnd + 1, "runs": len(seqs[0]), "fit_seconds": round(t_fit, 1),
                        "acq_seconds": round(t_acq, 1), "found_share": float(found), **diag})
        print(f"round {rnd + 1}: {len(seqs[0])} runs, fit {t_fit:.0f}s, acquisition {t_acq:.0f}s, "
              f"found {found:.2f}, lane failures {diag['fail_fraction']:.2f}", flush=True)

    rows, curves, medians = [], {}, {}
    for name in STRATEGIES:
        found = np.array([runs_to_find(sq, top) for sq in sequences[name]])  # qlogei: censored at the cap
        medians[name] = float(np.median(found))
        curve = np.median(np.stack([regret_curve(sq[:cap], y) for sq in sequences[name]]), axis=0)
        curves[name] = curve.tolist()
        limit = cap if name == "qlogei" else n_pool
        finite = np.where(np.isfinite(found), found, limit + 1)
        rows.append({"strategy": name, "median_runs": _runs(medians[name], limit),
                     "found_by_cap": f"{int((found <= cap).sum())}/{len(found)}",
                     "q25": _runs(float(np.quantile(finite, 0.25, method="lower")), limit),
                     "q75": _runs(float(np.quantile(finite, 0.75, method="higher")), limit),
                     **{f"regret@{n}": float(curve[n - 1]) for n in (8, 16, 24, 32, 48, 64, cap) if n <= cap}})
    for row in rows:
        med = medians[row["strategy"]]
        row["ratio_to_random"] = med / medians["random"] if np.isfinite(med) else f">{cap / medians['random']:.2f}"
    columns = ["strategy", "median_runs", "ratio_to_random", "found_by_cap", "q25", "q75"] + \
        [k for k in rows[0] if k.startswith("regret@")]
    print(markdown_table(rows, columns, floatfmt=".4g"))
    print()
    print(markdown_table(fit_log, ["round", "runs", "fit_seconds", "acq_seconds", "found_share", "fail_fraction",
                                   "rhat_max", "divergences"], floatfmt=".3g"))
    return {"part": "regmix", "settings": {**vars(args), "pool": n_pool, "top_runs": n_top, "cap": cap,
                                           "best_loss": float(y.min()), "top_threshold": float(np.sort(y)[n_top - 1]),
                                           "nuts": config.to_dict(), "seconds": time.time() - t_start},
            "table": rows, "regret_curves": curves, "rounds": fit_log,
            "runs_to_find": {name: [runs_to_find(sq, top) for sq in sequences[name]] for name in STRATEGIES}}


# ---------------------------------------------------------------- nested simulation


NESTED_DOMAINS = ["web", "code", "books", "papers"]
NESTED_EVALS = ["val_web", "val_code", "val_books"]
PROXY_SIZES = (2e6, 6e6, 2e7)
TARGET_SIZE, TARGET_STEP = 200_000_000, 100_000


def true_optimum(law, bounds: SimplexBounds) -> tuple[np.ndarray, float]:
    """Minimum over the simplex of the law's overall loss at the target scale (projected Adam, many starts)."""
    from bayesmix.decide.simplex import minimise_on_simplex

    scale = jnp.asarray(law.scale_term(TARGET_SIZE, TARGET_STEP))
    c, t, w = jnp.asarray(law.c), jnp.asarray(law.t), jnp.asarray(law.weights)

    def f(r):
        return (c + jnp.exp(t @ r) * scale) @ w

    starts = np.concatenate([cand.vertices(bounds), cand.dirichlet(bounds, 64, seed=0, concentration=1.0)])
    with jax.enable_x64(True):
        r_best, value, _ = minimise_on_simplex(f, bounds, starts, steps=400, learning_rate=0.02, seed=0)
    return r_best, value


def bench_nested(args) -> dict:
    from bayesmix.decide.decisions import optimum
    from bayesmix.pipeline.nested import Pipeline
    from bayesmix.data.simulate import NestedLaw, simulate_campaign

    steps = np.geomspace(1000, 30000, 6).astype(int)
    small = {"fit_config": SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=150),
             "lane_config": SamplerConfig.for_lanes(num_chains=2, num_warmup=200, num_samples=50),
             "curve_config": SamplerConfig.for_lanes(num_chains=2, num_warmup=200, num_samples=100, dense_mass=True)}
    bounds = SimplexBounds(NESTED_DOMAINS)
    records = []
    t_start = time.time()
    for s in range(args.seeds):
        law = NestedLaw.random(NESTED_DOMAINS, NESTED_EVALS, seed=100 + s, interaction=1.5)
        _, f_star = true_optimum(law, bounds)
        init = cand.space_filling(bounds, args.nested_init, seed=s)
        for strategy in ("qlogei", "random"):
            mixtures = init.copy()
            for rnd in range(args.rounds + 1):
                frame = cand.mixtures_frame(mixtures, NESTED_DOMAINS, prefix="m")
                runs = simulate_campaign(law, frame, sizes=PROXY_SIZES, steps=steps, seed=10 * s + 1)
                t0 = time.time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, n_draws=args.nested_draws,
                                      **small).fit(runs, seed=rnd)
                    with jax.enable_x64(True):
                        best = optimum(result.loss_fn(seed=rnd), NESTED_DOMAINS, seed=rnd)
                t_fit = time.time() - t0
                true_runs = law.overall(mixtures, TARGET_SIZE, TARGET_STEP)
                records.append({"seed": s, "strategy": strategy, "round": rnd, "mixtures": len(mixtures),
                                "regret_recommended": float(law.overall(best.mixture.to_numpy()[None], TARGET_SIZE,
                                                                        TARGET_STEP)[0] - f_star),
                                "regret_best_run": float(true_runs.min() - f_star), "seconds": round(t_fit, 1)})
                print(records[-1], flush=True)
                if rnd == args.rounds:
                    break
                if strategy == "qlogei":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        table = suggest(result, q=args.nested_q, seed=rnd, search=Search(steps=100, n_candidates=512))
                    new = table[[MIX_PREFIX + d for d in NESTED_DOMAINS]].to_numpy(float)
                else:
                    new = cand.dirichlet(bounds, args.nested_q, seed=50 * s + rnd, concentration=1.0)
                mixtures = np.concatenate([mixtures, new])
    frame = pd.DataFrame(records)
    last = frame[frame["round"] == args.rounds]
    rows = []
    for strategy in ("qlogei", "random"):
        sub = frame[frame["strategy"] == strategy].groupby("round")
        rows.append({"strategy": strategy,
                     **{f"regret_rec@{k}": float(v) for k, v in sub["regret_recommended"].median().items()},
                     "regret_best_run_final": float(last[last["strategy"] == strategy]["regret_best_run"].median())})
    base = rows[1]["regret_best_run_final"]
    for row in rows:
        row["ratio_best_run_to_random"] = row["regret_best_run_final"] / base if base > 0 else float("nan")
    columns = list(rows[0])
    print(markdown_table(rows, columns, floatfmt=".4g"))
    return {"part": "nested", "settings": {**vars(args), "proxy_sizes": PROXY_SIZES, "steps": steps.tolist(),
                                           "target": [TARGET_SIZE, TARGET_STEP], "seconds": time.time() - t_start},
            "table": rows, "records": records}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("regmix", "nested"), default="regmix")
    parser.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="folder holding regmix/ (default: %(default)s)")
    parser.add_argument("--eval", default="pile_cc", help="RegMix eval column to minimise (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20, help="acquisition rounds (cap on runs: n_init + q rounds)")
    parser.add_argument("--n-init", type=int, default=8)
    parser.add_argument("--q", type=int, default=4)
    parser.add_argument("--top", type=float, default=0.01, help="share of the pool counted as 'best'")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--tree-depth", type=int, default=7)
    parser.add_argument("--nested-init", type=int, default=6, help="nested: initial mixtures (space-filling)")
    parser.add_argument("--nested-q", type=int, default=2, help="nested: mixtures added per round")
    parser.add_argument("--nested-draws", type=int, default=16, help="nested: upstream draws propagated")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.part == "regmix":
        payload = bench_regmix(args)
    else:
        payload = bench_nested(args)
    if args.out:
        write_json(payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
