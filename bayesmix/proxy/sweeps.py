"""Sweeps of (mixture, size) proxy runs, locally or on Ray.

    rows = sweep("mixtures.csv", ["100k", "200k", "450k"], steps=2000, plan_steps=6000,
                 out="runs.parquet", backend="local", workers=2)

Everything is checked before any training: every mixture against the corpus,
every size, the settings, and every run's work folder (a run of the same name
with different settings is an error). Finished runs are read back, not
retrained; unfinished ones resume from their checkpoints. Rows are merged into
``out`` atomically as each run finishes (each run also keeps its own rows,
written at every checkpoint, under ``workdir``). A failing run does not stop the
others; the sweep raises :class:`SweepError` naming the failures at the end.

Backends: ``local`` runs jobs one after another (``workers=1``) or in a pool of
``workers`` processes (started with ``spawn``: a script that calls ``sweep``
with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard); ``ray`` (``pip install bayesmix[ray]``) sends them to a
Ray cluster (``ray_address``) or to a local Ray instance with ``workers`` CPUs.
On a cluster, bayesmix must be installed on every node and the corpus, token
cache and work directory must be on storage that every node sees.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bayesmix.data.table import validate_runs
from bayesmix.inference.progress import progress_enabled
from bayesmix.proxy.corpora import Corpus, load_corpus
from bayesmix.proxy.mixtures import MixtureError, read_mixtures, validate_mixture
from bayesmix.proxy.model import get_size
from bayesmix.proxy.runtable import check_out_table, merge_into
from bayesmix.proxy.runtime import resolve_device
from bayesmix.proxy.tokenize import build_token_cache, default_cache_dir
from bayesmix.proxy.train import RunDirectory, TrainConfig, make_config, prepare_run, train_run

BACKENDS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the others' rows were kept."""

    def __init__(self, failures: dict[str, str], rows: pd.DataFrame | None, *, written: list[str] | None = None,
                 out_error: str | None = None):
        self.failures = failures
        self.rows = rows
        self.written = list(written or [])  # runs whose rows are in ``out``
        self.out_error = out_error
        lines = "; ".join(f"{run}: {msg}" for run, msg in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        parts = [f"{len(failures)} run(s) failed: {lines}{more}"] if failures else []
        super().__init__("; ".join(parts + ([out_error] if out_error else [])))


@dataclass(frozen=True)
class Job:
    run: str
    mixture_name: str
    mixture: dict
    size: str


@dataclass
class SweepResult:
    """What a sweep did: its rows and which runs were trained, skipped or failed."""

    rows: pd.DataFrame
    trained: list[str]
    skipped: list[str]
    failed: dict[str, str]


def default_workdir(out) -> Path:
    """``<out>.work/`` beside the output table."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def _run_id(name: str, size: str) -> str:
    return f"{name}@{size}"


def plan_jobs(mixtures, sizes: Iterable[str], corpus: Corpus, config: TrainConfig) -> list[Job]:
    """The (mixture, size) jobs, after checking every mixture, size and setting."""
    named = read_mixtures(mixtures)
    if not named:
        raise MixtureError("no mixtures to run")
    sizes = list(sizes)
    if not sizes:
        raise ValueError("give at least one model size")
    for s in sizes:
        config.resolve(get_size(s))
    errors, valid = [], {}
    for name, mix in named.items():
        try:
            valid[name] = validate_mixture(mix, corpus.names, name=f"mixture {name!r}")
        except MixtureError as exc:
            errors.append(str(exc))
    if errors:
        raise MixtureError(f"{len(errors)} bad mixture(s): " + " | ".join(errors[:10]))
    jobs = [Job(_run_id(name, get_size(s).name), name, mix, get_size(s).name) for s in sizes
            for name, mix in valid.items()]
    runs = [j.run for j in jobs]
    dup = sorted({r for r in runs if runs.count(r) > 1})
    if dup:
        raise ValueError(f"duplicate run ids {dup}: give each mixture and size once")
    return jobs


def _job_kwargs(job: Job, config: TrainConfig, corpus: Corpus, workdir, cache_dir, evals) -> dict:
    return {"mixture": job.mixture, "size": job.size, "config": config, "corpus": corpus, "name": job.mixture_name,
            "run": job.run, "workdir": str(workdir) if workdir is not None else None,
            "cache_dir": str(cache_dir), "evals": evals, "progress": False}


def _job_worker(kwargs: dict) -> pd.DataFrame:
    """Entry point of a job in a worker process (local pool or Ray)."""
    return train_run(**kwargs)


def die_with_parent(parent: int) -> None:
    """Make this process end when ``parent`` does: on Linux the kernel sends SIGKILL at the
    parent's death (``prctl(PR_SET_PDEATHSIG)``); if the parent is already gone, exit now."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: the getppid check and the run locks remain
            pass
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    import torch

    die_with_parent(parent)
    torch.set_num_threads(threads)


def _bar(total: int, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", disable=not progress_enabled(progress), dynamic_ncols=True)


def _run_local(jobs, make_kwargs, workers, device_type, on_result, inner_progress, cache):
    if workers == 1:
        for job in jobs:
            kwargs = make_kwargs(job)
            kwargs["progress"] = inner_progress
            try:
                rows, error = train_run(**kwargs, _cache=cache), None
            except Exception as exc:  # noqa: BLE001 - reported per run, the sweep goes on
                rows, error = None, exc
            on_result(job, rows, error)
        return
    threads = 1 if device_type == "cuda" else max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        pending = {pool.submit(_job_worker, make_kwargs(job)): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                exc = future.exception()
                on_result(job, None if exc else future.result(), exc)


def _run_ray(jobs, make_kwargs, workers, device_type, on_result, ray_address, gpus_per_job):
    try:
        import ray
    except ImportError:
        raise ImportError("the ray backend needs Ray: pip install 'bayesmix[ray]'") from None
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": False}
        if ray_address:
            ray.init(address=ray_address, **options)
        else:
            ray.init(num_cpus=workers, num_gpus=1 if device_type == "cuda" else 0, **options)
        started = True
    try:
        if gpus_per_job is None:
            gpus_per_job = (1.0 if ray_address else 1.0 / workers) if device_type == "cuda" else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_job, max_retries=0)(_job_worker)
        pending = {remote.remote(make_kwargs(job)): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    on_result(job, ray.get(ref), None)
                except Exception as exc:  # noqa: BLE001
                    cause = getattr(exc, "cause", None) or exc
                    on_result(job, None, cause)
    finally:
        if started:
            ray.shutdown()


def resumable_jobs(jobs: list[Job], cfg: TrainConfig, *, workdir, evals, cache):
    """Check every job before any training (and lock its run folder): the jobs still to train,
    the runs already finished in ``workdir`` and their rows."""
    skipped, todo, results = [], [], {}
    for job in jobs:
        prepared = prepare_run(job.mixture, job.size, cfg, name=job.mixture_name, run=job.run, evals=evals,
                               cache=cache)
        if workdir is not None:
            rundir = RunDirectory(Path(workdir), prepared)
            with rundir.lock():  # another live sweep training this run is an error here, before any training
                rundir.open()
            if rundir.state().get("finished"):
                results[job.run] = validate_runs(rundir.rows())
                skipped.append(job.run)
                continue
        todo.append(job)
    return todo, skipped, results


def sweep(mixtures, sizes: Iterable[str], config: TrainConfig | Mapping | None = None, *, corpus=None, out=None,
          workdir=None, backend: str = "local", workers: int = 1, ray_address: str | None = None,
          gpus_per_job: float | None = None, cache_dir=None, evals: list[str] | None = None,
          progress: bool | None = None, details: bool = False, **settings):
    """Run every (mixture, size) job and return the rows of all of them.

    mixtures: a file (CSV/Parquet/JSONL/JSON), a DataFrame or a mapping name ->
    mixture (see :func:`bayesmix.proxy.mixtures.read_mixtures`). sizes: names
    in :data:`bayesmix.proxy.SIZES`. config / ``**settings``: as for
    :func:`~bayesmix.proxy.train.train_run`. out: run-table file updated as runs
    finish. workdir: run state (default ``<out>.work/``; ephemeral when neither
    is given). With ``details=True`` returns a :class:`SweepResult`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    cfg = make_config(config, **settings)
    corpus = load_corpus(corpus)
    jobs = plan_jobs(mixtures, sizes, corpus, cfg)
    if out is not None:
        check_out_table(out, corpus.names)
    device_type = resolve_device(cfg.device).type
    if workdir is None and out is not None:
        workdir = default_workdir(out)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = build_token_cache(corpus, cache_dir=cache_dir)

    todo, skipped, results = resumable_jobs(jobs, cfg, workdir=workdir, evals=evals, cache=cache)

    failures: dict[str, str] = {}
    trained: list[str] = []
    bar = _bar(len(jobs), progress)
    bar.update(len(skipped))

    written: list[str] = []
    out_errors: list[str] = []

    def write_out():
        if out is not None and results:
            try:
                merge_into(out, pd.concat(list(results.values()), ignore_index=True), list(results))
            except OSError as exc:
                out_errors[:] = [f"could not write {out} ({exc.strerror or exc}); the finished runs' rows are in "
                                 f"{workdir}"]
                return
            written[:] = list(results)

    def on_result(job: Job, rows, exc):
        if exc is not None:
            failures[job.run] = f"{type(exc).__name__}: {exc}"
        else:
            results[job.run] = rows
            trained.append(job.run)
            write_out()
        bar.update(1)
        if failures:
            bar.set_postfix(failed=len(failures))

    write_out()

    def make_kwargs(job):
        return _job_kwargs(job, cfg, corpus, workdir, cache_dir, evals)

    try:
        if backend == "local":
            inner = False if bar.disable else progress
            _run_local(todo, make_kwargs, workers, device_type, on_result, inner, cache)
        else:
            _run_ray(todo, make_kwargs, workers, device_type, on_result, ray_address, gpus_per_job)
    finally:
        bar.close()
    ordered = [results[j.run] for j in jobs if j.run in results]
    rows = validate_runs(pd.concat(ordered, ignore_index=True)) if ordered else None
    if failures or out_errors:
        raise SweepError(failures, rows, written=written, out_error=out_errors[0] if out_errors else None)
    if details:
        return SweepResult(rows=rows, trained=trained, skipped=skipped, failed=failures)
    return rows
