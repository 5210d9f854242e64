"""Learning-rate schedules: the rate, its areas (identities), and the run-table columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmix.data.table import RunTableError, validate_runs
from bayesmix.proxy.schedule import lr_at
from bayesmix.data.schedule import SCHEDULE_COLUMNS, Schedule, has_schedule, run_schedules, with_schedule

COSINE = Schedule("cosine", peak_lr=1.0, warmup=10, final_ratio=0.1, plan_steps=110)


def test_cosine_rate_matches_the_trainer_and_its_landmarks():
    steps = np.arange(1, 200)
    np.testing.assert_allclose(COSINE.lr(steps), [lr_at(int(s), peak=1.0, warmup=10, plan_steps=110) for s in steps])
    assert COSINE.lr(5) == pytest.approx(0.5)          # half-way through the warm-up
    assert COSINE.lr(60) == pytest.approx(0.55)        # half-way through the decay: (1 + 0.1) / 2
    assert COSINE.lr(110) == pytest.approx(0.1) and COSINE.lr(500) == pytest.approx(0.1)


def test_rate_share_is_the_rate_over_its_peak_whatever_the_peak():
    steps = np.array([1, 10, 60, 110, 500])
    scaled = Schedule("cosine", peak_lr=3e-3, warmup=10, final_ratio=0.1, plan_steps=110)
    np.testing.assert_allclose(scaled.rate_share(steps), COSINE.lr(steps))
    assert scaled.rate_share(10) == pytest.approx(1.0) and scaled.rate_share(500) == pytest.approx(0.1)


@pytest.mark.parametrize("shape, step, expected", [
    ("linear", 60, 0.55), ("linear", 110, 0.1), ("constant", 100, 1.0), ("constant", 5, 0.5),
    ("wsd", 80, 1.0), ("wsd", 100, 0.55), ("wsd", 110, 0.1),
])
def test_other_shapes(shape, step, expected):
    schedule = Schedule(shape, peak_lr=1.0, warmup=10, final_ratio=0.1, plan_steps=110,
                        decay_steps=20 if shape == "wsd" else None)
    assert schedule.lr(step) == pytest.approx(expected)


def test_constant_rate_has_forward_area_of_the_steps_and_no_anneal():
    s1, s2 = Schedule("constant", 2.0, 0, 0.1, 100).areas(np.array([1, 50, 100]))
    np.testing.assert_allclose(s1, [1, 50, 100])
    np.testing.assert_allclose(s2, 0)


def test_a_single_drop_gives_the_geometric_annealing_area():
    """WSD with a one-step decay: the rate drops by 0.9 at step k = 91, so
    m_i = 0.9 lam^(i-k) and S2(s) = 0.9 (1 - lam^(s-k+1)) / (1 - lam)."""
    schedule = Schedule("wsd", 1.0, 0, 0.1, 91, decay_steps=1)
    lam, k = 0.99, 91
    steps = np.array([50, 91, 100, 300])
    s1, s2 = schedule.areas(steps, momentum=lam)
    expected = np.where(steps >= k, 0.9 * (1 - lam ** (steps - k + 1)) / (1 - lam), 0.0)
    np.testing.assert_allclose(s2, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s1, np.minimum(steps, 90) + 0.1 * np.maximum(steps - 90, 0))


def test_warm_up_is_not_an_anneal_and_areas_grow():
    s1, s2 = COSINE.areas(np.arange(1, 300))
    assert np.all(s2[:10] == 0) and np.all(np.diff(s1) > 0) and np.all(np.diff(s2) >= 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="step"), "shape must be one of"),
    (dict(peak_lr=0.0), "peak_lr must be positive"),
    (dict(warmup=200), "warmup must be an integer in"),
    (dict(final_ratio=1.5), "final_ratio must lie in"),
    (dict(plan_steps=0), "plan_steps must be a positive integer"),
    (dict(shape="wsd", decay_steps=500), "decay_steps of a wsd schedule"),
])
def test_bad_specs_are_named(kwargs, message):
    spec = dict(shape="cosine", peak_lr=1e-3, warmup=10, final_ratio=0.1, plan_steps=100) | kwargs
    with pytest.raises(ValueError, match=message):
        Schedule(**spec)


def _table(**spec):
    rows = pd.DataFrame({"run": "a", "size": 10, "step": [10, 50, 100], "eval": "x", "loss": [3.0, 2.5, 2.2],
                         "mix.p": 1.0})
    return with_schedule(rows, Schedule(**({"shape": "cosine", "peak_lr": 1e-3, "warmup": 5, "final_ratio": 0.1,
                                            "plan_steps": 300} | spec)))


def test_run_table_round_trip_of_the_schedule():
    table = validate_runs(_table())
    assert has_schedule(table)
    assert run_schedules(table)["a"] == Schedule("cosine", 1e-3, 5, 0.1, 300)
    assert set(SCHEDULE_COLUMNS) <= set(table.columns)


def test_runs_without_a_schedule_beside_runs_with_one():
    other = _table().drop(columns=[*SCHEDULE_COLUMNS, "lr"]).assign(run="b")
    table = validate_runs(pd.concat([_table(), other], ignore_index=True))
    assert not has_schedule(table) and list(run_schedules(table)) == ["a"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(lr=t["lr"] * 2), r"column 'lr' disagrees with the schedule spec in run\(s\) a"),
    (lambda t: t.assign(lr=-1.0), r"column 'lr' must hold positive finite learning rates; bad values in run\(s\) a"),
    (lambda t: t.drop(columns="schedule.warmup"), r"a schedule spec needs the columns"),
    (lambda t: t.assign(**{"schedule.plan_steps": [300, 300, 400]}), r"the schedule changes between rows of run\(s\) a"),
    (lambda t: t.assign(**{"schedule.shape": "triangle"}), r"run 'a': schedule shape must be one of"),
    (lambda t: t.assign(**{"schedule.shape": None}), r"give part of a schedule spec but no schedule.shape"),
])
def test_bad_schedule_columns_fail_at_the_door(edit, message):
    with pytest.raises(RunTableError, match=message):
        validate_runs(edit(_table()))
