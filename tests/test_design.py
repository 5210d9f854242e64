"""suggest(): the next mixtures from joint draws -- bounds, sums, distances, labels, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayesmix.design.suggest import Search, suggest, suggest_settings, suggest_with_landscape
from bayesmix.decide.simplex import SimplexBounds
from bayesmix.design import acquisition as acq

DOMAINS = ["web", "code", "books"]
OPTIMUM = np.array([0.2, 0.5, 0.3])
SHIFTS = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.02, size=(64, 1)))


def draws_fn(r):
    """Joint draws (64, n) of a bowl-shaped loss with its minimum at OPTIMUM."""
    r = jnp.asarray(r)
    return 2.0 + jnp.sum((r - OPTIMUM) ** 2, axis=-1)[None, :] + SHIFTS


TRIED = np.array([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])


@pytest.mark.slow
def test_suggestions_respect_bounds_sum_to_one_and_move_towards_the_optimum():
    bounds = SimplexBounds(DOMAINS, r_max={"code": 0.4})
    table = suggest(draws_fn, q=3, bounds=bounds, domains=DOMAINS, tried=TRIED, seed=0)
    r = table[[f"mix.{d}" for d in DOMAINS]].to_numpy()
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-9)
    assert (r >= -1e-12).all() and (r[:, 1] <= 0.4 + 1e-9).all()
    # the best feasible point is (0.25, 0.4, 0.35)-ish: the first suggestion sits on the code bound
    assert r[0, 1] == pytest.approx(0.4, abs=0.02)
    assert table["mixture"].tolist() == ["next1", "next2", "next3"]
    assert table["order"].tolist() == [1, 2, 3]
    for col in ("acquisition", "log_ei", "expected_improvement", "prob_improvement", "mean", "sd", "lower", "upper",
                "nearest_tried", "distance_to_tried"):
        assert col in table.columns, col
    assert (table["lower"] <= table["mean"]).all() and (table["mean"] <= table["upper"]).all()


@pytest.mark.slow
def test_suggestions_are_not_repeats_of_tried_mixtures_nor_of_each_other():
    tried = np.vstack([TRIED, [OPTIMUM]])  # the optimum itself has been run already
    table = suggest(draws_fn, q=4, domains=DOMAINS, tried=tried, seed=1, search=Search(min_distance=0.05))
    assert (table["distance_to_tried"] >= 0.05 - 1e-9).all()
    r = table[[f"mix.{d}" for d in DOMAINS]].to_numpy()
    pairwise = 0.5 * np.abs(r[:, None, :] - r[None, :, :]).sum(axis=-1)
    assert pairwise[np.triu_indices(4, 1)].min() >= 0.05 - 1e-9


def test_pool_suggestions_come_from_the_pool_and_skip_tried_ones():
    pool = np.array([[0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    table = suggest(draws_fn, q=2, domains=DOMAINS, tried=TRIED, pool=pool, seed=0)
    r = table[[f"mix.{d}" for d in DOMAINS]].to_numpy()
    np.testing.assert_allclose(r[0], pool[0])  # the pool's best is first
    assert not np.isclose(r, TRIED[0]).all(axis=1).any()


def test_the_landscape_is_every_candidate_searched_with_its_own_acquisition():
    pool = np.array([[0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    table, landscape = suggest_with_landscape(draws_fn, q=2, domains=DOMAINS, tried=TRIED, pool=pool, seed=0)
    assert list(landscape.columns) == ["mixture", "mix.web", "mix.code", "mix.books", "log_ei", "suggested"]
    np.testing.assert_allclose(landscape[[f"mix.{d}" for d in DOMAINS]].to_numpy(), pool[:3])  # the tried one left
    assert np.isfinite(landscape["log_ei"]).all()
    # the first pick is the candidate whose acquisition alone is largest, and it equals the table's log EI
    best = int(landscape["log_ei"].to_numpy().argmax())
    assert landscape["mixture"].iloc[best] == table["mixture"].iloc[0]
    np.testing.assert_allclose(landscape["log_ei"].iloc[best], table["log_ei"].iloc[0], rtol=1e-9)
    assert landscape["suggested"].sum() == 2 and set(landscape.loc[landscape["suggested"], "mixture"]) == set(
        table["mixture"])
    pd.testing.assert_frame_equal(suggest(draws_fn, q=2, domains=DOMAINS, tried=TRIED, pool=pool, seed=0), table)


@pytest.mark.slow
def test_suggest_is_reproducible_with_a_seed():
    a = suggest(draws_fn, q=2, domains=DOMAINS, tried=TRIED, seed=3)
    b = suggest(draws_fn, q=2, domains=DOMAINS, tried=TRIED, seed=3)
    np.testing.assert_array_equal(a[[f"mix.{d}" for d in DOMAINS]].to_numpy(),
                                  b[[f"mix.{d}" for d in DOMAINS]].to_numpy())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(q=0), ValueError, "q must be a positive integer"),
    (dict(acquisition="ei2"), ValueError, "unknown acquisition"),
    (dict(prob=1.5), ValueError, r"prob must lie in \(0, 1\)"),
    (dict(bounds=SimplexBounds(["a", "b", "c"])), ValueError, "bounds are over domains"),
])
def test_suggest_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        suggest(draws_fn, **{"domains": DOMAINS, "tried": TRIED, **kwargs})


def test_flat_options_become_search_settings_and_an_acquisition_object():
    kwargs = suggest_settings({"steps": 10, "n_starts": 2, "eval": "web", "max_draws": 50, "acquisition": "ucb",
                               "beta": 3.0})
    assert kwargs == {"search": Search(steps=10, n_starts=2), "eval": "web", "max_draws": 50,
                      "acquisition": acq.qUCB(beta=3.0)}
    assert suggest_settings({}) == {"acquisition": acq.qLogEI()}
    with pytest.raises(ValueError, match=r"acquisition 'logei' takes \['tau_max', 'tau_relu'\]; unknown setting"):
        suggest_settings({"stepz": 10})
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['steps'\]; objective options are"):
        suggest(draws_fn, q=1, domains=DOMAINS, steps=3)


def test_a_function_without_domains_is_refused():
    with pytest.raises(ValueError, match="needs domains="):
        suggest(draws_fn, q=1)
    with pytest.raises(TypeError, match="cannot build an objective"):
        suggest(42, q=1)


@pytest.mark.parametrize("name", ["logei", "pi", "ucb"])
def test_neutral_padding_leaves_every_acquisition_and_its_gradient_unchanged(name):
    from bayesmix.design import acquisition as acq
    from bayesmix.design.suggest import neutral_padding

    rng = np.random.default_rng(0)
    fixed = 2.0 + 0.1 * rng.standard_normal((400, 1))
    incumbent, scale = 2.0, 0.1
    acquisition = acq.get_acquisition(name)

    def value(shift, width):
        cand = 2.05 + shift + 0.1 * jnp.asarray(rng_draws)
        return acquisition(jnp.concatenate([jnp.asarray(neutral_padding(fixed, width, incumbent, scale)),
                                            cand[:, None]], axis=1), incumbent, scale)

    rng_draws = np.random.default_rng(1).standard_normal(400)
    with jax.enable_x64(True):
        for shift in (0.0, 0.3, -0.2):  # a candidate about level with, far worse than and better than the incumbent
            exact, padded = float(value(shift, 1)), float(value(shift, 3))
            assert padded == pytest.approx(exact, abs=1e-8)
            g_exact, g_padded = jax.grad(value)(shift, 1), jax.grad(value)(shift, 3)
            assert np.isfinite(g_padded) and float(g_padded) == pytest.approx(float(g_exact), rel=1e-6, abs=1e-10)
    assert neutral_padding(fixed, 1, incumbent, scale).shape == (400, 1)  # nothing to pad
