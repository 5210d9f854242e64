"""Candidate mixtures: Algorithm 2 on hand-checked cases, Dirichlet draws, space filling."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.design import candidates as cand
from bayesmix.decide.simplex import SimplexBounds, simplex_distance


def test_diminishing_levels_halve_down_to_the_grid():
    np.testing.assert_allclose(cand.diminishing_levels(1.0, 0.1), [1.0, 0.5, 0.2, 0.1, 0.0])
    np.testing.assert_allclose(cand.diminishing_levels(0.75, 0.25), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(cand.diminishing_levels(0.2, 0.25), [0.0])
    with pytest.raises(ValueError, match="delta must lie in"):
        cand.diminishing_levels(1.0, 0.0)


def test_algorithm2_enumeration_hand_checked():
    """r_max = (1, 1, 0.5), delta = 0.25. Domain a: Gamma = 1 -> {1, .5, .25, 0}; b: Gamma =
    min(1, left) halved on the grid; c takes the rest and must stay <= 0.5."""
    got = cand.algorithm2_enumerate([1.0, 1.0, 0.5], 0.25)
    expected = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.5, 0.0, 0.5],
                [0.25, 0.75, 0.0], [0.25, 0.25, 0.5], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]]
    np.testing.assert_allclose(got, expected)


def test_algorithm2_takes_domains_in_order_of_decreasing_r_max():
    """The same caps listed in another order give the same mixtures, columns permuted."""
    got = cand.algorithm2_enumerate([0.5, 1.0, 1.0], 0.25)
    expected = np.array(cand.algorithm2_enumerate([1.0, 1.0, 0.5], 0.25))[:, [2, 0, 1]]
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(expected, axis=0))
    assert {tuple(r) for r in got} == {tuple(r) for r in expected}


def test_algorithm2_samples_lie_in_the_enumerated_set_and_respect_bounds():
    bounds = SimplexBounds(["a", "b", "c"], r_max={"c": 0.5})
    full = {tuple(np.round(r, 9)) for r in cand.algorithm2_enumerate([1.0, 1.0, 0.5], 0.25)}
    drawn = cand.algorithm2(bounds, 8, delta=0.25, seed=0, zero_keep=1.0)
    assert {tuple(np.round(r, 9)) for r in drawn} <= full
    assert len(drawn) == len({tuple(r) for r in drawn})  # distinct
    assert bounds.is_feasible(drawn).all()
    np.testing.assert_array_equal(drawn, cand.algorithm2(bounds, 8, delta=0.25, seed=0, zero_keep=1.0))


def test_algorithm2_down_samples_mixtures_with_a_zero():
    bounds = SimplexBounds(list("abcde"))
    none_kept = cand.algorithm2(bounds, 40, delta=0.05, seed=1, zero_keep=0.0)
    assert len(none_kept) > 0 and np.all(none_kept > 0)
    all_kept = cand.algorithm2(bounds, 200, delta=0.05, seed=1, zero_keep=1.0)
    quarter = cand.algorithm2(bounds, 200, delta=0.05, seed=1)
    share = lambda r: np.mean(np.any(r == 0, axis=1))
    assert share(all_kept) > share(quarter) > 0


def test_algorithm2_with_fixed_and_minimum_proportions():
    bounds = SimplexBounds(list("abcd"), r_min={"b": 0.1}, r_max={"a": 0.3}, fixed={"d": 0.2})
    r = cand.algorithm2(bounds, 30, delta=0.05, seed=2)
    assert len(r) > 5
    bounds.check(r)
    np.testing.assert_allclose(r[:, 3], 0.2)


def test_dirichlet_draws_are_feasible_seeded_and_follow_the_prior():
    bounds = SimplexBounds(list("abcd"), r_max={"a": 0.5})
    r = cand.dirichlet(bounds, 200, seed=3)
    assert r.shape == (200, 4) and bounds.is_feasible(r).all()
    np.testing.assert_array_equal(r, cand.dirichlet(bounds, 200, seed=3))
    prior = [0.1, 0.2, 0.3, 0.4]
    tight = cand.dirichlet(SimplexBounds(list("abcd")), 500, seed=4, prior=prior, concentration=500.0)
    np.testing.assert_allclose(tight.mean(axis=0), prior, atol=0.01)
    assert tight.std(axis=0).max() < 0.05
    spread = cand.dirichlet(SimplexBounds(list("abcd")), 500, seed=4, prior=prior, concentration=0.1)
    assert spread.std(axis=0).min() > 0.1
    with pytest.raises(ValueError, match="prior must be 4 non-negative weights"):
        cand.dirichlet(bounds, 3, seed=0, prior=[1, 2])
    with pytest.raises(ValueError, match="concentration must be positive"):
        cand.dirichlet(bounds, 3, seed=0, concentration=(2.0, 1.0))


def test_space_filling_starts_at_the_centre_and_spreads_out():
    bounds = SimplexBounds(list("abc"), r_max={"a": 0.6})
    r = cand.space_filling(bounds, 8, seed=0)
    assert r.shape == (8, 3) and bounds.is_feasible(r).all()
    np.testing.assert_allclose(r[0], bounds.centre(), atol=0.02)
    d = simplex_distance(r, r)
    np.fill_diagonal(d, np.inf)
    random = cand.dirichlet(bounds, 8, seed=0, concentration=1.0)
    d_rand = simplex_distance(random, random)
    np.fill_diagonal(d_rand, np.inf)
    assert d.min() > d_rand.min()
    # with existing runs it avoids them
    near = cand.space_filling(bounds, 3, seed=0, existing=r)
    assert simplex_distance(near, r).min() > 0.05


def test_perturb_stays_feasible_and_near_its_centres():
    bounds = SimplexBounds(list("abcd"), fixed={"d": 0.1})
    centre = np.array([[0.3, 0.3, 0.3, 0.1]])
    r = cand.perturb(centre, bounds, 50, scale=0.02, seed=0)
    assert bounds.is_feasible(r).all()
    assert np.abs(r - centre).max() < 0.1
    assert cand.perturb(np.zeros((0, 4)), bounds, 5, seed=0).shape == (0, 4)


def test_tv_distance_and_frames():
    np.testing.assert_allclose(cand.tv_distance([[1, 0, 0]], [[0, 1, 0], [0.5, 0.5, 0]]), [[1.0, 0.5]])
    frame = cand.mixtures_frame([[0.2, 0.8]], ["x", "y"], prefix="s")
    assert list(frame.columns) == ["mixture", "mix.x", "mix.y"] and frame["mixture"].iloc[0] == "s0"
