"""The backtest-calibrated discrepancy: exact values on hand-built misses, no sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesmix.pipeline.discrepancy import (Backtest, Discrepancy, point_grid, scale_posterior, tail_probability,
                                  unit_field)
from bayesmix.pipeline.discrepancy import laplace_features


def misses(distance, miss) -> pd.DataFrame:
    distance, miss = np.asarray(distance, float), np.asarray(miss, float)
    return pd.DataFrame({"unit": [f"u{i}" for i in range(distance.size)], "distance": distance,
                         "predicted": 2.0 - miss, "observed": np.full(distance.size, 2.0), "miss": miss})


def hand_built(bias: float, k: float, n: int = 200, seed: int = 0, noise: float = 0.005) -> Backtest:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, n)
    m = bias * x + np.sqrt(noise**2 + (k * x) ** 2) * rng.standard_normal(n)
    return Backtest("step", misses(x, m), noise, prior_scale=0.1)


def test_without_backtests_the_posterior_is_the_prior():
    bias, k, w = scale_posterior(np.array([]), np.array([]), 0.0, 0.2)
    k_marginal, b_marginal = w.sum(axis=0), w.sum(axis=1)
    assert np.interp(0.5, np.cumsum(k_marginal), k) == pytest.approx(stats.halfnorm.median(scale=0.2), rel=0.02)
    assert np.interp(0.5, np.cumsum(b_marginal), bias) == pytest.approx(0.0, abs=0.01)
    assert w.sum() == pytest.approx(1.0)


def test_bias_and_scale_are_recovered_and_a_zero_truth_is_not_shifted():
    fitted = hand_built(bias=-0.1, k=0.05)
    lo, _, hi = fitted.quantiles("bias")
    assert lo < -0.1 < hi and hi < -0.05
    lo, _, hi = fitted.quantiles("k")
    assert lo < 0.05 < hi
    control = hand_built(bias=0.0, k=0.05, seed=1)  # negative control: no bias, none found
    lo, _, hi = control.quantiles("bias", q=(0.005, 0.5, 0.995))
    assert lo < 0.0 < hi and hi - lo < 0.05


def test_the_discrepancy_grows_with_distance_to_the_tried_mixtures():
    tried = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    bt = {"mix": hand_built(0.0, 0.3, seed=2), "step": hand_built(0.0, 0.02, seed=3)}
    disc = Discrepancy.build(bt, {"step": 1.0, "size": 0.0}, tried, seed=0)
    r = np.array([[0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]])  # farther and farther
    mean, sd = disc.moments(r)
    assert np.all(np.diff(sd) > 0)
    assert sd[0] == pytest.approx(np.sqrt(bt["step"].moments()[1] - bt["step"].moments()[0] ** 2), rel=1e-9)
    draws = disc.draws(r, 20000)
    assert draws.std(axis=0) == pytest.approx(sd, rel=0.05)
    assert draws.mean(axis=0) == pytest.approx(mean, abs=0.01)
    assert np.array_equal(draws, disc.draws(r, 20000))  # seeded: the same numbers


def test_a_step_bias_shifts_every_mixture_alike():
    tried = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    disc = Discrepancy.build({"step": hand_built(-0.1, 0.0, noise=0.001)}, {"step": 2.0, "size": 0.0}, tried,
                             seed=0)
    mean, sd = disc.moments(np.array([[0.5, 0.5], [0.2, 0.8]]))
    assert mean == pytest.approx([-0.2, -0.2], abs=0.01)
    d = disc.draws(np.array([[0.5, 0.5], [0.2, 0.8]]), 4000)
    assert np.abs(d[:, 0] - d[:, 1]).max() < 0.02  # no mixing discrepancy: the difference is ~exact


def test_the_field_has_unit_variance_and_decorrelates_with_distance():
    rng = np.random.default_rng(0)
    omega, phase = laplace_features(3, 0.2, 256, rng)
    coef = rng.standard_normal((40000, 256))
    r = np.array([[0.2, 0.3, 0.5], [0.22, 0.3, 0.48], [0.9, 0.05, 0.05]])
    g = np.asarray(unit_field(r, omega, phase, coef))
    assert g.var(axis=0) == pytest.approx(np.ones(3), rel=0.03)
    near, far = np.corrcoef(g.T)[0, 1], np.corrcoef(g.T)[0, 2]
    assert near > 0.8 and abs(far) < 0.2


def test_tail_probability_of_a_point_grid_is_the_normal_tail():
    m, x = np.array([0.0, 0.01, -0.03]), np.array([0.5, 1.0, 1.0])
    assert tail_probability(m, x, 0.01, *point_grid()) == pytest.approx(2 * stats.norm.sf(np.abs(m) / 0.01))
    p = tail_probability(m, x, 0.0, *point_grid(0.02, 0.01))  # bias 0.02/unit, sd 0.01/unit
    assert p == pytest.approx(2 * stats.norm.sf(np.abs(m - 0.02 * x) / (0.01 * x)))


def test_coverage_with_the_discrepancy_is_near_nominal_where_the_noise_alone_is_not():
    bt = hand_built(-0.05, 0.05, n=400, seed=4)
    assert bt.coverage(0.9) == pytest.approx(0.9, abs=0.04)
    assert bt.coverage(0.9, discrepancy=False) < 0.3


def test_table_names_every_stage_and_the_target_spread():
    tried = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    empty = Backtest("size", misses([], []), 0.0, prior_scale=0.1)
    alone = Discrepancy.build({"size": empty}, {"step": 0.0, "size": 1.0}, tried, seed=0).table().set_index("stage")
    assert alone.loc["size", "source"] == "prior" and alone.loc["size", "backtests"] == 0
    assert np.isnan(alone.loc["size", "coverage_with"])
    # the prior: bias ~ N(0, 0.1), k ~ HalfNormal(0.1) -> sd at distance 1 = 0.1 sqrt(2)
    assert alone.loc["size", "target_sd"] == pytest.approx(0.1 * np.sqrt(2), rel=0.02)


def test_a_log_ratio_stage_without_backtests_borrows_the_other_ones_spread():
    tried = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    step = hand_built(-0.1, 0.05)
    empty = Backtest("size", misses([], []), 0.0, prior_scale=0.1)
    disc = Discrepancy.build({"step": step, "size": empty}, {"step": 1.5, "size": 2.0}, tried, seed=0)
    table = disc.table().set_index("stage")
    assert table.loc["size", "source"] == "step" and table.loc["step", "source"] == "backtests"
    rms = np.sqrt(step.moments()[1])  # the step stage's root-mean-square miss per unit log ratio
    assert table.loc["size", "target_mean"] == 0.0
    assert table.loc["size", "target_sd"] == pytest.approx(2.0 * rms, rel=1e-9)
    b, k = disc.stage_draws(20000)["size"]
    assert np.all(b == 0) and np.sqrt(np.mean(k**2)) == pytest.approx(rms, rel=0.02)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="prior_scale must be positive"):
        scale_posterior(np.zeros(2), np.ones(2), 0.0, 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        scale_posterior(np.zeros(2), np.ones(3), 0.0, 0.1)


def test_each_eval_domain_backtests_its_own_misses_where_the_overall_cancels():
    from bayesmix.pipeline.backtest import overall, replayed_misses, weightings

    assert weightings({"a": 1.0}) == {"overall": {"a": 1.0}}
    weighted = weightings({"a": 0.5, "b": 0.5})
    assert weighted == {"overall": {"a": 0.5, "b": 0.5}, "a": {"a": 1.0}, "b": {"b": 1.0}}
    # eval a misses by +0.1 at distance 1, eval b by -0.1: the overall's misses cancel exactly
    runs = [f"r{i}" for i in range(12)]
    labels = pd.DataFrame({"run": np.repeat(runs, 2), "eval": ["a", "b"] * len(runs)})
    pred = np.full(len(labels), 2.0)
    observed = labels.assign(loss=np.where(labels["eval"] == "a", 2.1, 1.9))
    backtests = {}
    for name, w in weighted.items():
        m = replayed_misses(labels, pred, np.tile(pred, (4, 1)), overall(observed, "loss", w, "run"), 1.0, w, "run")
        backtests[name] = Backtest("step", m.assign(miss=m["observed"] - m["predicted"]), 0.005, prior_scale=0.06)
    assert np.allclose(backtests["overall"].misses["miss"], 0.0)
    assert np.allclose(backtests["a"].misses["miss"], 0.1) and np.allclose(backtests["b"].misses["miss"], -0.1)
    tried = np.array([[1.0, 0.0], [0.0, 1.0]])
    per_eval = {e: Discrepancy.build({"step": backtests[e]}, {"step": 1.0}, tried, seed=0) for e in "ab"}
    disc = Discrepancy.build({"step": backtests["overall"]}, {"step": 1.0}, tried, seed=0)
    disc = Discrepancy(**{**disc.__dict__, "evals": per_eval})
    table = disc.tables().set_index(["eval", "stage"])
    assert list(table.index) == [("overall", "step"), ("a", "step"), ("b", "step")]
    # the overall finds no bias; each domain finds its own, far outside what the overall's spread allows
    assert abs(table.loc[("overall", "step"), "target_mean"]) < 0.005
    assert table.loc[("a", "step"), "target_mean"] == pytest.approx(0.1, abs=0.005)
    assert table.loc[("b", "step"), "target_mean"] == pytest.approx(-0.1, abs=0.005)
    assert table.loc[("overall", "step"), "target_sd"] < 0.02


def test_a_face_no_run_reached_carries_an_upward_rise_and_the_tried_ranges_none():
    from bayesmix.pipeline.discrepancy import FACE_SHARE

    tried = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    x = np.linspace(0.05, 0.5, 200)
    exact = Backtest("mix", misses(x, np.zeros_like(x)), 0.001, prior_scale=0.2)  # level 0.2 / 0.1 = 2
    disc = Discrepancy.build({"mix": exact}, {"step": 0.0, "size": 0.0}, tried, seed=3)
    assert disc.level == pytest.approx(2.0) and disc.face_scale == pytest.approx(2.0 * FACE_SHARE)
    inside, face = np.array([[0.4, 0.3, 0.3]]), np.array([[0.5, 0.5, 0.0]])  # the face cuts domain 2 to zero
    draws = disc.draws(np.concatenate([inside, face]), 4000)
    assert np.abs(draws[:, 0]).max() < 0.02  # inside every range: no rise, and the law's exact misses
    c = disc.face_scale / 3  # one domain of three removed: u = 1/3
    assert draws[:, 1].min() > -0.02  # upward only
    assert draws[:, 1].mean() == pytest.approx(c * np.sqrt(2 / np.pi), rel=0.05)
    assert draws[:, 1].std() == pytest.approx(c * np.sqrt(1 - 2 / np.pi), rel=0.05)
    mean, sd = disc.moments(np.concatenate([inside, face]))
    assert mean[0] == pytest.approx(0.0, abs=0.005) and mean[1] == pytest.approx(c * np.sqrt(2 / np.pi), rel=0.02)
    assert sd[1] == pytest.approx(c * np.sqrt(1 - 2 / np.pi), rel=0.05)
    row = disc.table().set_index("stage").loc["face"]
    assert row["source"] == "prior" and row["k_median"] == pytest.approx(disc.face_scale)
    # the loss of domain 2's own evaluation: it alone is cut to zero, so its rise counts whole; domain 0's
    # own evaluation keeps its data (and the pair {0, 2} stays in range at 0.5): no rise
    own = disc.draws(face, 4000, own=2)[:, 0]
    assert own.mean() == pytest.approx(disc.face_scale * np.sqrt(2 / np.pi), rel=0.05)
    assert np.abs(disc.draws(face, 4000, own=0)).max() < 0.02
    assert disc.moments(face, own=2)[0][0] == pytest.approx(disc.face_scale * np.sqrt(2 / np.pi), rel=0.02)


def test_numpy_draws_equal_the_traced_jax_function_and_are_drawn_once():
    import jax
    import jax.numpy as jnp

    tried = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    bt = {"mix": hand_built(0.01, 0.3, seed=4), "step": hand_built(-0.05, 0.02, seed=5)}
    disc = Discrepancy.build(bt, {"step": 1.5, "size": 0.0}, tried, seed=2)
    r = np.array([[0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]])
    with jax.enable_x64(True):
        traced = np.asarray(jax.jit(disc.jax_fn(500, own=1))(jnp.asarray(r)))
    np.testing.assert_allclose(disc.draws(r, 500, own=1), traced, rtol=1e-12, atol=1e-12)
    parts = disc._parts(500)
    assert disc._parts(500) is parts and not parts[0].flags.writeable  # kept, and read-only
    rebuilt = Discrepancy.build(bt, {"step": 1.5, "size": 0.0}, tried, seed=2)
    assert np.array_equal(rebuilt.draws(r, 500), disc.draws(r, 500))  # a new object draws the same numbers
