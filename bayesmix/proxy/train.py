"""Train one proxy run and return its run-table rows.

    rows = train_run({"code": 0.5, "english": 0.5}, "450k", steps=2000, plan_steps=6000,
                     workdir="runs/")

A run trains one model size on one mixture with AdamW and a warm-up + cosine
schedule planned for ``plan_steps`` (stopping at ``steps``), measures the
validation loss of every domain at log-spaced checkpoints and returns one row
per (checkpoint, eval domain). With a ``workdir`` it is durable: at each
checkpoint the rows and then the model/optimiser state are written atomically
to ``<workdir>/<run>/``; a killed run resumes from its last checkpoint and
reproduces the rows an uninterrupted run would have given (batches depend only
on the seed and the step; bit for bit on the same device, precision and thread
count); a finished run is not trained again. Bad mixtures
and settings are rejected before any training.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bayesmix.data.table import read_table, validate_runs, write_table
from bayesmix.data.io import atomic_write
from bayesmix.inference.progress import progress_enabled
from bayesmix.proxy.corpora import Corpus, load_corpus
from bayesmix.proxy.evaluate import Evaluator
from bayesmix.proxy.mixtures import MixtureError, mixture_label, validate_mixture
from bayesmix.proxy.model import ATTENTION, ModelSize, build_model, get_size
from bayesmix.proxy.runtable import check_out_table, checkpoint_rows, empty_rows, merge_into
from bayesmix.proxy.runtime import autocast, make_optimizer, resolve_device, resolve_precision, to_device
from bayesmix.proxy.sampling import MixtureSampler
from bayesmix.proxy.schedule import checkpoint_steps, cosine_schedule, default_warmup
from bayesmix.proxy.tokenize import TokenCache, build_token_cache

SPEC_VERSION = 1
#: Settings that change how a run executes but not its numbers (on one device);
#: they may differ when a run is resumed.
EXECUTION_FIELDS = ("device", "precision", "compile", "attention", "save_every", "keep_checkpoint", "threads")


class RunConflictError(ValueError):
    """A run of the same name exists in the work directory with different settings, or another
    live process is training it."""


class TrainingDiverged(RuntimeError):
    """A validation loss became non-finite."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a proxy run. ``None`` fields take defaults that depend on the size or steps.

    steps: the stopping step. plan_steps: the length the schedule is planned
    for (default ``steps``). lr: peak learning rate (default: the size's).
    warmup: warm-up steps (default 2% of ``plan_steps``). checkpoints: how many
    log-spaced checkpoints, from ``first_checkpoint`` (default ``steps // 32``).
    eval_tokens: validation tokens per domain at each checkpoint. device
    ``auto``/``cpu``/``cuda``; precision ``auto`` (bf16 on GPU, fp32 on CPU);
    compile: wrap the model in ``torch.compile``; attention ``fused``
    (``scaled_dot_product_attention``) or ``reference`` (explicit softmax).
    save_every: also save the state every this many steps. keep_checkpoint:
    keep the final weights in the work directory. threads: CPU threads for
    torch during the run (restored afterwards; default: leave torch's setting).
    One thread per run is much faster on a busy or small machine.
    """

    steps: int = 1000
    plan_steps: int | None = None
    batch_size: int = 16
    seq_len: int = 128
    lr: float | None = None
    warmup: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    checkpoints: int = 10
    first_checkpoint: int | None = None
    eval_tokens: int = 32768
    eval_batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    attention: str = "fused"
    save_every: int | None = None
    keep_checkpoint: bool = False
    threads: int | None = None

    def replace(self, **changes) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def resolve(self, size: ModelSize) -> TrainConfig:
        """Fill the size- and step-dependent defaults, then check every setting."""
        plan = self.plan_steps if self.plan_steps is not None else self.steps
        cfg = dataclasses.replace(
            self,
            plan_steps=plan,
            lr=self.lr if self.lr is not None else size.lr,
            warmup=self.warmup if self.warmup is not None else default_warmup(plan),
            first_checkpoint=self.first_checkpoint if self.first_checkpoint is not None else max(1, self.steps // 32),
            eval_batch_size=self.eval_batch_size or max(self.batch_size, 16),
        )
        cfg._check(size)
        return cfg

    def _check(self, size: ModelSize) -> None:
        def positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("steps", "plan_steps", "batch_size", "seq_len", "checkpoints", "eval_tokens",
                     "eval_batch_size", "first_checkpoint", "warmup"):
            positive_int(name)
        if self.plan_steps < self.steps:
            raise ValueError(f"plan_steps ({self.plan_steps}) must be at least steps ({self.steps}): a run stops "
                             "at or before the end of its planned schedule")
        if self.first_checkpoint > self.steps:
            raise ValueError(f"first_checkpoint ({self.first_checkpoint}) exceeds steps ({self.steps})")
        if self.seq_len > size.context:
            raise ValueError(f"seq_len {self.seq_len} exceeds the context {size.context} of size {size.name!r}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("weight_decay must be >= 0 and grad_clip > 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        if self.save_every is not None:
            positive_int("save_every")
        if self.threads is not None:
            positive_int("threads")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def schedule(self):
        """The learning-rate schedule of a resolved config (:class:`bayesmix.data.schedule.Schedule`)."""
        return cosine_schedule(peak=self.lr, warmup=self.warmup, plan_steps=self.plan_steps,
                               min_ratio=self.min_lr_ratio)

    def identity(self) -> dict:
        """The settings that determine a run's numbers (execution settings excluded)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in EXECUTION_FIELDS}


def make_config(config: TrainConfig | Mapping | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a config, a mapping of settings, or keywords."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, Mapping):
        config = TrainConfig().replace(**dict(config))
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")
    return config.replace(**overrides) if overrides else config


def run_directory_name(run: str) -> str:
    """A file-system-safe folder name for a run id, inside the work folder.

    Characters other than letters, digits and ``. _ @ = + -`` become ``_``; a
    name made only of dots (``.``, ``..``) would name the work folder or its
    parent and is a ``ValueError``.
    """
    name = re.sub(r"[^A-Za-z0-9._@=+-]", "_", str(run))[:200] or "run"
    if not name.strip("."):
        raise ValueError(f"run name {run!r} would write outside the work folder; give a name with a letter or digit")
    return name


@dataclass
class PreparedRun:
    """Everything checked before training: spec, data, sizes."""

    run: str
    size: ModelSize
    mixture: dict[str, float]
    config: TrainConfig
    corpus: Corpus
    cache: TokenCache
    evals: list[str]

    @property
    def spec(self) -> dict:
        return {"version": SPEC_VERSION, "run": self.run, "size": self.size.name,
                "non_embedding_params": self.size.non_embedding_params, "mixture": self.mixture,
                "evals": self.evals, "config": self.config.identity(),
                "corpus": self.corpus.fingerprint(), "tokenizer": self.cache.tokenizer.name}


def prepare_run(mixture: Mapping, size: str | ModelSize, config: TrainConfig, *, corpus=None, name: str | None = None,
                run: str | None = None, evals: list[str] | None = None, cache_dir=None,
                cache: TokenCache | None = None) -> PreparedRun:
    """Validate a (mixture, size, config) and build or open the token cache; no training."""
    size = get_size(size)
    config = config.resolve(size)
    corpus = load_corpus(corpus) if cache is None else cache.corpus
    label = name or "mixture"
    mix = validate_mixture(mixture, corpus.names, name=label)
    run_id = run or f"{name or mixture_label(mix)}@{size.name}"
    run_directory_name(run_id)  # a name that escapes the work folder fails here, before any training
    evals = list(corpus.names if evals is None else evals)
    unknown = [e for e in evals if e not in corpus.names]
    if unknown or not evals:
        raise MixtureError(f"eval domain(s) {unknown or evals} not in the corpus {corpus.names}")
    resolve_device(config.device)
    cache = cache or build_token_cache(corpus, cache_dir=cache_dir)
    MixtureSampler({d: cache.tokens(d, "train") for d in corpus.names}, mix,
                   batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed)
    return PreparedRun(run=run_id, size=size, mixture=mix, config=config, corpus=corpus, cache=cache, evals=evals)


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _write_json(path: Path, payload: dict) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(payload, fh, indent=2)


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_write(path) as fh:
        torch.save(payload, fh)


class RunDirectory:
    """Files of one run: ``spec.json``, ``rows.parquet``, ``checkpoint.pt``, ``state.json``."""

    def __init__(self, root: Path, prepared: PreparedRun):
        self.path = Path(root) / run_directory_name(prepared.run)
        self.prepared = prepared
        self.spec_path = self.path / "spec.json"
        self.rows_path = self.path / "rows.parquet"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.state_path = self.path / "state.json"

    def open(self) -> None:
        """Create the folder, or check that an existing one holds the same run."""
        self.path.mkdir(parents=True, exist_ok=True)
        spec = json.loads(json.dumps(self.prepared.spec))
        if self.spec_path.exists():
            old = json.loads(self.spec_path.read_text())
            changes = _diff(old, spec)
            if changes:
                raise RunConflictError(
                    f"run {self.prepared.run!r} in {self.path.parent} was started with different settings "
                    f"({'; '.join(changes[:6])}); use another work directory or run name")
        else:
            _write_json(self.spec_path, spec)

    @contextmanager
    def lock(self):
        """Hold the run folder's ``.lock`` (an exclusive ``flock``, with the holder's pid inside) for
        the block; :class:`RunConflictError` when a live process holds it. The kernel drops the lock
        when its holder dies, so a lock left by a killed process is simply taken over."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunConflictError(f"run {self.prepared.run!r} in {self.path.parent} is being trained by process "
                                   f"{holder}; wait for it to finish or stop it") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def rows(self, up_to: int | None = None) -> pd.DataFrame:
        if not self.rows_path.exists():
            return empty_rows(self.prepared.corpus.names)
        rows = read_table(self.rows_path)
        return rows if up_to is None else rows[rows["step"] <= up_to].reset_index(drop=True)


@contextmanager
def torch_threads(threads: int | None):
    """Use ``threads`` CPU threads inside the block, then restore the previous setting."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _work_root(workdir):
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="bayesmix-run-") as tmp:
        yield Path(tmp)


def train_step(step_model, model, optimizer, batch: torch.Tensor, *, lr: float, grad_clip: float,
               device: torch.device, precision: str) -> torch.Tensor:
    """One update on a ``(batch, seq_len + 1)`` token tensor; returns the (device) loss.

    ``step_model`` is ``model`` or its compiled wrapper; gradients are clipped
    by global norm. No host synchronisation happens here.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        loss = step_model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _execute(prepared: PreparedRun, rundir: RunDirectory, *, out=None, progress: bool | None = None,
             on_checkpoint: Callable | None = None) -> pd.DataFrame:
    cfg, size, cache = prepared.config, prepared.size, prepared.cache
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model = build_model(size, vocab_size=cache.tokenizer.vocab_size, attention=cfg.attention, seed=cfg.seed)
    model.to(device)
    optimizer = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                               device=device)
    start, rows = 0, []
    if rundir.checkpoint_path.exists():
        state = torch.load(rundir.checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        rows = [r for r in [rundir.rows(up_to=start)] if len(r)]
    step_model = torch.compile(model) if cfg.compile else model
    sampler = MixtureSampler({d: cache.tokens(d, "train") for d in prepared.corpus.names}, prepared.mixture,
                             batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed)
    evaluator = Evaluator(cache, prepared.evals, seq_len=cfg.seq_len, eval_tokens=cfg.eval_tokens,
                          batch_size=cfg.eval_batch_size, device=device, precision=precision)
    checkpoints = set(checkpoint_steps(cfg.steps, cfg.checkpoints, cfg.first_checkpoint))
    tokens_per_step = cfg.batch_size * cfg.seq_len
    schedule = cfg.schedule()
    bar = _bar(prepared.run, cfg.steps, start, progress)
    t0, trained = time.perf_counter(), 0
    model.train()
    try:
        for step in range(start + 1, cfg.steps + 1):
            train_step(step_model, model, optimizer, to_device(sampler.batch(step), device), lr=float(schedule.lr(step)),
                       grad_clip=cfg.grad_clip, device=device, precision=precision)
            trained += 1
            if bar is not None:
                bar.update(1)
            if step in checkpoints:
                losses = evaluator(model)
                bad = {e: v for e, v in losses.items() if not np.isfinite(v)}
                if bad:
                    raise TrainingDiverged(f"run {prepared.run!r} diverged by step {step}: validation loss "
                                           f"{bad}; lower the learning rate (lr={cfg.lr:g})")
                rows.append(checkpoint_rows(run=prepared.run, size=size.non_embedding_params, step=step,
                                            tokens=step * tokens_per_step, losses=losses, mixture=prepared.mixture,
                                            schedule=schedule))
                table = pd.concat(rows, ignore_index=True)
                write_table(table, rundir.rows_path)
                _save_checkpoint(rundir.checkpoint_path, {"model": model.state_dict(),
                                                          "optimizer": optimizer.state_dict(), "step": step})
                if out is not None:
                    merge_into(out, table, [prepared.run])
                if bar is not None:
                    bar.set_postfix(loss=f"{np.mean(list(losses.values())):.3f}")
                if on_checkpoint is not None:
                    on_checkpoint(step, table)
            elif cfg.save_every and step % cfg.save_every == 0:
                _save_checkpoint(rundir.checkpoint_path, {"model": model.state_dict(),
                                                          "optimizer": optimizer.state_dict(), "step": step})
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    _write_json(rundir.state_path, {"finished": True, "steps": cfg.steps, "seconds_this_session": seconds,
                                    "steps_this_session": trained, "device": str(device), "precision": precision,
                                    "tokens_per_second": trained * tokens_per_step / seconds if seconds else None})
    if cfg.keep_checkpoint:
        _save_checkpoint(rundir.path / "model.pt", {"model": model.state_dict(), "size": size.name})
    if rundir.checkpoint_path.exists():
        rundir.checkpoint_path.unlink()
    return validate_runs(pd.concat(rows, ignore_index=True))


def _bar(run: str, total: int, initial: int, progress: bool | None):
    if not progress_enabled(progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=run, unit="step", leave=False, dynamic_ncols=True)


def train_run(mixture: Mapping[str, float], size: str | ModelSize, config: TrainConfig | Mapping | None = None, *,
              corpus=None, name: str | None = None, run: str | None = None, workdir=None, out=None,
              evals: list[str] | None = None, cache_dir=None, progress: bool | None = None,
              on_checkpoint: Callable[[int, pd.DataFrame], None] | None = None, _cache: TokenCache | None = None,
              **settings) -> pd.DataFrame:
    """Train one (mixture, size) run and return its run-table rows.

    mixture: domain -> proportion (missing domains get 0). size: a name in
    :data:`bayesmix.proxy.SIZES`. config / ``**settings``: :class:`TrainConfig`
    fields (``steps=``, ``plan_steps=``, ``seed=``...). corpus: ``None`` (the
    bundled corpus), a directory, a mapping name -> path or a
    :class:`~bayesmix.proxy.corpora.Corpus`. name: the mixture's name, used in
    the run id ``<name>@<size>`` unless ``run`` is given. workdir: where run
    state lives (resume and skip-if-finished); without it the run is
    ephemeral. out: a run-table file (.parquet/.csv/.jsonl) into which this
    run's rows are merged atomically at every checkpoint. on_checkpoint:
    called with ``(step, rows so far)`` after each checkpoint is saved.
    """
    cfg = make_config(config, **settings)
    prepared = prepare_run(mixture, size, cfg, corpus=corpus, name=name, run=run, evals=evals,
                           cache_dir=cache_dir, cache=_cache)
    if out is not None:
        check_out_table(out, prepared.corpus.names)
    with _work_root(workdir) as root:
        rundir = RunDirectory(root, prepared)
        with rundir.lock():
            rundir.open()
            if rundir.state().get("finished"):
                rows = validate_runs(rundir.rows())
                if out is not None:
                    merge_into(out, rows, [prepared.run])
                return rows
            with torch_threads(prepared.config.threads):
                return _execute(prepared, rundir, out=out, progress=progress, on_checkpoint=on_checkpoint)


def run_is_finished(workdir, run: str) -> bool:
    """Whether ``run`` finished in ``workdir``."""
    state = Path(workdir) / run_directory_name(run) / "state.json"
    return state.exists() and bool(json.loads(state.read_text()).get("finished"))


def remove_run(workdir, run: str) -> None:
    """Delete a run's state so that it trains afresh."""
    shutil.rmtree(Path(workdir) / run_directory_name(run), ignore_errors=True)
