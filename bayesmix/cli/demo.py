"""``bayesmix demo``: the main job on the bundled proxy runs, ending in an HTML report."""

from __future__ import annotations

import argparse

HELP = """The main job, end to end, on the bundled demo runs (16 mixtures of five
domains x 3 small model sizes, real proxy training on the bundled corpus):

  nested pipeline (step law -> size law -> mixing law, uncertainty carried through)
  -> predicted loss of any mixture at the target scale, with intervals
  -> suggestions for the next runs
  -> a self-contained, risk-aware HTML report

With --live N it then runs N rounds of the closed loop: train the suggested
mixtures with the proxy trainer at small sizes, add them, refit, suggest again.
The default settings take a few minutes on a laptop CPU; --thorough uses the
sampler settings meant for a final answer (slower).

examples:
  bayesmix demo
  bayesmix demo --out demo-output --live 1
  bayesmix demo --thorough --target-size 2.7M --seed 1
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the main job on the bundled data and write a report",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bayesmix-demo", help="output folder (default ./bayesmix-demo)")
    p.add_argument("--live", type=int, default=0, metavar="N",
                   help="closed-loop rounds with the proxy trainer after the first fit (default 0)")
    p.add_argument("--runs", help="use this run table instead of the bundled one (.csv, .parquet, .jsonl)")
    p.add_argument("--baseline", default="uniform", help="mixture to beat (default uniform)")
    p.add_argument("--target-size", default=None,
                   help="model size to predict: a proxy size name (e.g. 1.2M) or a parameter count (default 1.2M)")
    p.add_argument("--target-step", type=int, default=None, help="step to predict (default 2400, the planned length)")
    p.add_argument("--n-draws", type=int, default=None, metavar="D", help="upstream draws propagated (default 16; "
                   "the same option as bayesmix pipeline's)")
    p.add_argument("--q", type=int, default=None, help="mixtures suggested per round (default 4)")
    p.add_argument("--workers", type=int, default=None, help="parallel training runs in live rounds (default 2)")
    p.add_argument("--thorough", action="store_true", help="sampler settings for a final answer (slower)")
    p.add_argument("--verify", action="store_true",
                   help="also train the recommended mixture and the baseline at the target scale with the proxy "
                        "trainer and check the predictions against them (about 12 minutes per run on one CPU "
                        "thread at 1.2M)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def settings_from_args(args):
    """DemoSettings from the command line."""
    import dataclasses

    from bayesmix.demo import QUICK, THOROUGH

    base = THOROUGH if args.thorough else QUICK
    changes = {"target_size": args.target_size, "target_step": args.target_step, "n_draws": args.n_draws,
               "q": args.q, "workers": args.workers}
    for name in ("target_step", "n_draws", "q", "workers"):
        value = changes[name]
        if value is not None and value < (2 if name == "n_draws" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be at least "
                             f"{2 if name == 'n_draws' else 1}, got {value}")
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def run(args) -> int:
    from bayesmix.demo import OUTPUT_FILES, run_demo, target_parameters
    from bayesmix.data.io import check_output_folder

    if args.live < 0:
        raise ValueError(f"--live must be 0 or more rounds, got {args.live}")
    settings = settings_from_args(args)
    check_output_folder(args.out, files=OUTPUT_FILES, inputs=[args.runs])
    target_parameters(settings.target_size)  # a bad size fails before any work
    runs = None
    if args.runs:
        from bayesmix.data.table import read_runs

        runs = read_runs(args.runs)
    run_demo(args.out, live=args.live, seed=args.seed, settings=settings, runs=runs, baseline=args.baseline,
             progress=False if args.no_progress else None, verify=args.verify)
    return 0
