"""Output files: checked before any computation, written atomically.

Every command checks its destinations with :func:`check_output` (or
:func:`check_output_folder`) before it reads a table or samples: the
destination must be writable, must not be one of the command's inputs, and
its suffix must match what is written (a fit is netCDF, ``.nc``; a report is
``.html``; a table is ``.csv``, ``.parquet`` or ``.jsonl``). The error is one
line naming the option and the path.

Writes go through :func:`atomic_path` / :func:`atomic_write`: a temporary
file in the same folder, then a rename, so readers see the old file or the
new one, never a partial write. On failure the temporary file is removed; a
process killed mid-write leaves at most a hidden ``.<name>.*.tmp`` behind.
Files get the usual permissions (the umask applies); an existing file's
permissions are kept.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["FIT_SUFFIXES", "HTML_SUFFIXES", "JSON_SUFFIXES", "OutputError", "TABLE_SUFFIXES", "atomic_folder",
           "atomic_path", "atomic_write", "check_output", "jsonable", "check_output_folder", "same_file"]

FIT_SUFFIXES = (".nc",)
HTML_SUFFIXES = (".html", ".htm")
JSON_SUFFIXES = (".json",)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".json")


class OutputError(ValueError):
    """A destination cannot take the output (unwritable, an input, or the wrong suffix)."""


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (where missing folders would be created)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def _check_writable_folder(folder: Path, option: str, path: Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (tried, then removed)."""
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bayesmix-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def _check_not_input(path: Path, inputs: Iterable, option: str) -> None:
    for source in inputs:
        if source is not None and Path(source).exists() and same_file(path, source):
            raise OutputError(f"{option} {path} is also an input of this command ({source}); "
                              "writing there would destroy it: choose another file")


def check_output(path, *, suffixes: Iterable[str], inputs: Iterable = (), option: str = "--out",
                 what: str = "output") -> Path:
    """Check a destination file before any work; return it as a Path.

    ``suffixes``: the allowed suffixes of what is written (e.g. ``(".nc",)``).
    ``inputs``: the command's input files, none of which may be overwritten.
    Raises :class:`OutputError` (one line naming ``option`` and the path) when
    the suffix does not match, the path is a folder, an input, a read-only
    file, or lies where no file can be created. Missing folders above it are
    allowed (they are created when writing).
    """
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{option} {path}: the {what} is written as {' or '.join(suffixes)}, "
                          f"so the file name must end in {' or '.join(suffixes)} (got {path.suffix or 'no suffix'!r})")
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name ending in {' or '.join(suffixes)}")
    _check_not_input(path, inputs, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path} is read-only")
    _check_writable_folder(_existing_ancestor(path), option, path)
    return path


def check_output_folder(path, *, files: Iterable[str] = (), inputs: Iterable = (), option: str = "--out") -> Path:
    """Check a destination folder (created when missing) before any work; return it as a Path.

    ``files``: the names written inside it, none of which may be one of
    ``inputs``. Raises :class:`OutputError` when ``path`` is a file, when an
    output would replace an input, or when the folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder")
    for name in files:
        _check_not_input(path / name, inputs, option)
    _check_writable_folder(path if path.is_dir() else _existing_ancestor(path), option, path)
    return path


def temp_path(path: Path) -> Path:
    """A hidden temporary file name beside ``path``: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    Missing folders are created. On any failure the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside ``path`` to fill; on success it replaces the folder ``path``.

    The old folder is moved aside, the new one renamed into place, then the old one removed,
    so a failure at any point leaves either the old folder or the new one whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    old = temp_path(path)
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for left in (tmp, old):
            if left.exists():
                shutil.rmtree(left)


@contextmanager
def atomic_write(path, mode: str = "wb", **open_args):
    """Open a temporary file for writing (``mode`` "wb" or "w"); on success it replaces ``path``."""
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **open_args) as fh:
        yield fh


def jsonable(value):
    """``value`` with numpy scalars and arrays, tuples, mappings and dataclasses turned into
    plain JSON types (mapping keys as strings)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value
