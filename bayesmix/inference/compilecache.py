"""Compiled programs kept on disk, so that a second run skips XLA's compilation.

A pipeline fit compiles about a thousand small XLA programs (NUTS kernels per stage and
lane count, the point fits of the backtests, the predictions), most of them in a fraction
of a second; together they are about 40% of a demo's time on a 2-core CPU. JAX's
persistent compilation cache stores each compiled program under a key of its program text,
shapes, device and JAX version, so a later process that builds the same program loads it
instead of compiling it: the numbers are those of a fresh compilation.

The ``bayesmix`` command line turns the cache on (:func:`use_compile_cache`, before any
compilation); library calls never change process-wide JAX options, so in Python or Jupyter
call it yourself, first. ``BAYESMIX_COMPILE_CACHE`` names the folder, or turns it off with
``0``; a folder the user gave JAX (``JAX_COMPILATION_CACHE_DIR``) is kept.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV = "BAYESMIX_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")
MAX_BYTES = 2**30  # beyond this size, the oldest programs are dropped at the next start (:func:`prune`)


def default_cache_dir() -> Path:
    """``<user cache folder>/bayesmix/jax`` (platformdirs: ``~/.cache/bayesmix/jax`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("bayesmix")) / "jax"


def cache_dir_from_env(environ=os.environ) -> Path | None:
    """The folder the environment asks for: ``BAYESMIX_COMPILE_CACHE`` (``None`` when it is
    one of ``OFF``), else :func:`default_cache_dir`."""
    value = environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    return Path(value).expanduser() if value else default_cache_dir()


def prune(folder: Path, max_bytes: int = MAX_BYTES) -> int:
    """Drop the least recently written files of ``folder`` until it holds at most half of
    ``max_bytes``, when it holds more than ``max_bytes``; returns the number dropped.

    Done once per process, at start: JAX's own size limit rescans the whole folder at every
    program it stores (quadratic in the number of programs, thousands per fit)."""
    files = [(p.stat().st_mtime_ns, p.stat().st_size, p) for p in folder.iterdir() if p.is_file()]
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return 0
    dropped = 0
    for _, size, path in sorted(files):
        if total <= max_bytes // 2:
            break
        path.unlink(missing_ok=True)
        total -= size
        dropped += 1
    return dropped


def use_compile_cache(path: str | os.PathLike | None = None, *, environ=os.environ) -> Path | None:
    """Keep JAX's compiled programs in ``path`` (default: :func:`cache_dir_from_env`), every
    program however quickly it compiled, the folder first pruned to ``MAX_BYTES``
    (:func:`prune`); returns the folder in use, ``None`` when the cache is off.

    A folder already set in JAX (e.g. by ``JAX_COMPILATION_CACHE_DIR``) is kept and returned.
    Call it before the first fit: JAX decides once per process, at its first compilation,
    whether it uses the cache.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    folder = Path(path).expanduser() if path is not None else cache_dir_from_env(environ)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        prune(folder)
    except OSError as exc:
        warnings.warn(f"cannot keep compiled programs in {folder} ({exc}); every run compiles afresh "
                      f"(set {ENV} to a writable folder, or to 0)", UserWarning, stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


__all__ = ["ENV", "MAX_BYTES", "cache_dir_from_env", "default_cache_dir", "prune", "use_compile_cache"]
