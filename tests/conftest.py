"""Shared fixtures: the public anchor tables, skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _anchors_dir() -> Path:
    env = os.environ.get("BAYESMIX_ANCHORS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "anchors"


@pytest.fixture(scope="session")
def anchors_dir() -> Path:
    """Folder of public result tables (``../shared/anchors``); skip without it."""
    path = _anchors_dir()
    if not path.is_dir():
        pytest.skip(f"anchor tables not found at {path}")
    return path
