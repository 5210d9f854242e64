"""Stacking of non-mixing chains: exact weights on hand-built posteriors, the chains' own
checks, the stacked mixture's draws, the diagnostics it writes, and every error message."""

import arviz as az
import numpy as np
import pandas as pd
import pytest

from bayesmix.inference.diagnostics import diagnose
from bayesmix.inference.fit import fit
from bayesmix.inference.stacking import (
    ChainThresholds,
    allocate_draws,
    carried_by,
    chain_checks,
    split_halves,
    stack_chains,
    stacked_diagnostics,
    stacked_draws,
)

N_DRAWS = 400


def hand_built(log_lik_by_chain: list[np.ndarray], centres: list[float], seed: int = 0,
               drift: list[float] | None = None) -> az.InferenceData:
    """A posterior whose chain k draws theta ~ N(centres[k], 1) (plus a linear ``drift``) and
    whose log-likelihood of observation i is ``log_lik_by_chain[k][i]`` in every draw (plus
    noise of sd 1e-3, so PSIS has weights to smooth)."""
    rng = np.random.default_rng(seed)
    drift = drift or [0.0] * len(centres)
    theta = np.stack([c + rng.standard_normal(N_DRAWS) + d * np.linspace(-1, 1, N_DRAWS)
                      for c, d in zip(centres, drift)])
    n_obs = len(log_lik_by_chain[0])
    log_lik = np.stack([np.broadcast_to(ll, (N_DRAWS, n_obs)) + 1e-3 * rng.standard_normal((N_DRAWS, n_obs))
                        for ll in log_lik_by_chain])
    return az.from_dict(posterior={"theta": theta}, log_likelihood={"obs": log_lik},
                        sample_stats={"diverging": np.zeros_like(theta, dtype=bool)},
                        observed_data={"obs": np.zeros(n_obs)})


def two_modes(n1: int, n2: int, p: float, q: float) -> list[np.ndarray]:
    """Chain 0 explains the first n1 observations (density p, the rest q), chain 1 the other n2."""
    first = np.r_[np.full(n1, np.log(p)), np.full(n2, np.log(q))]
    second = np.r_[np.full(n1, np.log(q)), np.full(n2, np.log(p))]
    return [first, second]


def analytic_weight(n1, n2, p, q) -> float:
    """argmax_w n1 log(w p + (1-w) q) + n2 log(w q + (1-w) p) = (n1 p - n2 q) / ((n1 + n2)(p - q))."""
    return (n1 * p - n2 * q) / ((n1 + n2) * (p - q))


@pytest.mark.parametrize("n1, n2", [(30, 10), (20, 20), (12, 28)])
def test_stacking_weights_match_the_analytic_answer_on_two_modes(n1, n2):
    p, q = 1.0, 0.05
    stacking = stack_chains(hand_built(two_modes(n1, n2, p, q), [-3.0, 3.0]), ["theta"])
    expected = analytic_weight(n1, n2, p, q)
    np.testing.assert_allclose(stacking.weights.to_numpy(), [expected, 1 - expected], atol=0.01)
    assert stacking.ok and not stacking.failed


def test_a_chain_in_a_wrong_mode_gets_weight_near_zero():
    n1, n2, p, q = 25, 15, 1.0, 0.05
    wrong = np.full(n1 + n2, np.log(0.01))  # predicts every observation badly
    stacking = stack_chains(hand_built([*two_modes(n1, n2, p, q), wrong], [-3.0, 3.0, 9.0]), ["theta"])
    assert stacking.weights[2] < 0.01
    expected = analytic_weight(n1, n2, p, q)
    np.testing.assert_allclose(stacking.weights[[0, 1]].to_numpy(), [expected, 1 - expected], atol=0.02)
    assert stacking.n_carrying == 2


def test_a_chain_that_fails_its_own_checks_gets_weight_zero_and_is_named():
    n1, n2, p, q = 25, 15, 1.0, 0.05
    idata = hand_built(two_modes(n1, n2, p, q) + [np.full(n1 + n2, np.log(p))], [-3.0, 3.0, 0.0],
                       drift=[0.0, 0.0, 20.0])  # chain 2 predicts best but drifts: its halves disagree
    stacking = stack_chains(idata, ["theta"])
    assert stacking.failed == [2]
    assert stacking.weights[2] == 0.0
    assert "split R-hat" in stacking.checks.loc[2, "reason"]
    assert "chain 2 (split R-hat" in stacking.summary()
    assert "combined by stacking" in stacking.summary()


def test_when_every_chain_fails_the_fit_fails():
    idata = hand_built(two_modes(20, 20, 1.0, 0.05), [-3.0, 3.0], drift=[20.0, 20.0])
    stacking = stack_chains(idata, ["theta"])
    assert not stacking.ok and stacking.n_carrying == 0
    diagnostics = stacked_diagnostics(diagnose(idata, ["theta"]), stacking)
    assert not diagnostics.ok
    assert diagnostics.problems[0].startswith("chains do not mix, and each of the 2 chains fails its own checks")
    assert diagnostics.notes == ()


def test_stacked_diagnostics_replace_the_pooled_gate_by_the_chains_own_checks():
    idata = hand_built(two_modes(20, 20, 1.0, 0.05), [-3.0, 3.0])
    pooled = diagnose(idata, ["theta"])
    assert any(p.startswith("R-hat") for p in pooled.problems)  # the modes disagree
    stacking = stack_chains(idata, ["theta"])
    diagnostics = stacked_diagnostics(pooled, stacking)
    assert diagnostics.ok
    assert diagnostics.notes[0].startswith("chains do not mix; combined by stacking (weights chain 0: 0.50, chain 1: 0.50")
    assert diagnostics.stacking["n_carrying"] == 2
    assert diagnostics.rhat_max == pooled.rhat_max  # kept, to show the chains disagree


def test_chains_that_mix_get_equal_weights_not_a_random_winner():
    idata = hand_built([np.zeros(30)] * 4, [0.0] * 4)  # four chains of one posterior, predicting alike
    stacking = stack_chains(idata, ["theta"], mixed=True)
    np.testing.assert_allclose(stacking.weights.to_numpy(), 0.25)
    assert stacking.summary().startswith("chains mix (pooled R-hat passes), so stacking is not needed: equal "
                                         "weights over the 4 chains")
    drifting = hand_built([np.zeros(30)] * 3, [0.0] * 3, drift=[0.0, 0.0, 20.0])
    partly = stack_chains(drifting, ["theta"], mixed=True)
    np.testing.assert_allclose(partly.weights.to_numpy(), [0.5, 0.5, 0.0])
    assert "weight 0 for chain 2 (split R-hat" in partly.summary()


def test_split_halves_of_a_stationary_chain_pass_and_of_a_drifting_one_fail():
    idata = hand_built([np.zeros(5)] * 2, [0.0, 0.0], drift=[0.0, 20.0])
    checks = chain_checks(idata, ["theta"])
    assert checks["ok"].tolist() == [True, False]
    assert checks.loc[0, "rhat_max"] < 1.02 and checks.loc[1, "rhat_max"] > 1.5
    halves = split_halves(idata.posterior.sel(chain=0))
    assert halves.sizes == {"chain": 2, "draw": N_DRAWS // 2}
    np.testing.assert_array_equal(halves["theta"].to_numpy()[1], idata.posterior["theta"].to_numpy()[0, N_DRAWS // 2:])
    strict = chain_checks(idata, ["theta"], ChainThresholds(ess_min=10 * N_DRAWS))
    assert not strict["ok"].any() and "bulk ESS" in strict.loc[0, "reason"]


def test_allocate_draws_follows_the_weights_exactly():
    picks = allocate_draws([0.5, 0.25, 0.25, 0.0], 8)
    assert [len(p) for p in picks] == [16, 8, 8, 0]
    np.testing.assert_array_equal(picks[1], np.arange(8))
    np.testing.assert_array_equal(picks[0], np.repeat(np.arange(8), 2))
    assert sum(len(p) for p in allocate_draws([1 / 3, 1 / 3, 1 / 3], 10)) == 30
    for bad in ([0.0, 0.0], [-0.1, 1.1], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="weights must be non-negative with a positive sum"):
            allocate_draws(bad, 4)


def test_stacked_draws_are_the_weighted_mixture_of_the_chains():
    idata = hand_built(two_modes(10, 10, 1.0, 0.05), [-3.0, 3.0])
    draws = stacked_draws(idata.posterior, ["theta"], pd.Series({0: 0.75, 1: 0.25}))["theta"]
    assert draws.shape == (2 * N_DRAWS,)
    assert np.mean(draws < 0) == 0.75


def test_carried_by_counts_the_chains_holding_ninety_percent():
    assert carried_by([0.5, 0.3, 0.15, 0.05]) == 3
    assert carried_by([0.9, 0.1]) == 1
    assert carried_by([0.25] * 4) == 4


def test_fit_rejects_an_unknown_combine_mode():
    runs = pd.DataFrame({"run": ["a", "b"], "size": 1, "step": 1, "eval": "val", "loss": [3.0, 3.1],
                         "mix.x": [0.5, 0.2], "mix.y": [0.5, 0.8]})
    with pytest.raises(ValueError, match=r"combine must be one of \('pooled', 'stacking'\), got 'mean'"):
        fit(runs, "mix", seed=0, combine="mean")


def test_stacked_loo_is_the_log_of_the_weighted_densities():
    n1, n2, p, q = 30, 10, 1.0, 0.05
    stacking = stack_chains(hand_built(two_modes(n1, n2, p, q), [-3.0, 3.0]), ["theta"])
    w = analytic_weight(n1, n2, p, q)
    expected = n1 * np.log(w * p + (1 - w) * q) + n2 * np.log(w * q + (1 - w) * p)
    loo = stacking.loo()
    np.testing.assert_allclose(loo.elpd_loo, expected, atol=0.05)
    assert loo.elpd_loo > max(stacking.elpd)  # the mixture predicts better than either mode
    np.testing.assert_allclose(np.asarray(loo.loo_i)[:n1], np.log(w * p + (1 - w) * q), atol=0.01)


def test_per_chain_starts_are_each_chains_values_unconstrained():
    import jax
    import numpyro
    import numpyro.distributions as dist

    from bayesmix.inference.nuts import per_chain_starts

    def model():
        numpyro.sample("m", dist.Normal(0.0, 1.0))
        numpyro.sample("s", dist.HalfNormal(1.0))

    with jax.enable_x64(True):
        starts = per_chain_starts(model, {}, [{"s": 2.0, "m": 1.0}, {"s": 0.5}], 2, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(starts["s"]), np.log([2.0, 0.5]))
    np.testing.assert_allclose(np.asarray(starts["m"]), [1.0, 1.0])  # a site left out starts where chain 0 does
    with pytest.raises(ValueError, match="chain_inits holds 1 starts for 2 chains"):
        per_chain_starts(model, {}, [{"s": 2.0}], 2, jax.random.PRNGKey(0))


def test_law_variants_and_the_latent_grid_label_each_fit():
    from bayesmix.inference.compare import latent_grid, law_variants

    assert law_variants(["mix", "m1"]) == {"mix": ("mix", {}), "m1": ("m1", {})}
    grid = latent_grid([5, 30])
    assert grid == {"implicit_K5": ("implicit", {"latent": 5}), "implicit_K30": ("implicit", {"latent": 30})}
    assert law_variants({"a": "mix", **grid})["implicit_K5"] == ("implicit", {"latent": 5})
    with pytest.raises(ValueError, match="name at least one law"):
        law_variants({})
    with pytest.raises(ValueError, match=r"latent counts named twice: \[5, 5\]"):
        latent_grid([5, 5])


def test_cli_compare_expands_a_latent_grid_and_rejects_bad_counts(capsys):
    from bayesmix.cli import build_parser, main
    from bayesmix.cli.compare import comparison_laws, comparison_options

    args = build_parser().parse_args(["compare", "runs.csv", "--laws", "mix,implicit", "--latent", "5,30",
                                      "--combine", "stacking"])
    assert args.combine == "stacking"
    assert comparison_laws(args) == {"mix": "mix", "implicit_K5": ("implicit", {"latent": 5}),
                                     "implicit_K30": ("implicit", {"latent": 30})}
    assert comparison_options(args)[1] == {}  # a grid is carried by the labels, not by options
    one = build_parser().parse_args(["compare", "runs.csv", "--laws", "implicit", "--latent", "7"])
    assert comparison_laws(one) == ["implicit"] and comparison_options(one)[1] == {"implicit": {"latent": 7}}
    for bad in ("0", "five", ","):
        with pytest.raises(SystemExit) as exited:
            main(["compare", "runs.csv", "--latent", bad])
        assert exited.value.code == 2
        assert "give positive integers, e.g. 30 or 5,10,30" in capsys.readouterr().err


def test_the_report_shows_stacking_as_a_mode_of_inference_not_a_failure():
    from bayesmix.report.html import _diag_frame

    note = "chains do not mix; combined by stacking (weights chain 3: 0.70, chain 1: 0.30; 2 of 8 chains carry 90%)"
    frame, _ = _diag_frame(pd.DataFrame([{"part": "mixing law", "rhat_max": 1.6, "ok": True, "problems": "",
                                          "notes": note}]))
    assert frame.loc[0, "mode of inference"] == note
    assert "good" in frame.loc[0, "status"]
    plain, _ = _diag_frame(pd.DataFrame([{"part": "mixing law", "rhat_max": 1.0, "ok": True, "problems": ""}]))
    assert "mode of inference" not in plain.columns


def test_a_stacked_fit_end_to_end_on_mocked_chains(tmp_path):
    """fit(combine="stacking") without NUTS: each mocked chain draws around its own start, so every
    chain passes its checks; the weights, the note, the stacked LOO and a save/load round trip."""
    from conftest import mocked_nuts

    from bayesmix.data.simulate import dirichlet_mixtures, simulate_mixing
    from bayesmix.inference.fit import load_fit

    runs = simulate_mixing(dirichlet_mixtures(30, ["a", "b", "c"], seed=0), c=np.array([2.0]), b=np.array([0.0]),
                           t=np.array([[-1.0, 0.5, 0.5]]), evals=["val"], noise=0.01, seed=0)
    with mocked_nuts():
        result = fit(runs, "mix", seed=0, combine="stacking", n_starts=8,
                     sampler=dict(num_chains=4, num_warmup=0, num_samples=200, progress_bar=False))
    assert result.stacking.ok and result.stacking.failed == []
    assert result.stacking.weights.sum() == pytest.approx(1.0)
    assert result.diagnostics.ok
    assert result.diagnostics.notes[0].startswith("chains mix (pooled R-hat passes)")  # one optimum: equal weights
    np.testing.assert_allclose(result.stacking.weights.to_numpy(), 0.25)
    assert result.posterior()["t"].shape[0] == 4 * 200
    assert np.isfinite(result.loo().elpd_loo)
    loaded = load_fit(result.save(tmp_path / "fit.nc"))
    pd.testing.assert_series_equal(loaded.stacking.weights, result.stacking.weights)


def test_stacked_diagnostics_keep_the_laws_adequacy_problem():
    import dataclasses

    from bayesmix.inference.diagnostics import adequacy_problems

    idata = hand_built(two_modes(20, 20, 1.0, 0.05), [-3.0, 3.0])
    r2 = {"val": -0.2}
    pooled = diagnose(idata, ["theta"])
    pooled = dataclasses.replace(pooled, loo_r2=r2, problems=pooled.problems + adequacy_problems(r2))
    diagnostics = stacked_diagnostics(pooled, stack_chains(idata, ["theta"]))
    assert diagnostics.problems == adequacy_problems(r2)
