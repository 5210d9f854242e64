"""Wall time and convergence checks of the main job's pipeline on the bundled demo runs.

    python benchmarks/bench_demo_speed.py --out out/bench_demo_speed.json

Fits the demo's pipeline (``bayesmix.demo.QUICK``: draws mode, its sampler settings) on the
bundled proxy-run table and reports the seconds of every stage (step, size, mixing law,
backtests) and whether each stage passes its convergence checks
(:func:`bayesmix.pipeline.nested.lanes_failed`: the warning block a user sees in the report).
Baselines in the same run: the step law's curves by NUTS (``step_sampler="nuts"``, one lane
per curve, the sampler before the exact grid), the size law by NUTS lanes (``size_sampler="nuts"``,
the pipeline's default; the demo takes the exact grid) and the point chain (``mode="point"``) with as
many bootstrap resamples as the demo propagates draws. Each configuration runs in its own process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

from bayesmix.demo import QUICK, demo_table  # noqa: E402
from bayesmix.pipeline.runners import lanes_failed  # noqa: E402
from bayesmix.pipeline.stages import STAGES  # noqa: E402


def timed_fit(pipeline, runs, seed: int) -> dict:
    """One fit: total seconds, seconds per stage, and per stage whether its checks pass."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pipeline.fit(runs, seed=seed)
    row = {"mode": pipeline.mode, "step_sampler": pipeline.step_sampler if pipeline.mode != "point" else "",
           "size_sampler": pipeline.size_sampler if pipeline.mode != "point" else "",
           "total_s": round(time.perf_counter() - t0, 1)}
    row.update({f"{k}_s": round(v, 1) for k, v in result.seconds.items()})
    for name in STAGES if pipeline.mode != "point" else ():  # the point chain samples nothing to check
        diag = result.diagnostics.get(name)
        if diag and "lanes" in diag:
            row[f"{name}_check"] = "fails" if lanes_failed(diag) else "passes"
            row[f"{name}_rhat_pooled"] = round(float(diag.get("rhat_pooled", float("nan"))), 3)
    return row


CONFIGS = {"shipped": {}, "step by NUTS": {"step_sampler": "nuts"}, "size by NUTS": {"size_sampler": "nuts"},
           "point chain": {"mode": "point"}}


def in_fresh_process(config: str, seed: int) -> dict:
    """``timed_fit`` of one configuration in its own Python process, so that no row reuses another's
    compiled samplers (the first row would otherwise pay every compilation)."""
    out = subprocess.run([sys.executable, __file__, "--config", config, "--seed", str(seed)], check=True,
                         capture_output=True, text=True).stdout
    return {"config": config, **json.loads(out.strip().splitlines()[-1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", choices=list(CONFIGS), help="fit one configuration and print its row as JSON")
    parser.add_argument("--out", help="write results as JSON here")
    args = parser.parse_args(argv)
    runs, source = demo_table()
    pipeline = QUICK.pipeline(progress=False)
    if args.config:
        print(json.dumps(timed_fit(dataclasses.replace(pipeline, **CONFIGS[args.config]), runs, args.seed)))
        return 0
    rows = [in_fresh_process(config, args.seed) for config in CONFIGS]
    columns = ["config", "mode", "step_sampler", "size_sampler", "total_s", "step_s", "size_s", "mix_s", "backtest_s", "step_check",
               "size_check", "mix_check", "step_rhat_pooled", "size_rhat_pooled", "mix_rhat_pooled"]
    print(f"demo pipeline on {source}: {runs['run'].nunique()} runs, {len(runs)} rows; target "
          f"{pipeline.target_size:,} parameters at step {pipeline.target_step:,}; D = {pipeline.n_draws}; "
          "each row in a fresh process (compilation included)")
    print(markdown_table(rows, [c for c in columns if any(c in r for r in rows)], floatfmt=".3f"))
    if args.out:
        write_json({"source": source, "rows": rows, "settings": dataclasses.asdict(QUICK)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
