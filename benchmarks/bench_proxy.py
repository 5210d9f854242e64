"""Proxy-trainer throughput: the trainer's step against a plain reference loop, per model size.

For each size, in the same process and on the same mixture-sampled batches of
the bundled corpus:

* ``trainer``: the training step of :mod:`bayesmix.proxy.train` -- fused
  attention (``scaled_dot_product_attention``), multi-tensor AdamW on the CPU
  / fused AdamW on a GPU, bf16 autocast on a GPU, ``torch.compile`` with
  ``--compile`` (on by default on a GPU);
* ``reference``: the same model and optimiser maths written plainly -- explicit
  softmax attention, per-parameter AdamW loop, fp32, no compile.

Reported: milliseconds per step, tokens per second, the speed-up of the trainer
over the reference, and on a GPU the model FLOPs utilisation (MFU: PaLM-style
training FLOPs per token, ``6 (N + d V) + 12 L d T``, times tokens per second,
over the GPU's dense bf16 peak).

    python benchmarks/bench_proxy.py --out .bench/proxy_cpu.json
    python benchmarks/bench_proxy.py --device cuda --sizes 21M,50M,85M,200M,300M --out .bench/proxy_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayesmix.proxy.corpora import bundled_corpus  # noqa: E402
from bayesmix.proxy.mixtures import validate_mixture  # noqa: E402
from bayesmix.proxy.model import SIZES, build_model  # noqa: E402
from bayesmix.proxy.runtime import make_optimizer, resolve_device, resolve_precision, to_device  # noqa: E402
from bayesmix.proxy.sampling import MixtureSampler  # noqa: E402
from bayesmix.proxy.tokenize import build_token_cache  # noqa: E402
from bayesmix.proxy.train import train_step  # noqa: E402

CPU_SIZES = "100k,200k,450k,1.2M,2.7M,6.3M,12M,21M"
GPU_SIZES = "21M,50M,85M,200M,300M"
#: Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment.
PEAKS = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAKS.items() if k in name), None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(size, sampler, device, *, variant: str, compile_model: bool, steps: int, warmup: int,
                 min_seconds: float, max_steps: int) -> dict:
    """Warm up, then time steps until both ``steps`` and ``min_seconds`` are reached."""
    reference = variant == "reference"
    precision = "fp32" if reference else resolve_precision("auto", device)
    model = build_model(size, attention="reference" if reference else "fused", seed=0).to(device)
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95), device=device, plain=reference)
    step_model = torch.compile(model) if compile_model else model
    t0 = time.perf_counter()
    for i in range(warmup):
        train_step(step_model, model, optimizer, to_device(sampler.batch(i), device), lr=1e-4, grad_clip=1.0,
                   device=device, precision=precision)
    _sync(device)
    warmup_seconds = time.perf_counter() - t0
    times, n = [], 0
    start = time.perf_counter()
    while n < max_steps and (n < steps or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        loss = train_step(step_model, model, optimizer, to_device(sampler.batch(warmup + n), device), lr=1e-4,
                          grad_clip=1.0, device=device, precision=precision)
        _sync(device)
        times.append(time.perf_counter() - t)
        n += 1
    total = time.perf_counter() - start
    del model, optimizer, step_model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"steps": n, "seconds": total, "ms_per_step": 1000 * total / n,
            "ms_per_step_median": 1000 * float(np.median(times)), "warmup_seconds": warmup_seconds,
            "precision": precision, "compiled": compile_model, "loss": float(loss.float().item())}


def markdown(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--sizes", help=f"comma-separated sizes (default CPU {CPU_SIZES}; GPU {GPU_SIZES})")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default CPU 8, GPU 32)")
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (default CPU 128, GPU 1024)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps at least (default 5)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time each variant at least this long")
    parser.add_argument("--max-steps", type=int, default=200, help="timed steps at most (default 200)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile for the trainer variant (auto: on for GPU, off for CPU)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="peak bf16 TFLOP/s for MFU (default from the GPU name)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    parser.add_argument("--cache-dir", help="token cache folder")
    parser.add_argument("--out", default=".bench/proxy.json", help="JSON results path")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (args.sizes or (GPU_SIZES if gpu else CPU_SIZES)).split(",")
    batch_size = args.batch_size or (32 if gpu else 8)
    seq_len = args.seq_len or (1024 if gpu else 128)
    compile_model = args.compile == "on" or (args.compile == "auto" and gpu)
    peak = peak_flops(device, args.peak_tflops)

    corpus = bundled_corpus()
    cache = build_token_cache(corpus, cache_dir=args.cache_dir)
    mixture = validate_mixture({d: 1 / len(corpus.names) for d in corpus.names}, corpus.names)
    sampler = MixtureSampler({d: cache.tokens(d, "train") for d in corpus.names}, mixture,
                             batch_size=batch_size, seq_len=seq_len, seed=0)
    tokens_per_step = batch_size * seq_len

    rows = []
    for name in sizes:
        size = SIZES[name]
        row = {"size": name, "params": size.non_embedding_params}
        variants = [("trainer", compile_model)] + ([] if args.no_reference else [("reference", False)])
        for variant, comp in variants:
            try:
                r = time_variant(name, sampler, device, variant=variant, compile_model=comp, steps=args.steps,
                                 warmup=args.warmup, min_seconds=args.min_seconds, max_steps=args.max_steps)
            except torch.cuda.OutOfMemoryError:
                row[f"{variant}_ms"] = "out of memory"
                torch.cuda.empty_cache()
                continue
            tps = tokens_per_step * r["steps"] / r["seconds"]
            row[f"{variant}_ms"] = r["ms_per_step"]
            row[f"{variant}_tok_s"] = tps
            row[f"{variant}_detail"] = r
            if peak:
                row[f"{variant}_mfu"] = size.flops_per_token(seq_len) * tps / peak
        if isinstance(row.get("reference_ms"), float) and isinstance(row.get("trainer_ms"), float):
            row["speedup"] = row["reference_ms"] / row["trainer_ms"]
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in row.items() if not k.endswith("detail")), flush=True)

    columns = ["size", "params", "trainer_ms", "trainer_tok_s"]
    if not args.no_reference:
        columns += ["reference_ms", "reference_tok_s", "speedup"]
    if peak:
        columns += ["trainer_mfu"] + ([] if args.no_reference else ["reference_mfu"])
    table_rows = [{k: (100 * v if k.endswith("_mfu") else v) for k, v in r.items()} for r in rows]
    header = (f"device: {torch.cuda.get_device_name(device) if gpu else platform.processor() or 'cpu'}; "
              f"torch {torch.__version__}; batch {batch_size} x {seq_len} tokens; threads {torch.get_num_threads()}; "
              f"trainer precision {resolve_precision('auto', device)}, compile {compile_model}"
              + (f"; MFU in % of {peak / 1e12:.0f} TFLOP/s" if peak else ""))
    print(header)
    print(markdown(table_rows, columns))
    payload = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if gpu else "cpu",
               "torch": torch.__version__, "batch_size": batch_size, "seq_len": seq_len,
               "threads": torch.get_num_threads(), "compile": compile_model, "peak_flops": peak,
               "command": " ".join(sys.argv), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
