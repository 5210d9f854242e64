"""The notebooks: outputs stripped in git, and each one runs top to bottom with small settings.

Execution uses nbclient with ``BAYESMIX_NOTEBOOK_FAST=1`` (each notebook's
parameter cell then picks tiny sampler settings), in a scratch directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 1500


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 1, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_stripped(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name} cell {k} has outputs: strip them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {k} has an execution count"
    assert any("BAYESMIX_NOTEBOOK_FAST" in c.source for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} has no parameter cell reading BAYESMIX_NOTEBOOK_FAST")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("BAYESMIX_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))  # no progress bars in the kernel
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
