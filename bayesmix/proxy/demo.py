"""The bundled demo run table: real proxy runs on the bundled corpus.

See ``bayesmix/data/README.md`` for what it holds and the command that made it.
The mixture named ``uniform`` (runs ``uniform@<size>``) is the natural baseline.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DEMO_RUNS_PATH = Path(__file__).resolve().parents[1] / "data" / "demo_runs.parquet"
BASELINE_MIXTURE = "uniform"
#: Training settings of every demo run: new runs made with them (for example by a
#: closed-loop campaign, ``train_run(mixture, "200k", **DEMO_SETTINGS)``) are
#: comparable with the bundled table.
DEMO_SETTINGS = dict(steps=800, plan_steps=2400, batch_size=8, seq_len=128, checkpoints=10, first_checkpoint=50,
                     eval_tokens=8192, seed=0)
DEMO_SIZES = ("100k", "200k", "450k")
#: Dirichlet(1) draws in the demo design, after the uniform and the domain-led mixtures.
DEMO_DIRICHLET = 10


def demo_runs() -> pd.DataFrame:
    """The demo run table, validated (``run, size, step, tokens, eval, loss, mix.*``)."""
    from bayesmix.data import read_runs

    if not DEMO_RUNS_PATH.is_file():
        raise FileNotFoundError(f"the bundled demo run table is missing ({DEMO_RUNS_PATH}); reinstall bayesmix")
    return read_runs(DEMO_RUNS_PATH)


def baseline_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of the baseline (uniform) mixture's runs."""
    return runs[runs["run"].astype(str).str.startswith(BASELINE_MIXTURE + "@")]
