"""Make the bundled demo run tables ``bayesmix/data/bundled/demo_runs.parquet`` (fitted) and
``bayesmix/data/bundled/demo_target_runs.parquet`` (held out at the target scale).

``--part fitted``: a sweep on the bundled corpus: the uniform mixture (the natural
baseline), one mixture led by each domain (80% on it, 5% on each other) and 10
Dirichlet(1) draws (seed 0), for the three smallest model sizes, each run
planned for 2400 steps and stopped at 800 (as the data-mixing-laws paper plans
100k and stops at 30k); plus the uniform and domain-led mixtures taken through a
whole 800-step schedule (runs ``<mixture>-anneal800@<size>``), so that the
schedule-aware step law sees an anneal. 10 log-spaced checkpoints from step 50
and the validation loss of every domain at each.

``--part target``: the uniform, domain-led and three face mixtures at 1.2M
parameters through the whole 2400-step schedule (never fitted; the demo report
checks its predictions against them).

Runs use one CPU thread each, in fp32, and are resumable (state in ``--workdir``).
Every row carries the learning rate and the run's schedule (``schedule.*``).

    python scripts/make_demo_runs.py --workers 2
    python scripts/make_demo_runs.py --part target --workers 2

The flags scale it up for a GPU, e.g. ``--device cuda --workers 12 --sizes
1.2M,2.7M,6.3M --steps 2000 --plan-steps 6000 --batch-size 16 --seq-len 256``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bayesmix.proxy.demo import (DEMO_ANNEAL_SETTINGS, DEMO_ANNEAL_SUFFIX, DEMO_DIRICHLET, DEMO_SETTINGS,  # noqa: E402
                                 DEMO_SIZES, DEMO_TARGET_FACES, DEMO_TARGET_PATH, DEMO_TARGET_SETTINGS,
                                 DEMO_TARGET_SIZE)

SETTINGS = DEMO_SETTINGS
SIZES = ",".join(DEMO_SIZES)
N_DIRICHLET = DEMO_DIRICHLET


def main(argv=None) -> int:
    from bayesmix.proxy.corpora import bundled_corpus
    from bayesmix.proxy.mixtures import design_mixtures
    from bayesmix.proxy.sweeps import sweep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("fitted", "target"), default="fitted",
                        help="the fitted table (default) or the held-out target-scale runs")
    parser.add_argument("--out", type=Path, help="default: bayesmix/data/bundled/demo_runs.parquet or "
                                                 "demo_target_runs.parquet")
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "bayesmix" / "demo-runs-work",
                        help="run state, for resuming (default ~/.cache/bayesmix/demo-runs-work)")
    parser.add_argument("--sizes", default=SIZES, help=f"model sizes (default {SIZES})")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="parallel runs (processes)")
    parser.add_argument("--mixtures-out", type=Path, help="also write the mixture design here (CSV)")
    parser.add_argument("--design-only", action="store_true", help="write --mixtures-out and stop")
    for key in ("steps", "plan_steps", "batch_size", "seq_len", "checkpoints", "first_checkpoint", "eval_tokens"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=SETTINGS[key],
                            help=f"default {SETTINGS[key]}")
    args = parser.parse_args(argv)
    settings = {**SETTINGS, **{k: getattr(args, k) for k in SETTINGS if hasattr(args, k)}}

    corpus = bundled_corpus()
    design = design_mixtures(corpus.names, N_DIRICHLET, seed=0)
    if args.mixtures_out:
        design.to_csv(args.mixtures_out, index=False)
    if args.design_only:
        if not args.mixtures_out:
            parser.error("--design-only needs --mixtures-out")
        return 0
    mixtures = {row["name"]: {d: row[d] for d in corpus.names} for _, row in design.iterrows()}
    led = {name: mix for name, mix in mixtures.items() if name == "uniform" or name.endswith("-led")}
    common = dict(corpus=corpus, workdir=args.workdir, device=args.device, workers=args.workers, threads=1)
    t0 = time.time()
    if args.part == "target":
        out = args.out or DEMO_TARGET_PATH
        rows = sweep({**led, **DEMO_TARGET_FACES}, [DEMO_TARGET_SIZE], out=out, **common, **DEMO_TARGET_SETTINGS)
    else:
        out = args.out or ROOT / "bayesmix" / "data" / "bundled" / "demo_runs.parquet"
        sweep(mixtures, args.sizes.split(","), out=out, **common, **settings)
        anneal = {name + DEMO_ANNEAL_SUFFIX: mix for name, mix in led.items()}
        rows = sweep(anneal, args.sizes.split(","), out=out, **common,
                     **dict(settings, plan_steps=DEMO_ANNEAL_SETTINGS["plan_steps"]))
    from bayesmix.data.table import read_runs

    rows = read_runs(out)
    print(f"{len(rows)} rows, {rows['run'].nunique()} runs, {rows['step'].nunique()} checkpoints, "
          f"{rows['eval'].nunique()} evals in {time.time() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
