"""``bayesmix train``: run (mixture, size) proxy runs and write the run table.

Register with ``add_train_parser(subparsers)``; the parser's default ``func``
is :func:`run_train`.
"""

from __future__ import annotations

import argparse
import sys

HELP = """Train small GPT-style proxy models on training mixtures and write their
per-domain validation losses at log-spaced checkpoints as a run table
(run, size, step, tokens, eval, loss, mix.<domain>...).

Every (mixture, size) pair is one run, named <mixture>@<size>. Run state lives
in --workdir (default: <out>.work/): a killed sweep resumes where it stopped and
finished runs are not trained again. The schedule is planned for --plan-steps
and each run stops at --steps (as in the data-mixing-laws paper).

examples:
  bayesmix train --list-sizes
  bayesmix train --mixture code=0.5,english=0.5 --sizes 100k --steps 300 --out runs.parquet
  bayesmix train --mixtures mixtures.csv --sizes 100k,200k,450k --steps 2000 --plan-steps 6000 \\
      --workers 2 --out runs.parquet
  bayesmix train --mixtures mixtures.csv --sizes 21M --corpus my_domains/ --device cuda \\
      --backend ray --ray-address auto --out runs.parquet

mixtures file: CSV/Parquet/JSONL with an optional 'name' column and one column
per domain (or mix.<domain>), a JSON object {name: {domain: proportion}}, or a
run table (its runs' mixtures). Domains left out get 0; proportions must be
non-negative and sum to 1.
"""


def _sizes(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train proxy runs on mixtures and write a run table",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to train")
    src = what.add_mutually_exclusive_group()
    src.add_argument("--mixtures", metavar="FILE", help="file of named mixtures (see below)")
    src.add_argument("--mixture", metavar="D=P,...", help="one mixture inline, e.g. code=0.5,english=0.5")
    what.add_argument("--name", help="name of the --mixture (default: made from its proportions)")
    what.add_argument("--sizes", type=_sizes, default=["100k"], help="comma-separated model sizes (default 100k)")
    what.add_argument("--corpus", metavar="DIR", help="corpus directory, one entry per domain (default: bundled)")
    what.add_argument("--domain", action="append", default=[], metavar="NAME=PATH",
                      help="a domain from a directory/JSONL/Parquet file (repeat; instead of --corpus)")
    what.add_argument("--text-column", default="text", help="text column of JSONL/Parquet domains (default text)")
    what.add_argument("--evals", help="comma-separated eval domains (default: every corpus domain)")
    what.add_argument("--list-sizes", action="store_true", help="print the model sizes and exit")
    what.add_argument("--list-domains", action="store_true", help="print the corpus domains and exit")

    sched = p.add_argument_group("schedule")
    sched.add_argument("--steps", type=int, default=1000, help="stopping step of every run (default 1000)")
    sched.add_argument("--plan-steps", type=int, help="steps the schedule is planned for (default --steps)")
    sched.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    sched.add_argument("--seq-len", type=int, default=128, help="tokens (bytes) per sequence (default 128)")
    sched.add_argument("--lr", type=float, help="peak learning rate (default: the size's)")
    sched.add_argument("--warmup", type=int, help="warm-up steps (default 2%% of --plan-steps)")
    sched.add_argument("--checkpoints", type=int, default=10, help="log-spaced checkpoints (default 10)")
    sched.add_argument("--first-checkpoint", type=int, help="first checkpoint step (default steps/32)")
    sched.add_argument("--eval-tokens", type=int, default=32768, help="validation tokens per domain (default 32768)")
    sched.add_argument("--seed", type=int, default=0, help="seed of weights and batches (default 0)")

    run = p.add_argument_group("execution")
    run.add_argument("--out", help="run table to write (.parquet, .csv or .jsonl)")
    run.add_argument("--workdir", help="run state folder (default <out>.work)")
    run.add_argument("--cache-dir", help="token cache folder (default $BAYESMIX_CACHE or ~/.cache/bayesmix)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                     help="auto: bf16 autocast on GPU, fp32 on CPU")
    run.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    run.add_argument("--threads", type=int, help="CPU threads per run (default: torch's; pool workers use 1)")
    run.add_argument("--backend", default="local", choices=["local", "ray"], help="local (default) or ray")
    run.add_argument("--workers", type=int, default=1, help="parallel runs (processes or Ray CPUs; default 1)")
    run.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_train)
    return p


def _corpus(args):
    from bayesmix.proxy.corpora import load_corpus

    if args.domain and args.corpus:
        raise ValueError("give either --corpus or --domain, not both")
    if args.domain:
        mapping = {}
        for item in args.domain:
            if "=" not in item:
                raise ValueError(f"--domain expects NAME=PATH, got {item!r}")
            name, path = item.split("=", 1)
            mapping[name.strip()] = path.strip()
        return load_corpus(mapping, text_column=args.text_column)
    return load_corpus(args.corpus or None, text_column=args.text_column)


def _print_sizes(out=None) -> None:
    from bayesmix.proxy.model import SIZES

    out = out or sys.stdout
    print("| size | layers | d_model | heads | non-embedding params | default lr |", file=out)
    print("|---|---|---|---|---|---|", file=out)
    for s in SIZES.values():
        print(f"| {s.name} | {s.n_layer} | {s.d_model} | {s.n_head} | {s.non_embedding_params:,} | {s.lr:g} |",
              file=out)


def run_train(args) -> int:
    """Run the ``train`` subcommand; returns the exit code (1 when some runs failed)."""
    if args.list_sizes:
        _print_sizes()
        return 0
    corpus = _corpus(args)
    if args.list_domains:
        for d in corpus.domains:
            print(f"{d.name}\t{', '.join(str(p) for p in (*d.train, *d.valid))}")
        return 0
    from bayesmix.data.io import TABLE_SUFFIXES, check_output, check_output_folder
    from bayesmix.proxy.mixtures import mixture_label, parse_mixture, validate_mixture
    from bayesmix.proxy.sweeps import SweepError, default_workdir, sweep

    if not args.out:
        raise ValueError("--out is required: the run table to write (.parquet, .csv or .jsonl)")
    check_output(args.out, suffixes=TABLE_SUFFIXES, inputs=[d.split("=", 1)[-1] for d in args.domain],
                 what="run table")
    check_output_folder(args.workdir or default_workdir(args.out), option="--workdir")
    if args.mixture:
        mix = parse_mixture(args.mixture)
        name = args.name or mixture_label(validate_mixture(mix, corpus.names, name="--mixture"))
        mixtures = {name: mix}
    elif args.mixtures:
        mixtures = args.mixtures
    else:
        raise ValueError("give --mixtures FILE or --mixture DOMAIN=P,...")
    settings = {"steps": args.steps, "plan_steps": args.plan_steps, "batch_size": args.batch_size,
                "seq_len": args.seq_len, "lr": args.lr, "warmup": args.warmup, "checkpoints": args.checkpoints,
                "first_checkpoint": args.first_checkpoint, "eval_tokens": args.eval_tokens, "seed": args.seed,
                "device": args.device, "precision": args.precision, "compile": args.compile, "threads": args.threads}
    evals = [e.strip() for e in args.evals.split(",")] if args.evals else None
    try:
        result = sweep(mixtures, args.sizes, corpus=corpus, out=args.out, workdir=args.workdir,
                       backend=args.backend, workers=args.workers, ray_address=args.ray_address,
                       cache_dir=args.cache_dir, evals=evals, progress=False if args.no_progress else None,
                       details=True, **settings)
    except ImportError as exc:  # the ray backend without Ray installed
        raise ValueError(str(exc)) from None
    except SweepError as exc:
        print(f"bayesmix train: {exc}", file=sys.stderr)
        if exc.written:
            print(f"bayesmix train: rows of the {len(exc.written)} finished run(s) are in {args.out}",
                  file=sys.stderr)
        return 1
    rows = result.rows
    print(f"wrote {len(rows)} rows ({rows['run'].nunique()} runs x {rows['step'].nunique()} checkpoint steps x "
          f"{rows['eval'].nunique()} eval domains) to {args.out}; trained {len(result.trained)}, "
          f"skipped {len(result.skipped)} finished")
    last = rows[rows["step"] == rows.groupby("run")["step"].transform("max")]
    print(last.pivot_table(index="run", columns="eval", values="loss").round(4).to_string())
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m bayesmix.proxy.cli ...``)."""
    parser = argparse.ArgumentParser(prog="bayesmix")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"bayesmix train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
