"""Schedule-aware step law: recovery of a simulated anneal, with the power law as negative control."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from bayesmix.pipeline import curves
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.data.table import RunTableError
from bayesmix.laws import get_law, resolve_priors
from bayesmix.laws.annealing import annealed_curves
from bayesmix.data.schedule import Schedule
from bayesmix.data.simulate import annealing_losses, simulate_annealing_runs

TRUTH = dict(floor=1.5, amplitude=0.8, exponent=0.5, anneal=0.4)
LONG = Schedule("cosine", 1e-3, 20, 0.1, 1800)
SHORT = Schedule("cosine", 1e-3, 20, 0.1, 600)
TARGET = 1800


@pytest.fixture(scope="module")
def table():
    """Three runs annealed at 600 (planned 600) and eight stopped at 600 of a plan of 1800."""
    runs = {**{f"short{i}": (SHORT, 600) for i in range(3)}, **{f"long{i}": (LONG, 600) for i in range(8)}}
    return simulate_annealing_runs(runs, **TRUTH, seed=0)


def truth_at_target() -> float:
    return float(annealing_losses(LONG, np.array([TARGET]), **TRUTH)[0])


def _long(query) -> np.ndarray:
    return query.labels["run"].str.startswith("long").to_numpy()


@pytest.mark.slow
def test_point_fit_recovers_the_anneal_and_the_power_law_misses(table):
    with jax.enable_x64(True):
        law = get_law("anneal")
        data = law.prepare(table, min_step=30)
        assert annealed_curves(data).tolist() == [d.startswith("short") for d in data.coords["curve"]]
        point = law.point_fit(data, seed=0)
        true_param = TRUTH["anneal"] * data.meta["s1_ref"] / 1000  # areas are scaled by the largest S1
        np.testing.assert_allclose(point["anneal"], true_param, rtol=0.1)
        query = law.query(data, steps=[TARGET])
        pred = law.mean_draws({k: v[None] for k, v in point.items()}, query, data.meta)[0][_long(query)]
        power = get_law("step")
        pdata = power.prepare(table, min_step=30)
        pquery = power.query(pdata, steps=[TARGET])
        ppred = power.mean_draws({k: v[None] for k, v in power.point_fit(pdata, seed=0).items()}, pquery,
                                 pdata.meta)[0][_long(pquery)]
    assert np.all(np.abs(pred - truth_at_target()) < 0.03)
    assert np.all(ppred - truth_at_target() > 0.08)  # the power law cannot see the anneal


def test_a_named_target_schedule_sets_the_areas(table):
    """Under a constant rate the annealing area is 0 and the forward area is the steps after
    warm-up plus half the warm-up: the prediction is the power-law part alone."""
    constant = Schedule("constant", 1e-3, 20, 0.1, TARGET)
    with jax.enable_x64(True):
        law = get_law("anneal")
        data = law.prepare(table, min_step=30)
        point = law.point_fit(data, seed=0)
        query = law.query(data, steps=[TARGET], schedule=constant)
        pred = law.mean_draws({k: v[None] for k, v in point.items()}, query, data.meta)[0]
    np.testing.assert_allclose(query.arrays["x_anneal"], 0.0, atol=1e-12)
    x1 = (TARGET - 20 + 21 / 2) / data.meta["s1_ref"]  # sum of 1..20 / 20 = 10.5
    expected = point["floor"] + (point["level"] - point["floor"]) * x1 ** -point["exponent"]
    np.testing.assert_allclose(pred, expected, rtol=1e-10)


def test_anneal_law_needs_schedules(table):
    with pytest.raises(RunTableError, match="law 'anneal' needs every run's learning-rate schedule"):
        get_law("anneal").prepare(table.drop(columns="schedule.shape"))


def _assert_anneal_covers_and_power_law_misses(intervals: dict) -> None:
    """The truth at the planned end inside the schedule-aware law's 90% interval (5%, 95%) for at
    least 6 of the 8 long runs (P(fewer than 6) = 0.04 when each covers with probability 0.9),
    and below the power law's for all."""
    truth = truth_at_target()
    lo, hi = intervals["anneal"]
    assert np.sum((lo <= truth) & (truth <= hi)) >= 6, (lo, hi, truth)
    lo, hi = intervals["step"]
    assert np.all(lo > truth), (lo, hi, truth)


@pytest.mark.slow
def test_curve_lanes_cover_the_annealed_target_and_the_power_law_does_not(table):
    """NUTS per curve (the pipeline's step stage): the truth at the planned end lies inside
    the schedule-aware law's 90% interval for at least 6 of the 8 long runs (each covers it
    with probability 0.9; P(fewer than 6) = 0.04), and outside the power law's for all."""
    config = SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=300, dense_mass=True)
    intervals = {}
    for name in ("anneal", "step"):
        law = get_law(name)
        with jax.enable_x64(True):
            data = law.prepare(table, min_step=30)
            point = law.point_fit(data, seed=0)
            lanes, _ = curves.fit_curves(data, resolve_priors(name), point, config=config, seed=0)
            query = law.query(data, steps=[TARGET])
            pred = law.mean_draws(curves.curve_draws(lanes), query, data.meta)[:, _long(query)]
        intervals[name] = np.quantile(pred, [0.05, 0.95], axis=0)
    _assert_anneal_covers_and_power_law_misses(intervals)


def test_grid_curves_cover_the_annealed_target_and_the_power_law_does_not(table):
    """The exact grid posterior (the pipeline's default step sampler), the same check as the NUTS
    lanes above: the truth at the planned end inside the schedule-aware law's 90% interval for
    at least 6 of the 8 long runs, outside the power law's for all, and every curve passing the
    grid's checks."""
    intervals = {}
    for name in ("anneal", "step"):
        law = get_law(name)
        with jax.enable_x64(True):
            data = law.prepare(table, min_step=30)
            params, _, checks = curves.grid_curves(data, resolve_priors(name), seed=0)
            query = law.query(data, steps=[TARGET])
            pred = law.mean_draws(params, query, data.meta)[:, _long(query)]
        assert checks["ok"].all(), curves.grid_summary(checks)
        intervals[name] = np.quantile(pred, [0.05, 0.95], axis=0)
    _assert_anneal_covers_and_power_law_misses(intervals)
