"""Atomic file writes: a temporary file in the same folder, then a rename.

Readers see the old file or the new one, never a partial write; a process
killed mid-write leaves at most a hidden ``.<name>.*.tmp`` behind. Files get
the usual permissions (the umask applies).
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file for writing; on success it replaces ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode.replace("w", "x")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
