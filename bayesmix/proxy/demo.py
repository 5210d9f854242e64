"""The bundled demo run table: real proxy runs on the bundled corpus.

See ``bayesmix/data/README.md`` for what it holds and the command that made it.
The mixture named ``uniform`` (runs ``uniform@<size>``) is the natural baseline.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DEMO_RUNS_PATH = Path(__file__).resolve().parents[1] / "data" / "bundled" / "demo_runs.parquet"
BASELINE_MIXTURE = "uniform"
#: Training settings of every demo run: new runs made with them (for example by a
#: closed-loop campaign, ``train_run(mixture, "200k", **DEMO_SETTINGS)``) are
#: comparable with the bundled table.
DEMO_SETTINGS = dict(steps=800, plan_steps=2400, batch_size=8, seq_len=128, checkpoints=10, first_checkpoint=50,
                     eval_tokens=8192, seed=0)
DEMO_SIZES = ("100k", "200k", "450k")
#: Dirichlet(1) draws in the demo design, after the uniform and the domain-led mixtures.
DEMO_DIRICHLET = 10
#: Short runs taken through their whole schedule (planned 800, stopped at 800): the
#: anneal that the schedule-aware step law learns from (the uniform and domain-led mixtures).
DEMO_ANNEAL_SETTINGS = dict(DEMO_SETTINGS, plan_steps=800)
DEMO_ANNEAL_SUFFIX = "-anneal800"
#: Held-out runs at the demo's target scale (never fitted): 1.2M parameters, step 2400 of 2400.
DEMO_TARGET_SETTINGS = dict(DEMO_SETTINGS, steps=2400)
DEMO_TARGET_SIZE = "1.2M"
DEMO_TARGET_PATH = Path(__file__).resolve().parents[1] / "data" / "bundled" / "demo_target_runs.parquet"
#: The held-out target-scale mixtures: the uniform baseline, the domain-led ones (as in the
#: fitted design) and mixtures on faces of the simplex that no fitted run visits.
DEMO_TARGET_FACES = {
    "face-no-prose": {"code": 0.05, "english": 0.0, "spanish": 0.0, "dictionary": 0.52, "tables": 0.43},
    "face-no-code": {"code": 0.0, "english": 0.3, "spanish": 0.3, "dictionary": 0.2, "tables": 0.2},
    "face-prose": {"code": 0.1, "english": 0.45, "spanish": 0.45, "dictionary": 0.0, "tables": 0.0},
}


def demo_runs() -> pd.DataFrame:
    """The demo run table, validated (``run, size, step, tokens, eval, loss, mix.*``)."""
    from bayesmix.data.table import read_runs

    if not DEMO_RUNS_PATH.is_file():
        raise FileNotFoundError(f"the bundled demo run table is missing ({DEMO_RUNS_PATH}); reinstall bayesmix")
    return read_runs(DEMO_RUNS_PATH)


def demo_target_runs() -> pd.DataFrame:
    """The held-out target-scale runs (1.2M parameters, step 2400 of a 2400-step plan), validated."""
    from bayesmix.data.table import read_runs

    if not DEMO_TARGET_PATH.is_file():
        raise FileNotFoundError(f"the bundled target-scale runs are missing ({DEMO_TARGET_PATH}); reinstall bayesmix")
    return read_runs(DEMO_TARGET_PATH)


def with_training_schedule(rows: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """``rows`` with the schedule columns the trainer writes for runs made with ``settings``
    (each run's peak rate from its model size): the same numbers as retraining them."""
    from bayesmix.proxy.model import SIZES
    from bayesmix.proxy.train import TrainConfig
    from bayesmix.data.schedule import with_schedule

    by_params = {s.non_embedding_params: s for s in SIZES.values()}
    config = TrainConfig().replace(**settings)
    parts = [with_schedule(run_rows, config.resolve(by_params[int(run_rows["size"].iloc[0])]).schedule())
             for _, run_rows in rows.groupby("run", sort=False)]
    return pd.concat(parts, ignore_index=True)


def baseline_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of the baseline (uniform) mixture's runs."""
    return runs[runs["run"].astype(str).str.startswith(BASELINE_MIXTURE + "@")]
