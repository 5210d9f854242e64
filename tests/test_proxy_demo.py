"""The bundled demo run table: schema, design, and the shapes the nested laws need."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.data.table import mixture_columns
from bayesmix.proxy.corpora import bundled_corpus
from bayesmix.proxy.demo import BASELINE_MIXTURE, DEMO_RUNS_PATH, baseline_runs, demo_runs


@pytest.fixture(scope="module")
def runs():
    if not DEMO_RUNS_PATH.is_file():
        pytest.fail(f"bundled demo table missing: {DEMO_RUNS_PATH}")
    return demo_runs()


def test_demo_table_covers_mixtures_sizes_checkpoints_and_domains(runs):
    domains = bundled_corpus().names
    assert [c.removeprefix("mix.") for c in mixture_columns(runs)] == domains
    assert sorted(runs["eval"].unique()) == sorted(domains)
    mixtures = runs.drop_duplicates(mixture_columns(runs))
    assert len(mixtures) >= 16
    assert runs["size"].nunique() == 3
    per_run = runs.groupby("run")["step"].nunique()
    assert per_run.min() >= 8
    annealed = runs["run"].str.contains("-anneal800@", regex=False)
    assert runs.loc[~annealed, "run"].nunique() == len(mixtures) * 3
    assert runs.loc[annealed, "run"].nunique() == 6 * 3  # uniform and the domain-led mixtures
    assert len(runs) == runs["run"].nunique() * per_run.iloc[0] * len(domains)
    assert (runs["tokens"] > 0).all()


def test_demo_table_records_each_run_schedule(runs):
    from bayesmix.data.schedule import has_schedule, run_schedules

    assert has_schedule(runs)
    plans = {run: s.plan_steps for run, s in run_schedules(runs).items()}
    assert {p for r, p in plans.items() if "-anneal800@" in r} == {800}
    assert {p for r, p in plans.items() if "-anneal800@" not in r} == {2400}
    assert runs.groupby("run")["step"].max().eq(800).all()


def test_held_out_target_runs_reach_the_target_and_are_not_fitted(runs):
    from bayesmix.proxy.demo import DEMO_TARGET_FACES, demo_target_runs
    from bayesmix.proxy.model import non_embedding_params

    target = demo_target_runs()
    assert target["run"].nunique() >= 8 and set(target["size"]) == {non_embedding_params("1.2M")}
    assert target.groupby("run")["step"].max().eq(2400).all()
    assert not set(target["run"]) & set(runs["run"])
    assert {f"{name}@1.2M" for name in DEMO_TARGET_FACES} <= set(target["run"])


def test_baseline_is_the_uniform_mixture_at_every_size(runs):
    base = baseline_runs(runs)
    assert base["size"].nunique() == 3 and base["run"].str.startswith(BASELINE_MIXTURE + "@").all()
    assert np.allclose(base[mixture_columns(runs)].to_numpy(), 1 / len(mixture_columns(runs)))


def test_losses_fall_with_steps_and_with_size(runs):
    mean = runs.groupby(["size", "step"])["loss"].mean().unstack("step")
    assert (mean.iloc[:, 0] > mean.iloc[:, -1]).all()
    final = runs[runs["step"] == runs["step"].max()].groupby("size")["loss"].mean()
    assert final.is_monotonic_decreasing


def test_a_domain_gets_lower_loss_when_it_leads_the_mixture(runs):
    last = runs[runs["step"] == runs["step"].max()]
    for domain in bundled_corpus().names:
        led = last[last["run"].str.startswith(f"{domain}-led@") & (last["eval"] == domain)]["loss"].mean()
        uniform = last[last["run"].str.startswith("uniform@") & (last["eval"] == domain)]["loss"].mean()
        assert led < uniform, domain


def test_demo_settings_regenerate_the_first_checkpoints(tmp_path):
    """A demo run retrained with DEMO_SETTINGS matches the table (stopped after two checkpoints)."""
    from bayesmix.proxy.demo import DEMO_SETTINGS
    from bayesmix.proxy.train import train_run

    table = demo_runs()
    row = table[table["run"] == "uniform@100k"]
    mixture = {c.removeprefix("mix."): row[c].iloc[0] for c in mixture_columns(table)}

    class Stop(Exception):
        pass

    got = {}

    def stop(step, rows):
        got["rows"] = rows
        if rows["step"].nunique() == 2:
            raise Stop

    with pytest.raises(Stop):
        train_run(mixture, "100k", name="uniform", cache_dir=tmp_path, threads=1, progress=False, on_checkpoint=stop,
                  **DEMO_SETTINGS)
    new = got["rows"].set_index(["step", "eval"])["loss"].sort_index()
    old = row.set_index(["step", "eval"])["loss"].loc[new.index]
    assert np.allclose(new.to_numpy(), old.to_numpy(), atol=0.02)
