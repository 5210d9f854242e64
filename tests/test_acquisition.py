"""Acquisition functions: LogEI equals log EI where EI is representable, stays finite with
useful gradients where EI underflows; qLogEI, qPI and qUCB on hand-built joint draws."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesmix.design import acquisition as acq


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def test_log1mexp_matches_the_direct_formula():
    x = np.array([-1e-8, -0.1, -0.5, -np.log(2), -1.0, -5.0, -40.0])
    np.testing.assert_allclose(np.asarray(acq.log1mexp(x))[:-1], np.log(-np.expm1(x))[:-1], rtol=1e-12)
    # where 1 - exp(x) rounds to 1 the result is still accurate: log(1 - e^-40) = -e^-40
    assert float(acq.log1mexp(-40.0)) == pytest.approx(-math.exp(-40.0), rel=1e-9)


@pytest.mark.parametrize("u", [4.0, 1.0, 0.0, -0.5, -1.0, -2.0, -5.0, -10.0, -25.0])
def test_log_h_equals_log_of_h_where_representable(u):
    h = stats.norm.pdf(u) + u * stats.norm.cdf(u)
    assert float(acq.log_h(u)) == pytest.approx(math.log(h), rel=1e-10)


def test_analytic_log_ei_where_ei_underflows():
    mean, sd, incumbent = jnp.array([1.0, 1.0, 1.0]), 0.1, 1.0 + 0.1 * jnp.array([-1.0, -40.0, -1e3])  # u = -1, -40, -1000
    ei = np.asarray(acq.ei_gaussian(mean, sd, incumbent))
    log_ei = np.asarray(acq.log_ei_gaussian(mean, sd, incumbent))
    assert ei[0] > 0 and log_ei[0] == pytest.approx(math.log(ei[0]), rel=1e-12)
    assert np.all(ei[1:] == 0.0)  # plain EI underflows to exactly zero ...
    assert np.all(np.isfinite(log_ei))  # ... LogEI does not
    # leading term log phi(u) - 2 log|u| + log sd at u = -1000
    assert log_ei[2] == pytest.approx(-0.5e6 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e3) + math.log(0.1),
                                      rel=1e-9)
    # gradient w.r.t. the mean: plain EI gives 0, LogEI about -u/sd (pulls the mean down)
    g_ei = jax.grad(lambda m: acq.ei_gaussian(m, sd, 1.0 + 4.0))(1.0 + 10.0)
    g_log = jax.grad(lambda m: acq.log_ei_gaussian(m, sd, 1.0))(1.0 + 4.0)  # u = -40
    assert float(g_ei) == 0.0
    assert float(g_log) == pytest.approx(-40.0 / 0.1, rel=1e-2)


def test_monte_carlo_log_ei_equals_log_ei_where_representable():
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 0.1, size=(4000, 6)) + np.linspace(0, 0.2, 6)
    for scale in (1.0, 0.1):
        got = np.asarray(acq.log_ei(draws, 0.95, scale=scale))
        np.testing.assert_allclose(got, np.log(np.asarray(acq.ei(draws, 0.95))), rtol=1e-5)


def test_monte_carlo_log_ei_is_finite_with_gradients_where_ei_underflows():
    rng = np.random.default_rng(1)
    draws = jnp.asarray(rng.normal(3.0, 0.1, size=(256, 3)) + np.array([0.0, 1.0, 2.0]))
    incumbent = 2.0  # no draw improves: EI is exactly 0
    assert np.all(np.asarray(acq.ei(draws, incumbent)) == 0.0)
    log_ei = np.asarray(acq.log_ei(draws, incumbent))
    assert np.all(np.isfinite(log_ei))
    assert log_ei[0] > log_ei[1] > log_ei[2]  # closer to improving ranks higher
    g_plain = jax.grad(lambda s: jnp.sum(acq.ei(draws - s, incumbent)))(0.0)
    g_log = jax.grad(lambda s: jnp.sum(acq.log_ei(draws - s, incumbent)))(0.0)
    assert float(g_plain) == 0.0
    assert float(g_log) > 0.5  # lowering the predicted loss raises LogEI


def test_qlog_ei_on_hand_built_draws():
    # two worlds, two mixtures; incumbent 2: world 1 improvement max(1, -1) = 1, world 2 max(-1, 0.5) = 0.5
    draws = jnp.array([[1.0, 3.0], [3.0, 1.5]])
    assert float(acq.qei(draws, 2.0)) == pytest.approx(0.75)
    assert float(acq.qlog_ei(draws, 2.0)) == pytest.approx(math.log(0.75), abs=2e-3)
    # each alone: EI 0.5 and 0.25
    np.testing.assert_allclose(np.exp(np.asarray(acq.log_ei(draws, 2.0))), [0.5, 0.25], rtol=1e-4)


def test_qlog_ei_rewards_complementary_batches_over_duplicates():
    rng = np.random.default_rng(2)
    f = rng.normal(0.0, 1.0, size=(2000, 1))
    same = jnp.asarray(np.concatenate([f, f], axis=1))
    opposite = jnp.asarray(np.concatenate([f, -f], axis=1))
    single = float(acq.log_ei(jnp.asarray(f), 0.0)[0])
    assert float(acq.qlog_ei(same, 0.0)) == pytest.approx(single, abs=acq.TAU_MAX * math.log(2) + 1e-6)
    assert float(acq.qlog_ei(opposite, 0.0)) > single + 0.3
    # batch shape (D, n_batches, q) -> (n_batches,)
    stacked = jnp.stack([same, opposite], axis=1)
    assert acq.qlog_ei(stacked, 0.0).shape == (2,)


def test_probability_of_improvement():
    draws = jnp.array([[1.0, 3.0], [3.0, 1.5], [3.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(acq.prob_improvement(draws[..., None], 2.0)), [0.5, 0.5])
    assert float(acq.prob_improvement(draws, 2.0)) == pytest.approx(0.75)
    assert float(jnp.exp(acq.qlog_pi(draws, 2.0))) == pytest.approx(0.75, abs=1e-3)
    hopeless = jnp.full((10, 1), 5.0)
    value = float(acq.qlog_pi(hopeless, 2.0))
    assert np.isfinite(value) and value < -100


def test_qucb_single_point_matches_mean_and_sd():
    rng = np.random.default_rng(3)
    draws = jnp.asarray(rng.normal(2.0, 0.3, size=(200_000, 1)))
    assert float(acq.qucb(draws, beta=4.0)) == pytest.approx(-2.0 + 2.0 * 0.3, abs=5e-3)


def test_acquisition_objects_carry_their_settings():
    draws = jnp.array([[1.0, 3.0], [3.0, 1.5]])
    assert float(acq.get_acquisition("logei")(draws, 2.0)) == pytest.approx(float(acq.qlog_ei(draws, 2.0)))
    assert float(acq.get_acquisition("pi")(draws, 2.0)) == pytest.approx(float(acq.qlog_pi(draws, 2.0)))
    ucb = acq.get_acquisition("ucb", beta=1.0)
    assert ucb == acq.qUCB(beta=1.0) and float(ucb(draws, 2.0)) == pytest.approx(float(acq.qucb(draws, beta=1.0)))
    wide = acq.qLogEI(tau_relu=0.5, tau_max=0.2)
    assert float(wide(draws, 2.0, 0.5)) == pytest.approx(float(acq.qlog_ei(draws, 2.0, scale=0.5, tau_relu=0.5,
                                                                       tau_max=0.2)))
    assert acq.get_acquisition(wide) is wide and hash(wide) == hash(acq.qLogEI(0.5, 0.2))  # a static jit argument
    with pytest.raises(ValueError, match="unknown acquisition 'ei'; choose one of"):
        acq.get_acquisition("ei")
    with pytest.raises(ValueError, match=r"acquisition 'ucb' takes \['beta'\]; unknown setting\(s\) \['tau_max'\]"):
        acq.get_acquisition("ucb", tau_max=0.1)
    with pytest.raises(ValueError, match="go with an acquisition name, not an object"):
        acq.get_acquisition(wide, beta=1.0)


def test_fat_pieces():
    x = jnp.array([1.0, 1.0])
    assert float(acq.fatmax(x, 0.01)) == pytest.approx(1.0 + 0.01 * math.log(2))
    assert float(acq.fatmax(jnp.array([3.0]), 0.01)) == 3.0
    assert float(acq.log_fatplus(2.0, 1e-6)) == pytest.approx(math.log(2.0), rel=1e-9)
    assert np.isfinite(float(acq.log_fatplus(-1e3, 1e-6)))
    assert float(acq.logmeanexp(jnp.log(jnp.array([1.0, 3.0])))) == pytest.approx(math.log(2.0))
