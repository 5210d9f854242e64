"""The exact grid posterior of curves linear given one exponent (bayesmix.inference.quadrature)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesmix.inference import quadrature as qd
from bayesmix.laws.annealing import annealing_mean
from bayesmix.pipeline.curves import linear_basis


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _case(seed=0, n=8, alpha=0.6):
    rng = np.random.default_rng(seed)
    x = np.stack([np.linspace(0.05, 1.0, n), np.linspace(0.0, 0.4, n) ** 2], axis=1)
    m, s = np.array([3.0, 2.0, 0.2]), np.array([0.6, 0.4, 0.3])
    X = np.asarray(linear_basis(jnp.asarray(x), alpha))
    return x, X, rng.normal(X @ m, 0.05), m, s


def test_linear_basis_reproduces_the_schedule_aware_mean():
    x, X, _, _, _ = _case()
    beta = np.array([3.1, 1.7, 0.25])
    expected = annealing_mean(x[:, 0], x[:, 1], beta[0], beta[1], 0.6, beta[2])
    np.testing.assert_allclose(X @ beta, expected, rtol=1e-12)


def test_log_evidence_is_the_gaussian_marginal_density():
    _, X, y, m, s = _case()
    sigma = 0.07
    terms = qd.whitened_svd(jnp.asarray(X), jnp.asarray(y), jnp.ones(len(y)), jnp.asarray(m), jnp.asarray(s))
    cov = X @ np.diag(s**2) @ X.T + sigma**2 * np.eye(len(y))
    expected = stats.multivariate_normal(X @ m, cov).logpdf(y)
    assert float(qd.log_evidence(terms, sigma)) == pytest.approx(expected, rel=1e-10)


def test_padding_rows_are_left_out():
    _, X, y, m, s = _case()
    pad = lambda a: np.concatenate([a, a[:2]])  # noqa: E731
    w = np.r_[np.ones(len(y)), 0.0, 0.0]
    full = qd.whitened_svd(jnp.asarray(X), jnp.asarray(y), jnp.ones(len(y)), jnp.asarray(m), jnp.asarray(s))
    padded = qd.whitened_svd(jnp.asarray(pad(X)), jnp.asarray(pad(y) + 5.0 * (1 - w)), jnp.asarray(w),
                             jnp.asarray(m), jnp.asarray(s))
    assert float(qd.log_evidence(padded, 0.05)) == pytest.approx(float(qd.log_evidence(full, 0.05)), rel=1e-12)


def test_a_curve_with_fewer_observations_than_coefficients_keeps_the_prior_elsewhere():
    _, X, y, m, s = _case()
    X, y = X[:2], y[:2]
    terms = qd.whitened_svd(jnp.asarray(X), jnp.asarray(y), jnp.ones(2), jnp.asarray(m), jnp.asarray(s))
    expected = stats.multivariate_normal(X @ m, X @ np.diag(s**2) @ X.T + 0.05**2 * np.eye(2)).logpdf(y)
    assert float(qd.log_evidence(terms, 0.05)) == pytest.approx(expected, rel=1e-10)
    at = lambda z: np.asarray(qd.conditional_draw(terms, 0.05, jnp.asarray(m), jnp.asarray(s), jnp.asarray(z)))  # noqa: E731
    root = np.stack([at(e) - at(np.zeros(3)) for e in np.eye(3)], axis=1)
    cov = np.linalg.inv(np.diag(1 / s**2) + X.T @ X / 0.05**2)
    np.testing.assert_allclose(root @ root.T, cov, rtol=1e-6, atol=1e-14)


def test_conditional_draw_has_the_conjugate_mean_and_covariance():
    _, X, y, m, s = _case()
    sigma = 0.05
    precision = np.diag(1 / s**2) + X.T @ X / sigma**2
    cov = np.linalg.inv(precision)
    mean = cov @ (m / s**2 + X.T @ y / sigma**2)
    terms = qd.whitened_svd(jnp.asarray(X), jnp.asarray(y), jnp.ones(len(y)), jnp.asarray(m), jnp.asarray(s))
    at = lambda z: np.asarray(qd.conditional_draw(terms, sigma, jnp.asarray(m), jnp.asarray(s), jnp.asarray(z)))  # noqa: E731
    centre = at(np.zeros(3))
    np.testing.assert_allclose(centre, mean, rtol=1e-8)
    root = np.stack([at(e) - centre for e in np.eye(3)], axis=1)  # beta = mean + root z
    np.testing.assert_allclose(root @ root.T, cov, rtol=1e-6, atol=1e-14)


def test_evidence_stays_exact_where_the_design_is_nearly_collinear():
    """At a large exponent x^-alpha spans 1e12 and nearly repeats the constant column; the
    normal equations lose the small direction, the whitened SVD does not."""
    x = np.stack([np.linspace(0.01, 1.0, 10), np.zeros(10)], axis=1)
    X = np.asarray(linear_basis(jnp.asarray(x), 6.0))
    m, s = np.array([3.0, 2.0, 0.0]), np.array([0.6, 0.4, 1e-9])
    y = X @ np.array([3.0, 2.0, 0.0]) + np.random.default_rng(1).normal(0, 0.01, 10)
    terms = qd.whitened_svd(jnp.asarray(X), jnp.asarray(y), jnp.ones(10), jnp.asarray(m), jnp.asarray(s))
    assert float(qd.log_evidence(terms, 0.01)) == pytest.approx(_exact_log_evidence(X, y, m, s, 0.01), rel=1e-8)


def _exact_log_evidence(X, y, m, s, sigma, digits=60):
    """log N(y; X m, X diag(s^2) X' + sigma^2 I) in 60-digit arithmetic (mpmath)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = digits
    Xm, n = mpmath.matrix(X.tolist()), len(y)
    cov = Xm * mpmath.diag([mpmath.mpf(v) ** 2 for v in s]) * Xm.T + mpmath.mpf(sigma) ** 2 * mpmath.eye(n)
    r = mpmath.matrix((y - X @ m).tolist())
    quad = (r.T * mpmath.lu_solve(cov, r))[0]
    return float(-0.5 * (n * mpmath.log(2 * mpmath.pi) + mpmath.log(mpmath.det(cov)) + quad))


def _prior_curves(n_curves, n=8, seed=0):
    """Curves drawn from the grid model's own prior (power law: anneal pinned at 0)."""
    rng = np.random.default_rng(seed)
    mu_a, tau_a, h = np.log(0.5), 0.4, 0.05
    m, s = np.array([3.0, 2.0, 0.0]), np.array([0.5, 0.4, 1e-9])
    alpha = np.exp(rng.normal(mu_a, tau_a, n_curves))
    sigma = np.abs(rng.normal(0, h, n_curves))
    beta = rng.normal(m, s, (n_curves, 3)) * np.array([1, 1, 0])
    x = np.stack([np.linspace(0.1, 0.5, n), np.zeros(n)], axis=1)
    X = np.stack([np.asarray(linear_basis(jnp.asarray(x), a)) for a in alpha])
    y = np.einsum("cnp,cp->cn", X, beta) + rng.normal(0, 1, (n_curves, n)) * sigma[:, None]
    curves = {"x": np.broadcast_to(x, (n_curves, 1, n, 2)).copy(), "y": y[:, None],
              "mask": np.ones((n_curves, 1, n), bool), "m": np.tile(m, (n_curves, 1, 1)),
              "s": np.tile(s, (n_curves, 1, 1)), "alpha_mu": np.full(n_curves, mu_a),
              "alpha_tau": np.full(n_curves, tau_a), "sigma_scale": np.full(n_curves, h)}
    lo = np.tile([mu_a - 6 * tau_a, np.log(1e-6)], (n_curves, 1))
    hi = np.tile([mu_a + 6 * tau_a, np.log(6 * h)], (n_curves, 1))
    truth = {"alpha": alpha, "at_one": beta[:, 0]}  # the loss at x = 1, twice the last x seen
    return curves, lo, hi, truth


def _coverage(draws, truth, prob=0.9):
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return float(np.mean((truth >= lo) & (truth <= hi)))


def test_grid_posterior_covers_prior_draws_at_the_nominal_rate_and_a_shuffled_control_does_not():
    """Simulation-based calibration: with curves drawn from the model's own prior the exact
    posterior's 90% intervals cover the truth 90% of the time (here within 3.5 binomial sd);
    the same intervals matched to the wrong curves do not."""
    n_curves = 300
    curves, lo, hi, truth = _prior_curves(n_curves)
    coarse, fine = qd.grid_posterior(linear_basis, curves, lo, hi)
    assert qd.grid_checks(coarse, fine)["ok"].mean() > 0.85  # the rest: sigma drawn near 0, a posterior finer than the grid
    d = qd.draw(linear_basis, curves, fine, 400, seed=3)
    at_one = d["beta"][:, :, 0, 0]  # x = 1 is an extrapolation: the level at twice the last x
    band = 3.5 * np.sqrt(0.9 * 0.1 / n_curves)
    for draws, value in ((d["alpha"], truth["alpha"]), (at_one, truth["at_one"])):
        assert abs(_coverage(draws, value) - 0.9) < band
    shuffled = np.random.default_rng(0).permutation(n_curves)
    assert _coverage(d["alpha"], truth["alpha"][shuffled]) < 0.9 - band


def test_a_posterior_outside_the_grid_fails_the_edge_check():
    curves, lo, hi, _ = _prior_curves(4)
    narrow_hi = hi.copy()
    narrow_hi[:, 0] = lo[:, 0] + 0.1  # exponents far below every curve's
    coarse, fine = qd.grid_posterior(linear_basis, curves, lo, narrow_hi)
    checks = qd.grid_checks(coarse, fine)
    assert not checks["ok"].any() and (checks["edge_mass"] > qd.EDGE_MASS_MAX).all()


def test_the_fine_box_holds_the_coarse_mass():
    curves, lo, hi, _ = _prior_curves(6)
    coarse = qd.evaluate(linear_basis, curves, lo, hi, qd.COARSE)
    box_lo, box_hi = qd.refine_box(coarse)
    la, ls = coarse.centres()
    w = np.exp(coarse.log_weight)
    inside = ((la[:, :, None] >= box_lo[:, None, None, 0]) & (la[:, :, None] <= box_hi[:, None, None, 0])
              & (ls[:, None, :] >= box_lo[:, None, None, 1]) & (ls[:, None, :] <= box_hi[:, None, None, 1]))
    assert ((w * inside).sum(axis=(1, 2)) > 1 - 1e-4).all()
    assert (box_hi - box_lo < hi - lo + 1).all()


def test_a_groups_log_posterior_is_the_sum_of_its_curves_evidences_and_a_masked_slot_adds_nothing():
    """Curves sharing (alpha, sigma): log p_group = sum_k log p(y_k | alpha, sigma) + one prior, so the
    grouped grid is the normalised sum of the single-curve grids less the K - 1 extra priors."""
    singles, lo, hi, _ = _prior_curves(3)
    grouped = {k: v[None, :, 0] if k in ("x", "y", "mask", "m", "s") else v[:1] for k, v in singles.items()}
    shape = (12, 10)
    one = qd.evaluate(linear_basis, singles, np.tile(lo[:1], (3, 1)), np.tile(hi[:1], (3, 1)), shape)
    group = qd.evaluate(linear_basis, grouped, lo[:1], hi[:1], shape)
    la, ls = group.centres()
    prior = np.asarray(qd._log_prior(la[0][:, None], ls[0][None, :], singles["alpha_mu"][0],
                                     singles["alpha_tau"][0], singles["sigma_scale"][0]))
    expected = one.log_weight.sum(axis=0) - 2 * prior
    expected -= np.log(np.exp(expected - expected.max()).sum()) + expected.max()
    np.testing.assert_allclose(group.log_weight[0], expected, atol=1e-9)
    padded = {k: (np.concatenate([v, v[:, :1]], axis=1) if k in ("x", "y", "m", "s") else
                  np.concatenate([v, np.zeros_like(v[:, :1])], axis=1) if k == "mask" else v)
              for k, v in grouped.items()}
    np.testing.assert_allclose(qd.evaluate(linear_basis, padded, lo[:1], hi[:1], shape).log_weight,
                               group.log_weight, atol=1e-12)


def test_the_fine_grids_evidence_is_the_integral_of_the_posterior():
    """log p(y) from the refined grid equals the same integral on a 4x denser grid over the prior's
    whole box (the midpoint rule converges), and a wrong prior mean lowers it."""
    curves, lo, hi, _ = _prior_curves(3)
    _, fine = qd.grid_posterior(linear_basis, curves, lo, hi)
    dense = qd.evaluate(linear_basis, curves, lo, hi, (384, 256))
    np.testing.assert_allclose(fine.log_evidence, dense.log_evidence, atol=0.02)
    shifted = dict(curves, m=curves["m"] + np.array([0.0, 3.0, 0.0]))  # the floor's prior 3 nats off
    assert (qd.grid_posterior(linear_basis, shifted, lo, hi)[1].log_evidence < fine.log_evidence - 1).all()
