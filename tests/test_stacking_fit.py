"""Stacking with real NUTS chains: a law whose chains mix keeps every chain and the pooled
answer; the implicit law, whose chains do not even mix within themselves, is declared a
failed fit with each chain named; the K grid ranks by the stacked LOO."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.data.simulate import dirichlet_mixtures
from bayesmix.inference.compare import compare_laws, latent_grid
from bayesmix.inference.fit import fit, load_fit

pytestmark = pytest.mark.slow  # NUTS

DOMAINS = ["a", "b", "c"]


def runs_of(mixtures: pd.DataFrame, loss: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"run": [f"r{i}" for i in range(len(loss))], "size": 1000, "step": 100, "eval": "val",
                         "loss": loss, **{c: mixtures[c].to_numpy() for c in mixtures}})


def three_latent_truth(r):
    s = np.array([0.45, 0.45, 0.1])
    b = np.array([0.0, 0.0, 0.5])
    t = np.array([[-4.0, 2.0, 2.0], [2.0, -4.0, 2.0], [1.0, 1.0, -2.0]])
    return 2.0 + (np.exp(b[None] + r @ t.T) @ s)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_m4_chains_that_mix_all_pass_and_keep_the_pooled_answer(tmp_path):
    mixtures = dirichlet_mixtures(40, DOMAINS, seed=1)
    y = 1.8 + np.exp(-0.3 + mixtures.to_numpy() @ np.array([-2.5, 0.5, 2.0]))
    y = y + 0.01 * np.random.default_rng(2).standard_normal(len(y))
    sampler = dict(num_chains=4, num_warmup=500, num_samples=1000, progress_bar=False)
    stacked = quiet(fit, runs_of(mixtures, y), "mix", seed=0, combine="stacking", sampler=sampler)
    assert stacked.stacking.ok and stacked.stacking.failed == []
    assert stacked.diagnostics.ok
    assert stacked.diagnostics.notes[0].startswith("chains mix (pooled R-hat passes), so stacking is not needed")
    np.testing.assert_allclose(stacked.stacking.weights.to_numpy(), 0.25)  # not one chain picked at random
    new = dirichlet_mixtures(20, DOMAINS, seed=3)
    pooled = quiet(fit, runs_of(mixtures, y), "mix", seed=0, sampler=sampler).predict(mixtures=new)
    mine = stacked.predict(mixtures=new)
    np.testing.assert_allclose(mine["mean"], pooled["mean"], atol=0.005)
    path = stacked.save(tmp_path / "fit.nc")
    loaded = load_fit(path)
    pd.testing.assert_series_equal(loaded.stacking.weights, stacked.stacking.weights)
    np.testing.assert_allclose(loaded.predict(mixtures=new)["mean"], mine["mean"])


def test_implicit_chains_fail_their_own_checks_so_the_stacked_fit_fails_and_the_k_grid_says_so():
    mixtures = dirichlet_mixtures(40, DOMAINS, seed=11)
    y = three_latent_truth(mixtures.to_numpy()) + 0.01 * np.random.default_rng(12).standard_normal(40)
    sampler = dict(num_chains=4, num_warmup=200, num_samples=200, max_tree_depth=8, progress_bar=False)
    table = quiet(compare_laws, runs_of(mixtures, y), latent_grid([2, 3]), seed=0, combine="stacking",
                  sampler=dict(sampler, num_warmup=100, num_samples=100))
    assert set(table.index) == {"implicit_K2", "implicit_K3"}
    assert "chains_carrying" in table.columns and np.isfinite(table["elpd_loo"]).all()
    result = quiet(fit, runs_of(mixtures, y), "implicit", seed=0, latent=4, combine="stacking", sampler=sampler)
    assert not result.diagnostics.ok
    assert result.stacking.failed == [0, 1, 2, 3]
    problem = result.diagnostics.problems[0]
    assert problem.startswith("chains do not mix, and each of the 4 chains fails its own checks")
    assert all(f"chain {c} (split R-hat" in problem or f"chain {c} (bulk ESS" in problem for c in range(4))
