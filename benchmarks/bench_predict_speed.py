"""Seconds and XLA compilations of a fitted pipeline's predictions, report and suggestions.

    python benchmarks/bench_predict_speed.py --fit out/campaign/fits/round_000 --out out/bench_predict_speed.json

``--fit``: a saved pipeline (``bayesmix demo`` writes one under ``OUT/campaign/fits/``);
without it the demo's pipeline is fitted first (about two minutes). Rows:

* ``predict`` at 1, 7, 50 and 333 mixtures: :meth:`PipelineResult.predict`, whose mixing-law
  means, lane shrink and discrepancy draws run in numpy, against the baseline of the same
  formulas in eager ``jax.numpy`` (every primitive compiled once per new shape), the two
  checked equal;
* ``report``: :func:`bayesmix.report.build.report_from_pipeline` (its two optimisers, the
  ranking of 1,000 Dirichlet candidates, the figures);
* ``suggest``: four suggestions (:func:`bayesmix.design.suggest.suggest`), every pick refined.

Each row counts the XLA programs compiled while it ran (after one untimed prediction at the
tried mixtures, which computes the discrepancy's grid posteriors once); run it in a fresh
process, without the persistent compilation cache (it is off unless set).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

from bayesmix.laws.mixing import m4_draws  # noqa: E402
from bayesmix.pipeline.lanenoise import shrink_by_lane  # noqa: E402


class CompileCounter(logging.Handler):
    """Counts JAX's "Finished XLA compilation" log records (``jax_log_compiles``)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        if "Finished XLA compilation" in record.getMessage():
            self.count += 1


def timed(counter: CompileCounter, fn, *args, **kwargs) -> tuple[object, float, int]:
    """``fn(*args, **kwargs)``, its seconds and the compilations it caused."""
    before, t0 = counter.count, time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, counter.count - before


def eager_jax_predict(result, mixtures) -> np.ndarray:
    """The baseline: :meth:`PipelineResult.predict`'s draws (mean kind) with every array
    operation in eager ``jax.numpy``: (draws, points)."""
    stage = result.stages["mix"]
    query = stage.law.query(stage.data, mixtures=mixtures)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(result.params[k]) for k in ("level", "floor", "t")}
        per_eval = m4_draws(jnp.asarray(query.arrays["r_centered"]), p["level"], p["floor"], p["t"])
        if result.lane_ratio is not None:
            ratio = jnp.asarray(result.lane_ratio)
            per_eval = shrink_by_lane(per_eval, result.lane_of_draw, ratio[:, None, :], ratio.shape[0])
        values = stage.law.mean_from_per_eval(np.asarray(per_eval), query, stage.data.meta)
        if result.discrepancy is not None:
            r = jnp.asarray(query.arrays["r_centered"] + np.asarray(stage.data.meta["r0"]))
            delta = []
            for name in query.evals:
                disc, factor = result.eval_discrepancy(name)
                delta.append(factor * np.asarray(disc.delta_fn(values.shape[0], own=result.own_domain(name),
                                                               xp=jnp)(r)))
            values = values + np.stack(delta, axis=-1).reshape(values.shape[0], -1)
    return values


def load_or_fit(path: str | None):
    from bayesmix.demo import QUICK, demo_table
    from bayesmix.pipeline.store import load_pipeline

    if path:
        return load_pipeline(path), demo_table()[0]
    runs, _ = demo_table()
    return QUICK.pipeline(progress=False).fit(runs, seed=0), runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", help="a saved pipeline folder (default: fit the demo's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write results as JSON here")
    args = parser.parse_args(argv)
    from bayesmix.design.suggest import suggest
    from bayesmix.report.build import report_from_pipeline

    result, runs = load_or_fit(args.fit)
    counter = CompileCounter()
    jax.config.update("jax_log_compiles", True)
    for name in ("jax", "jax._src"):
        logging.getLogger(name).addHandler(counter)
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = False  # counted, not printed
    rng = np.random.default_rng(args.seed)
    result.predict(seed=args.seed)  # untimed: the discrepancy's grid posteriors and draws, computed once and kept
    rows = []
    for n in (1, 7, 50, 333):
        mixtures = rng.dirichlet(np.ones(len(result.domains)), size=n)
        frame = pd.DataFrame(mixtures, columns=result.domains).assign(mixture=[f"m{i}" for i in range(n)])
        draws, s_np, c_np = timed(counter, result.predict, frame, draws=True, seed=args.seed)
        base, s_jax, c_jax = timed(counter, eager_jax_predict, result, frame)
        same = float(np.max(np.abs(np.asarray(draws) - base)))
        rows.append({"task": f"predict {n} mixtures", "seconds": s_np, "compilations": c_np,
                     "baseline_seconds": s_jax, "baseline_compilations": c_jax, "max_abs_difference": same})
    _, s_rep, c_rep = timed(counter, report_from_pipeline, result, runs=runs, seed=args.seed)
    rows.append({"task": "report", "seconds": s_rep, "compilations": c_rep})
    _, s_sug, c_sug = timed(counter, suggest, result, q=4, seed=args.seed)
    rows.append({"task": "suggest q = 4", "seconds": s_sug, "compilations": c_sug})
    print(f"pipeline with {result.n_draws_total} mixing-law draws, {len(result.domains)} domains, "
          f"{len(result.evals)} eval domains; baseline: the same predictions in eager jax.numpy")
    columns = ["task", "seconds", "compilations", "baseline_seconds", "baseline_compilations", "max_abs_difference"]
    print(markdown_table(rows, columns, floatfmt=".3g"))
    if args.out:
        write_json({"fit": args.fit, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
