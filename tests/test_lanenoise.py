"""Draws-mode lanes brought to the stage's own noise: exact values on hand-built lanes."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from bayesmix.pipeline import stages as st
from bayesmix.inference.lanes import LaneSamples
from bayesmix.pipeline.lanenoise import (
    K_MIN,
    lane_ratios,
    noise_variance_factor,
    own_noise_ratio,
    residual_spread,
    shrink_by_lane,
    shrink_predictions,
)
from bayesmix.laws import resolve_priors


def test_noise_variance_factor_of_student_t_and_normal():
    assert noise_variance_factor(5.0) == pytest.approx(5.0 / 3.0)
    assert noise_variance_factor(float("inf")) == 1.0
    with pytest.raises(ValueError, match="a Student-t with df = 2.0 has no variance"):
        noise_variance_factor(2.0)


def test_own_noise_ratio_removes_twice_the_residual_spread_and_keeps_a_floor():
    sigma = np.full((2, 1, 3, 2), 0.2)  # lane noise variance 0.04 in every lane and eval
    k = own_noise_ratio(sigma, np.array([0.015, 0.05]), float("inf"))
    # eval 0: (0.04 - 2 * 0.015) / 0.04 = 0.25 -> k = 0.5; eval 1: nothing left -> K_MIN
    np.testing.assert_allclose(k, [[0.5, K_MIN], [0.5, K_MIN]])
    # a Student-t scale counts df / (df - 2) times in the variance: 0.04 * 5 / 3 - 0.03
    k_t = own_noise_ratio(sigma, np.array([0.015, 0.0]), 5.0)
    np.testing.assert_allclose(k_t[0], [np.sqrt(1 - 0.03 / (0.04 * 5 / 3)), 1.0])


def test_shrink_by_lane_is_exact_and_keeps_each_lane_mean():
    x = np.arange(12, dtype=float).reshape(6, 2)  # 2 lanes x 3 draws, E = 2
    k = np.array([[0.5, 1.0], [0.0, 0.25]])
    out = np.asarray(shrink_by_lane(x, np.repeat([0, 1], 3), k, 2)).reshape(2, 3, 2)
    np.testing.assert_allclose(out.mean(axis=1), x.reshape(2, 3, 2).mean(axis=1))
    np.testing.assert_allclose(out[0, :, 0], [1.0, 2.0, 3.0])  # lane 0, eval 0: mean 2, half the spread
    np.testing.assert_allclose(out[1, :, 0], [8.0, 8.0, 8.0])  # k = 0: collapsed to the lane mean
    np.testing.assert_allclose(out[1, :, 1], [8.5, 9.0, 9.5])  # mean 9, a quarter of the spread


def test_residual_spread_per_eval_and_its_errors():
    values = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])
    fitted = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # variances across lanes: 2, 0, 2; eval 0 holds points 0 and 1, eval 1 point 2, eval 2 none
    np.testing.assert_allclose(residual_spread(values, fitted, np.array([0, 0, 1]), 3), [1.0, 2.0, 0.0])
    # a shift shared by every point of a dataset is absorbed by its fit: no spread left
    shared = np.array([[0.0], [1.0]]) + np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(residual_spread(shared, shared, np.array([0, 0, 1]), 2), [0.0, 0.0])
    with pytest.raises(ValueError, match=r"must both be \(D >= 2, n_obs\)"):
        residual_spread(values[:1], fitted[:1], np.array([0, 0, 1]), 2)


@pytest.fixture()
def mix_stage():
    """M4 stage on 4 runs x 2 evals over two domains."""
    mix = np.array([0.2, 0.4, 0.6, 0.8])
    labels = pd.DataFrame({"run": np.repeat([f"r{i}" for i in range(4)], 2), "eval": ["a", "b"] * 4,
                           "mix.x": np.repeat(mix, 2), "mix.y": np.repeat(1 - mix, 2)})
    plan = st.Plan(step=False, size=False, target_step=100, target_size=10)
    return st.mix_stage(labels, np.full(8, 3.0), plan, unit="run", weights=None, priors=resolve_priors("mix"))


def test_lane_ratios_on_hand_built_m4_lanes(mix_stage):
    D, S = 3, 4
    rng = np.random.default_rng(0)
    level = 3.0 + rng.normal(0, 0.1, (D, 1, S, 2))
    samples = {"level": level, "floor": np.full((D, 1, S, 2), 1.0), "t": np.zeros((D, 1, S, 2, 2)),
               "sigma": np.full((D, 1, S, 2), 0.1)}
    lanes = LaneSamples(samples, np.zeros((D, 1, S), bool), np.ones((D, 1, S)))
    with jax.enable_x64(True):
        fitted = st.fitted_at_obs(mix_stage, lanes.pooled(["level", "floor", "t"]))
    # t = 0: the law's mean is the level of the observation's eval, in every draw
    obs_eval = mix_stage.data.arrays["eval"]
    np.testing.assert_allclose(fitted, level.reshape(D * S, 2)[:, obs_eval])
    # datasets = lane mean + residuals whose variance across lanes is 0.0025 for eval "a", 0 for "b"
    lane_mean = level.mean(axis=(1, 2))[:, obs_eval]
    residual = np.where(obs_eval == 0, 1.0, 0.0)[None, :] * np.array([[-0.05], [0.0], [0.05]])
    with jax.enable_x64(True):
        k, summary = lane_ratios(mix_stage, lanes, lane_mean + residual)
    np.testing.assert_allclose(summary["residual_spread"], [0.0025, 0.0], atol=1e-12)
    # Student-t df 5 (the mix default): V = 0.01 * 5/3; k_a = sqrt(1 - 0.005 / V) = sqrt(0.7), k_b = 1
    df = resolve_priors("mix")["student_df"]
    k_a = np.sqrt(1 - 2 * 0.0025 / (0.01 * df / (df - 2)))
    np.testing.assert_allclose(k, [[k_a, 1.0]] * D)
    assert summary["own_noise_ratio"]["min"] == pytest.approx(k_a)


def test_shrink_by_lane_uses_the_draws_present_of_each_lane():
    values = np.array([1.0, 3.0, 10.0, 5.0, 7.0, 9.0])[:, None, None] * np.ones((1, 2, 1))  # (n, Q=2, E=1)
    lane_of_draw = np.array([0, 0, 2, 1, 1, 1])  # lane 2 has one draw, lane 1 three
    k = np.array([[0.5], [0.0], [0.25]])
    out = np.asarray(shrink_by_lane(values, lane_of_draw, k[:, None, :], 3))
    np.testing.assert_allclose(out[:, 0, 0], [1.5, 2.5, 10.0, 7.0, 7.0, 7.0])
    np.testing.assert_allclose(out[:, 1], out[:, 0])


def test_shrink_predictions_keeps_each_lane_mean_prediction():
    pred = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 0.0], [7.0, 4.0]])  # 2 lanes x 2 draws, 2 points
    k = np.array([[0.5, 0.0], [1.0, 0.5]])
    out = shrink_predictions(pred, k)
    np.testing.assert_allclose(out, [[1.5, 20.0], [2.5, 20.0], [5.0, 1.0], [7.0, 3.0]])
    np.testing.assert_allclose(out.reshape(2, 2, 2).mean(axis=1), pred.reshape(2, 2, 2).mean(axis=1))


def test_lane_ratios_names_the_stages_it_knows(mix_stage):
    import dataclasses

    with pytest.raises(ValueError, match="no lane noise correction for stage 'step'"):
        lane_ratios(dataclasses.replace(mix_stage, name="step"), None, np.zeros((2, 8)))


def test_shrink_by_lane_in_numpy_equals_jax():
    rng = np.random.default_rng(0)
    values, lanes = rng.normal(size=(7, 3, 2)), np.array([0, 2, 2, 1, 0, 2, 1])
    k = rng.uniform(size=(3, 1, 2))
    with jax.enable_x64(True):
        traced = np.asarray(shrink_by_lane(values, lanes, k, 3))
    out = shrink_by_lane(values, lanes, k, 3, np)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, traced, rtol=1e-12)
