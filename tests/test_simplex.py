"""Bounded simplex: bounds and their errors, exact projection, the constrained optimiser."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesmix.decide.simplex import (
    SimplexBounds,
    UnmovedOptimumWarning,
    descent_gain,
    minimise_on_simplex,
    project_box_simplex,
    project_jax,
    simplex_distance,
    stationarity,
)

DOMAINS = ["web", "code", "books"]


# ---------------------------------------------------------------- bounds


def test_bounds_arrays_from_r_min_r_max_and_fixed():
    b = SimplexBounds(["a", "b", "c", "d"], r_min={"b": 0.1}, r_max={"a": 0.3}, fixed={"d": 0.2})
    np.testing.assert_array_equal(b.lower, [0.0, 0.1, 0.0, 0.2])
    np.testing.assert_array_equal(b.upper, [0.3, 1.0, 1.0, 0.2])
    assert b.fixed == {"d": 0.2}
    assert SimplexBounds.from_dict(b.to_dict()) == b


@pytest.mark.parametrize("kwargs, message", [
    ({"r_max": {"nope": 0.3}}, "r_max names unknown domain(s) ['nope']"),
    ({"r_min": {"web": -0.1}}, "r_min of domain 'web' must lie in [0, 1]"),
    ({"r_max": {"web": 1.5}}, "r_max of domain 'web' must lie in [0, 1]"),
    ({"r_min": {"web": 0.5}, "r_max": {"web": 0.4}}, "domain 'web': r_min 0.5 exceeds r_max 0.4"),
    ({"r_max": {"web": 0.2}, "fixed": {"web": 0.3}}, "domain 'web': fixed proportion 0.3 lies outside"),
    ({"r_min": {"web": 0.6, "code": 0.6}}, "lower bounds (r_min and fixed) sum to 1.2 > 1"),
    ({"r_max": {"web": 0.2, "code": 0.2, "books": 0.2}}, "upper bounds (r_max and fixed) sum to 0.6 < 1"),
])
def test_bounds_errors_name_the_problem(kwargs, message):
    with pytest.raises(ValueError) as err:
        SimplexBounds(DOMAINS, **kwargs)
    assert message in str(err.value)


def test_bounds_need_distinct_domains():
    with pytest.raises(ValueError, match="domain names repeat"):
        SimplexBounds(["a", "a"])
    with pytest.raises(ValueError, match="at least one domain"):
        SimplexBounds([])


def test_token_budget_gives_r_max_as_tokens_over_target():
    b = SimplexBounds.from_token_budget({"web": 40e9, "code": 5e9, "books": 2e9}, target_tokens=20e9)
    np.testing.assert_allclose(b.upper, [1.0, 0.25, 0.1])
    assert b.domains == ["web", "code", "books"]
    with pytest.raises(ValueError, match="fewer than the 2e\\+10 target tokens"):
        SimplexBounds.from_token_budget({"web": 5e9, "code": 5e9}, target_tokens=20e9)
    with pytest.raises(ValueError, match="target_tokens must be positive"):
        SimplexBounds.from_token_budget({"web": 5e9}, target_tokens=0)
    with pytest.raises(ValueError, match="tokens available for domain 'web'"):
        SimplexBounds.from_token_budget({"web": -1.0, "code": 5e9}, target_tokens=1e9)


def test_check_names_the_violated_domain():
    b = SimplexBounds(DOMAINS, r_min={"books": 0.1}, r_max={"code": 0.3})
    r = np.array([0.6, 0.3, 0.1])
    assert b.check(r) is not None and b.is_feasible(r)
    with pytest.raises(ValueError, match="domain 'code' has proportion 0.5, above r_max 0.3"):
        b.check([0.4, 0.5, 0.1])
    with pytest.raises(ValueError, match="domain 'books' has proportion 0.05, below r_min 0.1"):
        b.check([0.65, 0.3, 0.05])
    with pytest.raises(ValueError, match="proportions sum to 0.9, not 1"):
        b.check([0.5, 0.3, 0.1])
    with pytest.raises(ValueError, match="mixture 1: domain 'code'"):
        b.check([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    with pytest.raises(ValueError, match="non-finite proportion"):
        b.check([np.nan, 0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        b.check([0.5, 0.5])
    fixed = SimplexBounds(DOMAINS, fixed={"web": 0.5})
    with pytest.raises(ValueError, match="domain 'web' has proportion 0.4, fixed at 0.5"):
        fixed.check([0.4, 0.3, 0.3])
    np.testing.assert_array_equal(b.is_feasible([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]), [True, False])


# ---------------------------------------------------------------- projection


def test_projection_hand_checked():
    b = SimplexBounds(DOMAINS)
    np.testing.assert_allclose(b.project([0.5, 0.5, 0.5]), [1 / 3, 1 / 3, 1 / 3], atol=1e-15)
    np.testing.assert_allclose(b.project([2.0, 0.0, 0.0]), [1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(b.project([0.6, 0.5, -1.0]), [0.55, 0.45, 0.0], atol=1e-15)
    capped = SimplexBounds(DOMAINS, r_max={"web": 0.3})
    np.testing.assert_allclose(capped.project([1.0, 0.0, 0.0]), [0.3, 0.35, 0.35], atol=1e-15)
    pinned = SimplexBounds(DOMAINS, fixed={"books": 0.2})
    np.testing.assert_allclose(pinned.project([0.0, 0.0, 1.0]), [0.4, 0.4, 0.2], atol=1e-15)
    np.testing.assert_allclose(b.centre(), [1 / 3] * 3)


def test_projection_is_the_nearest_feasible_point():
    rng = np.random.default_rng(0)
    b = SimplexBounds(["a", "b", "c", "d", "e"], r_min={"b": 0.1}, r_max={"a": 0.25, "c": 0.4}, fixed={"e": 0.05})
    v = rng.normal(0.2, 0.5, size=(200, 5))
    p = b.project(v)
    assert b.is_feasible(p).all()
    assert np.abs(p.sum(axis=1) - 1).max() < 1e-14
    others = b.project(rng.normal(0.2, 0.5, size=(500, 5)))  # random feasible points
    for i in range(50):
        d_proj = ((v[i] - p[i]) ** 2).sum()
        assert np.all(((v[i] - others) ** 2).sum(axis=1) >= d_proj - 1e-12)
    np.testing.assert_allclose(b.project(p), p, atol=1e-14)  # idempotent
    with jax.enable_x64(True):
        pj = jax.vmap(lambda x: project_jax(x, jnp.asarray(b.lower), jnp.asarray(b.upper)))(jnp.asarray(v))
    np.testing.assert_allclose(np.asarray(pj), p, atol=1e-12)
    np.testing.assert_allclose(project_box_simplex(v[:1], b.lower, b.upper), p[:1])


def test_projection_keeps_a_feasible_point_with_a_pinned_domain():
    """Regression: a pinned domain exactly at its value was counted twice in the exact solve."""
    b = SimplexBounds(DOMAINS, fixed={"books": 0.3})
    v = np.array([0.4, 0.3, 0.3])
    np.testing.assert_allclose(b.project(v), v, atol=1e-15)
    with jax.enable_x64(True):
        pj = project_jax(jnp.asarray(v), jnp.asarray(b.lower), jnp.asarray(b.upper))
    np.testing.assert_allclose(np.asarray(pj), v, atol=1e-15)
    pj32 = project_jax(jnp.asarray(v, jnp.float32), jnp.asarray(b.lower, jnp.float32), jnp.asarray(b.upper, jnp.float32))
    np.testing.assert_allclose(np.asarray(pj32), v, atol=1e-6)


def test_projection_rejects_non_finite_input():
    with pytest.raises(ValueError, match="non-finite"):
        SimplexBounds(DOMAINS).project([np.inf, 0, 0])


def test_simplex_distance():
    d = simplex_distance([[1, 0, 0]], [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(d, [[np.sqrt(2), 0.0]])


# ---------------------------------------------------------------- optimiser


def m4_overall(c, k, t, w):
    """Overall M4 loss sum_e w_e (c_e + k_e exp(t_e . r)): convex in r."""
    c, k, t, w = (jnp.asarray(a) for a in (c, k, t, w))
    return lambda r: jnp.sum(w * (c + k * jnp.exp(t @ r)))


LAW = {"c": [1.5, 2.0], "k": [1.0, 0.8], "t": [[-1.5, 1.0, 0.5], [1.2, -1.0, -0.2]], "w": [0.5, 0.5]}


def grid_optimum(f, bounds: SimplexBounds, resolution: int = 1000):
    """Brute force: the best point of a fine grid of the bounded simplex (M = 3)."""
    i, j = np.meshgrid(np.arange(resolution + 1), np.arange(resolution + 1), indexing="ij")
    keep = i + j <= resolution
    r = np.stack([i[keep], j[keep], resolution - i[keep] - j[keep]], axis=1) / resolution
    r = r[bounds.is_feasible(r)]
    values = np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(r)))
    k = int(np.argmin(values))
    return r[k], float(values[k])


@pytest.mark.parametrize("bounds", [SimplexBounds(DOMAINS), SimplexBounds(DOMAINS, r_max={"web": 0.2}),
                                    SimplexBounds(DOMAINS, fixed={"books": 0.3})])
def test_optimiser_finds_the_known_optimum_of_a_mixing_law_from_a_bad_start(bounds):
    with jax.enable_x64(True):
        f = m4_overall(**LAW)
        r_grid, v_grid = grid_optimum(f, bounds)
        corners = bounds.project(np.eye(3))
        bad = corners[[int(np.argmax([float(f(jnp.asarray(c))) for c in corners]))]]  # the worst corner
        r, value, info = minimise_on_simplex(f, bounds, bad, steps=400, learning_rate=0.05, seed=0)
    bounds.check(r)
    assert value <= v_grid + 1e-6
    np.testing.assert_allclose(r, r_grid, atol=2e-3)
    assert info.moved and info.feasible
    assert info.stationarity < 1e-3
    assert value < info.start_value - 0.05


def test_optimiser_uses_every_start_and_reports_them():
    bounds = SimplexBounds(DOMAINS)
    with jax.enable_x64(True):
        f = m4_overall(**LAW)
        starts = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        _r, value, info = minimise_on_simplex(f, bounds, starts, steps=300, seed=1)
    assert info.values.shape == (3,) and info.start_values.shape == (3,)
    assert np.all(info.values <= info.start_values + 1e-12)
    assert value == pytest.approx(info.values.min(), abs=1e-9)


def test_unmoved_result_is_reported_when_a_better_point_exists():
    bounds = SimplexBounds(DOMAINS)
    with jax.enable_x64(True):
        f = m4_overall(**LAW)
        start = np.array([[0.0, 0.0, 1.0]])
        with pytest.warns(UnmovedOptimumWarning, match="returned its start unchanged"):
            _, _, info = minimise_on_simplex(f, bounds, start, steps=3, learning_rate=1e-13, seed=0)
        assert not info.moved and info.descent_gain > 0
        assert descent_gain(f, start[0], bounds.lower, bounds.upper) > 0
        # at the optimum nothing is reported: no feasible descent direction
        r_opt, _, _ = minimise_on_simplex(f, bounds, start, steps=400, learning_rate=0.05, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnmovedOptimumWarning)
            r2, _, _info2 = minimise_on_simplex(f, bounds, r_opt[None], steps=50, learning_rate=1e-13, seed=0)
        assert stationarity(f, r2, bounds.lower, bounds.upper) < 1e-3


def test_optimiser_errors():
    bounds = SimplexBounds(DOMAINS)
    f = m4_overall(**LAW)
    with pytest.raises(ValueError, match="starts must have shape"):
        minimise_on_simplex(f, bounds, np.ones((2, 4)) / 4)
    with pytest.raises(ValueError, match="learning_rate > 0"):
        minimise_on_simplex(f, bounds, np.ones((1, 3)) / 3, learning_rate=0)
    with pytest.raises(ValueError, match="not finite at any start"):
        minimise_on_simplex(lambda r: jnp.nan * jnp.sum(r), bounds, np.ones((1, 3)) / 3, steps=2)


def test_optimiser_projects_infeasible_starts_and_keeps_bounds():
    bounds = SimplexBounds(["a", "b", "c", "d"], r_min={"d": 0.1}, r_max={"a": 0.2, "b": 0.2})
    target = jnp.asarray([0.7, 0.1, 0.1, 0.1])
    with jax.enable_x64(True):
        r, _value, _ = minimise_on_simplex(lambda r: jnp.sum((r - target) ** 2), bounds,
                                          np.array([[1.0, 0.0, 0.0, 0.0]]), steps=300, seed=0)
    bounds.check(r)
    np.testing.assert_allclose(r, [0.2, 0.2, 0.3, 0.3], atol=1e-4)
