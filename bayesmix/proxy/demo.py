"""The bundled demo run table: real proxy runs on the bundled corpus.

See ``bayesmix/data/README.md`` for what it holds and the command that made it.
The mixture named ``uniform`` (runs ``uniform@<size>``) is the natural baseline.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DEMO_RUNS_PATH = Path(__file__).resolve().parents[1] / "data" / "demo_runs.parquet"
BASELINE_MIXTURE = "uniform"


def demo_runs() -> pd.DataFrame:
    """The demo run table, validated (``run, size, step, tokens, eval, loss, mix.*``)."""
    from bayesmix.data import read_runs

    if not DEMO_RUNS_PATH.is_file():
        raise FileNotFoundError(f"the bundled demo run table is missing ({DEMO_RUNS_PATH}); reinstall bayesmix")
    return read_runs(DEMO_RUNS_PATH)


def baseline_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of the baseline (uniform) mixture's runs."""
    return runs[runs["run"].astype(str).str.startswith(BASELINE_MIXTURE + "@")]
