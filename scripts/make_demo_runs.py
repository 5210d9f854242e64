"""Make the bundled demo run table ``bayesmix/data/demo_runs.parquet``.

A sweep on the bundled corpus: the uniform mixture (the natural baseline), one
mixture led by each domain (80% on it, 5% on each other) and 10 Dirichlet(1)
draws (seed 0), for the three smallest model sizes, each run planned for 2400
steps and stopped at 800 (as the data-mixing-laws paper plans 100k and stops at
30k), with 10 log-spaced checkpoints from step 50 and the validation loss of
every domain at each. Runs use one CPU thread each, in fp32, and are resumable
(state in ``--workdir``).

    python scripts/make_demo_runs.py --workers 2

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

from bayesmix.proxy.demo import DEMO_DIRICHLET, DEMO_SETTINGS, DEMO_SIZES  # noqa: E402

SETTINGS = DEMO_SETTINGS
SIZES = ",".join(DEMO_SIZES)
N_DIRICHLET = DEMO_DIRICHLET


def main(argv=None) -> int:
    from bayesmix.proxy.corpora import bundled_corpus
    from bayesmix.proxy.mixtures import design_mixtures
    from bayesmix.proxy.sweeps import sweep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bayesmix" / "data" / "demo_runs.parquet")
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
    t0 = time.time()
    rows = sweep(mixtures, args.sizes.split(","), corpus=corpus, out=args.out, workdir=args.workdir,
                 device=args.device, workers=args.workers, threads=1, **settings)
    print(f"{len(rows)} rows, {rows['run'].nunique()} runs, {rows['step'].nunique()} checkpoints, "
          f"{rows['eval'].nunique()} evals in {time.time() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
