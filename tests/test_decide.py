"""Decisions on hand-built posteriors: exact values where they can be computed by hand."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesmix.decide import decisions as decide
from bayesmix.decide.simplex import SimplexBounds
from bayesmix.decide.support import hull_distance


def labelled(values: np.ndarray, mixtures: list[str], evals: list[str]) -> xr.DataArray:
    """(draw, point) draws laid out like ``PipelineResult.predict(draws=True)``."""
    mix = np.repeat(mixtures, len(evals))
    ev = np.tile(evals, len(mixtures))
    return xr.DataArray(values, dims=("draw", "point"), coords={"mixture": ("point", mix), "eval": ("point", ev)})


def test_prob_beats_counts_joint_draws():
    # draw-wise: a beats base in 3 of 4 worlds, b never does
    base = np.array([3.0, 3.0, 3.0, 3.0])
    a = np.array([2.9, 2.8, 3.1, 2.95])
    b = base + 0.1
    draws = labelled(np.stack([base, a, b], axis=1), ["base", "a", "b"], ["overall"])
    table = decide.prob_beats(draws, "base").set_index("mixture")
    assert table.loc["a", "prob_beats"] == pytest.approx(0.75)
    assert table.loc["b", "prob_beats"] == 0.0
    assert table.loc["base", "prob_beats"] == 0.0
    assert table.loc["a", "gain_mean"] == pytest.approx(np.mean(base - a))


def test_prob_beats_errors():
    draws = labelled(np.ones((3, 2)), ["a", "b"], ["overall"])
    with pytest.raises(ValueError, match="baseline 'zzz' is not among"):
        decide.prob_beats(draws, "zzz")
    with pytest.raises(ValueError, match="unknown eval 'web'"):
        decide.prob_beats(draws, "a", eval="web")


def test_rank_mixtures_orders_by_mean_quantile_and_cvar():
    rng = np.random.default_rng(0)
    safe = 3.0 + 0.01 * rng.standard_normal(4000)
    risky = 2.98 + 0.3 * rng.standard_normal(4000)  # better mean, much worse tail
    draws = labelled(np.stack([safe, risky], axis=1), ["safe", "risky"], ["overall"])
    assert decide.rank_mixtures(draws)["mixture"].tolist() == ["risky", "safe"]
    by_tail = decide.rank_mixtures(draws, by="q90")
    assert by_tail["mixture"].tolist() == ["safe", "risky"]
    assert decide.rank_mixtures(draws, by="cvar")["mixture"].tolist() == ["safe", "risky"]
    with pytest.raises(ValueError, match="cannot rank by 'median'"):
        decide.rank_mixtures(draws, by="median")


def test_cvar_is_the_mean_of_the_upper_tail():
    values = np.arange(1, 11, dtype=float)[:, None]
    # the 0.8 quantile of 1..10 is 8.2: the tail is {9, 10}
    assert decide.cvar(values, 0.8)[0] == pytest.approx(9.5)


def quadratic_loss(target: np.ndarray, n_draws: int = 50, seed: int = 0):
    """Draws of ``3 + |r - target|^2 + noise_d``: the mean is minimised at ``target``."""
    noise = jnp.asarray(np.random.default_rng(seed).normal(0, 0.01, n_draws))
    t = jnp.asarray(target)

    def f(r):
        return 3.0 + jnp.sum((r - t) ** 2, axis=-1)[None, :] + noise[:, None]

    return f


def test_optimum_finds_an_interior_minimum_and_moves():
    target = np.array([0.2, 0.5, 0.3])
    with jax.enable_x64(True):
        best = decide.optimum(quadratic_loss(target), ["a", "b", "c"], n_candidates=64, seed=1)
    np.testing.assert_allclose(best.mixture.to_numpy(), target, atol=5e-3)
    assert best.feasible and best.moved and best.value <= best.start_value


def test_optimum_is_never_worse_than_a_known_mixture_at_a_kink_refinement_cannot_reach():
    # a sharp V at a known point (|r - k|_1 * 50) beside a shallow pull away from it: the minimum is
    # the kink itself, which projected Adam only circles; the known start returns it exactly
    k = np.array([0.3, 0.3, 0.4])

    def f(r):
        return (3.0 + 50.0 * jnp.abs(r - jnp.asarray(k)).sum(-1) - 0.1 * r[..., 0])[None, :]

    with jax.enable_x64(True):
        free = decide.optimum(f, ["a", "b", "c"], n_candidates=64, seed=0)
        known = decide.optimum(f, ["a", "b", "c"], n_candidates=64, seed=0, known=k[None])
    assert known.value == pytest.approx(3.0 - 0.03, abs=1e-12) and not known.moved
    np.testing.assert_allclose(known.mixture.to_numpy(), k, atol=1e-12)
    assert free.value > known.value


def test_optimum_respects_bounds_and_fixed_domains():
    target = np.array([0.7, 0.2, 0.1])
    with jax.enable_x64(True):
        bounds = SimplexBounds(["a", "b", "c"], r_max={"a": 0.4}, fixed={"c": 0.1})
        best = decide.optimum(quadratic_loss(target), ["a", "b", "c"], bounds=bounds,
                              n_candidates=64, seed=2)
    # constrained optimum: a at its cap, c fixed, b takes the rest
    np.testing.assert_allclose(best.mixture.to_numpy(), [0.4, 0.5, 0.1], atol=5e-3)
    assert best.feasible


def test_compute_multiplier_closed_form_single_eval():
    # baseline: L(k S*) = 2.0 + 0.5 k^-0.4 ; mixture reaches 2.4 at S*
    k = decide.compute_multiplier(np.array([2.4]), level=np.array([2.5]), reducible=np.array([0.5]),
                                  exponent=np.array([0.4]))
    assert k[0] == pytest.approx((0.4 / 0.5) ** (-1 / 0.4))  # = 1.747...
    # a worse mixture needs fewer steps; one below the floor is never reached
    k = decide.compute_multiplier(np.array([2.6, 1.9]), np.array([2.5, 2.5]), np.array([0.5, 0.5]),
                                  np.array([0.4, 0.4]))
    assert k[0] < 1 and np.isinf(k[1])


def test_compute_multiplier_bisection_matches_hand_values():
    level = np.array([[2.5, 3.0]])
    reducible = np.array([[0.5, 0.4]])
    exponent = np.array([[0.4, 0.3]])
    w = np.array([0.25, 0.75])
    k_true = 1.48
    target = decide.power_sum(np.array([k_true]), level - reducible, reducible, exponent, w)
    k = decide.compute_multiplier(target, level, reducible, exponent, w)
    assert k[0] == pytest.approx(k_true, rel=1e-8)
    # with equal evals the bisection agrees with the closed form
    k2 = decide.compute_multiplier(np.array([2.4]), np.array([[2.5, 2.5]]), np.array([[0.5, 0.5]]),
                                   np.array([[0.4, 0.4]]), np.array([0.5, 0.5]))
    assert k2[0] == pytest.approx((0.4 / 0.5) ** (-1 / 0.4), rel=1e-8)


def test_summarise_multiplier():
    s = decide.summarise_multiplier(np.array([0.5, 1.5, 2.0, np.inf]), prob=0.5)
    assert s["prob_above_1"] == 0.75 and s["share_unreachable"] == 0.25
    assert s["mean"] == pytest.approx(4.0 / 3)


def test_a_quantile_in_the_unreachable_atom_is_infinite_and_warns_nothing():
    k = np.array([0.5, 1.5, 2.0, np.inf, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = decide.summarise_multiplier(k, prob=0.9)
        assert s["upper"] == np.inf and s["median"] == 2.0
        assert s["lower"] == pytest.approx(0.7)  # position 0.05 x 4 = 0.2, between the first two draws
        assert decide.quantile_with_infinite_atom(np.full(3, np.inf), 0.5) == np.inf
    finite = np.random.default_rng(0).lognormal(size=101)
    for q in (0.0, 0.05, 0.37, 0.5, 0.95, 1.0):  # finite draws: numpy's quantile exactly
        assert decide.quantile_with_infinite_atom(finite, q) == pytest.approx(np.quantile(finite, q), rel=1e-12)
    with pytest.raises(ValueError, match="multiplier draws must not be NaN"):
        decide.quantile_with_infinite_atom(np.array([1.0, np.nan]), 0.5)


def test_critical_proportion_matches_the_known_law():
    # original-domain loss along r(s) = (1 - s) r0 + s e_new under M4: c + exp(b + t.r(s))
    c, b = 2.0, -0.5
    t = np.array([-1.0, 0.5, 1.5])
    r0 = np.array([0.6, 0.4, 0.0])
    e_new = np.array([0.0, 0.0, 1.0])
    level = 2.8
    s_true = (np.log(level - c) - b - t @ r0) / (t @ (e_new - r0))
    shares = np.linspace(0, 1, 201)
    loss = c + np.exp(b + ((1 - shares)[:, None] * r0 + shares[:, None] * e_new) @ t)
    draws = np.repeat(loss[None], 10, axis=0)
    assert decide.critical_proportion(shares, draws, level, prob=0.9) == pytest.approx(s_true, abs=1e-4)
    # with noise, demanding more certainty gives a smaller share
    rng = np.random.default_rng(0)
    noisy = loss[None] + 0.05 * rng.standard_normal((4000, 1))
    s90 = decide.critical_proportion(shares, noisy, level, prob=0.9)
    s50 = decide.critical_proportion(shares, noisy, level, prob=0.5)
    assert s90 < s50 == pytest.approx(s_true, abs=0.01)


def test_critical_proportion_edges_and_errors():
    shares = np.array([0.0, 0.5, 1.0])
    assert decide.critical_proportion(shares, np.full((5, 3), 1.0), level=2.0) == 1.0
    assert np.isnan(decide.critical_proportion(shares, np.full((5, 3), 3.0), level=2.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        decide.critical_proportion(np.array([0.5, 0.0]), np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match="draws must have shape"):
        decide.critical_proportion(shares, np.ones((2, 2)), 1.0)


def test_optimum_rejects_unknown_statistic():
    with pytest.raises(ValueError, match="stat must be one of"):
        decide.optimum(quadratic_loss(np.ones(2) / 2), ["a", "b"], stat="median")


def test_rank_with_baseline_adds_probability():
    draws = labelled(np.array([[3.0, 2.9], [3.0, 3.1]]), ["base", "x"], ["overall"])
    table = decide.rank_mixtures(draws, baseline="base")
    assert "prob_beats" in table and table.set_index("mixture").loc["x", "prob_beats"] == 0.5
    assert isinstance(table, pd.DataFrame)


def test_optimum_at_a_corner_is_reached_by_refinement():
    with jax.enable_x64(True):
        best = decide.optimum(quadratic_loss(np.array([1.5, -0.3, -0.2])), ["a", "b", "c"], n_candidates=64, seed=3)
    np.testing.assert_allclose(best.mixture.to_numpy(), [1.0, 0.0, 0.0], atol=1e-6)
    assert best.moved and best.feasible


# ---------------------------------------------------------------- the optimum over the tried mixtures' hull

HULL_DOMAINS = ["a", "b", "c", "d"]
PAIRS = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5]])
HULL_TARGET = np.array([0.5, 0.0, 0.0, 0.5])  # outside the hull (x0 + x3 = 1; the hull holds 0.5)


def hull_bowl(r):
    """Squared distance to HULL_TARGET: (1 draw, n)."""
    return jnp.sum((r - jnp.asarray(HULL_TARGET)) ** 2, axis=-1)[None, :]


def test_hull_optimum_is_the_projection_of_an_outside_minimum_onto_the_hull():
    with jax.enable_x64(True):
        free = decide.optimum(hull_bowl, HULL_DOMAINS, seed=0)
        inside = decide.hull_optimum(hull_bowl, HULL_DOMAINS, PAIRS, seed=0)
    # negative control: over the simplex the optimum is the target itself, outside the hull
    np.testing.assert_allclose(free.mixture.to_numpy(), HULL_TARGET, atol=1e-3)
    assert hull_distance(free.mixture.to_numpy(), PAIRS)[0] > 0.49
    # over the hull: the Euclidean projection of the target onto the plane x0 + x3 = 0.5, the uniform mixture
    np.testing.assert_allclose(inside.mixture.to_numpy(), [0.25] * 4, atol=1e-3)
    np.testing.assert_allclose(inside.value, 0.25, atol=1e-5)
    assert inside.feasible and inside.mixture.index.tolist() == HULL_DOMAINS
    assert hull_distance(inside.mixture.to_numpy(), PAIRS)[0] < 1e-6


def test_hull_optimum_rejects_tried_mixtures_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"tried must have shape \(k >= 1, 4\)"):
        decide.hull_optimum(hull_bowl, HULL_DOMAINS, PAIRS[:, :3])


def test_predicted_optimum_names_its_regions_and_keeps_bounds_to_the_simplex():
    with pytest.raises(ValueError, match=r"region must be one of \('simplex', 'hull'\), got 'box'"):
        decide.predicted_optimum(None, region="box")
    with pytest.raises(ValueError, match="bounds apply to the simplex region"):
        decide.predicted_optimum(None, region="hull", bounds=SimplexBounds(HULL_DOMAINS))


def test_chunked_pads_to_one_shape_and_returns_every_row_once():
    shapes = []

    def fn(r):
        shapes.append(r.shape)
        return r.sum(axis=1)

    points = np.arange(21, dtype=float).reshape(7, 3)
    np.testing.assert_allclose(decide.chunked(fn, points, size=3), points.sum(axis=1))
    assert shapes == [(3, 3)] * 3  # 7 rows: 3 + 3 + 1 padded to 3
    np.testing.assert_allclose(decide.chunked(fn, points, size=7), points.sum(axis=1))
