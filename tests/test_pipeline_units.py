"""Building blocks of the nested pipeline: batched NUTS, stage planning, propagation,
stacked point fits, the error-budget arithmetic."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from bayesmix.pipeline import stages as st
from bayesmix.inference.lanes import (LaneSampler, LaneSamples, WarmStart, lane_variance_split, pooled_split_rhat,
                                     sample_lanes, split_rhat, thinning)
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.pipeline.budget import shares, upstream_step_fraction
from bayesmix.pipeline.curves import (SHARE_SD_MIN, TAU_MIN, em_location_scale, population_prior, reweighted_em,
                                      robust_location_scale)
from bayesmix.data.table import RunTableError
from bayesmix.laws import resolve_priors
from bayesmix.pipeline.nested import Pipeline
from bayesmix.pipeline.runners import lanes_failed
from bayesmix.data.simulate import NestedLaw, dirichlet_mixtures, simulate_campaign


def normal_model(batch):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.sample("obs", dist.Normal(mu, sigma), obs=batch["y"])


@pytest.mark.slow
def test_batched_nuts_recovers_each_dataset_and_not_its_neighbour():
    rng = np.random.default_rng(0)
    D, n = 12, 40
    truth = rng.normal(0, 3, D)
    y = truth[:, None] + 2.0 * rng.standard_normal((D, n))
    with jax.enable_x64(True):
        lanes = sample_lanes(normal_model, {"y": y}, seed=0,
                             config=SamplerConfig.for_lanes(num_chains=2, num_warmup=200, num_samples=200))
    assert lanes.samples["mu"].shape == (D, 2, 200)
    post = lanes.samples["mu"].reshape(D, -1)
    # exact posterior under a flat-ish prior: N(ybar, s / sqrt(n))
    np.testing.assert_allclose(post.mean(axis=1), y.mean(axis=1), atol=0.15)
    np.testing.assert_allclose(post.std(axis=1), y.std(axis=1, ddof=1) / np.sqrt(n), rtol=0.25)
    # negative control: lane d's posterior excludes lane d+1's mean when they differ a lot
    lo, hi = np.quantile(post, [0.005, 0.995], axis=1)
    shifted = np.roll(y.mean(axis=1), 1)
    far = np.abs(shifted - y.mean(axis=1)) > 2.0
    assert far.any() and not np.any((lo[far] <= shifted[far]) & (shifted[far] <= hi[far]))
    assert lanes.fail_fraction <= 0.1 and lanes.pooled(["mu"])["mu"].shape == (D * 400,)
    assert lanes.summary()["divergences"] == 0


@pytest.mark.slow
def test_lane_sampler_is_reused_across_batches_and_validates_input():
    with jax.enable_x64(True):
        sampler = LaneSampler(normal_model, {"y": np.zeros(5)}, config=SamplerConfig.for_lanes(1, 50, 20))
        a = sampler({"y": np.ones((3, 5))}, seed=1)
        b = sampler({"y": np.ones((3, 5))}, seed=1)
        np.testing.assert_array_equal(a.samples["mu"], b.samples["mu"])  # same seed, same numbers
        assert np.isnan(a.rhat).all()  # one chain: no R-hat
        with pytest.raises(ValueError, match="a seed is required"):
            sampler({"y": np.ones((3, 5))}, seed=None)
    with pytest.raises(ValueError, match="num_chains must be positive, got 0"):
        SamplerConfig.for_lanes(num_chains=0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        SamplerConfig.for_lanes(target_accept_prob=1.5)
    lanes = SamplerConfig.for_lanes()
    assert (lanes.num_chains, lanes.num_warmup, lanes.num_samples, lanes.target_accept_prob, lanes.max_tree_depth,
            lanes.jitter) == (2, 300, 150, 0.85, 8, 0.1)
    assert SamplerConfig.for_lanes(4, max_tree_depth=10).num_chains == 4
    with pytest.raises(ValueError, match=r"max_tree_depth must lie in 1..15, got 16"):
        SamplerConfig.for_lanes(max_tree_depth=16)


def test_split_rhat_hand_values():
    # identical chains: R-hat 1 (up to the (n-1)/n factor); shifted chains: large
    x = np.tile(np.sin(np.arange(100.0)), (1, 2, 1))[..., None]
    assert split_rhat(x)[0, 0] == pytest.approx(np.sqrt(49 / 50), rel=1e-6)
    y = x.copy()
    y[0, 1] += 5.0
    assert split_rhat(y)[0, 0] > 2.0


def test_robust_population_prior():
    mid, scale = robust_location_scale(np.array([1.0, 2.0, 3.0, 100.0]), 0.1)
    assert mid == 2.5 and scale == pytest.approx(1.4826 * 1.0)
    assert robust_location_scale(np.array([1.0, 1.0, 1.0]), 0.3) == (1.0, 0.3)
    pop = population_prior({"floor": np.array([1.0, 1.0]), "level": np.array([2.0, 2.0]),
                            "exponent": np.array([0.5, 0.5])})
    assert pop["floor_logit_mu"] == pytest.approx(0.0) and pop["exponent_log_mu"] == pytest.approx(np.log(0.5))
    with pytest.raises(ValueError, match="no finite point estimates"):
        robust_location_scale(np.array([np.nan]), 0.1)


def _pilot_draws(obs, se, m0, t0, n, rng):
    """Posterior draws (n, C) of a Gaussian mean under the prior N(m0, t0) from observations obs (C,) of sd se."""
    var = 1.0 / (1.0 / t0**2 + 1.0 / se**2)
    mean = var * (m0 / t0**2 + obs / se**2)
    return mean + np.sqrt(var) * rng.standard_normal((n, obs.size))


def test_reweighted_em_finds_the_grouped_populations_marginal_likelihood():
    # Curves observe their log exponent and floor share with known sd se: the population's maximum
    # marginal likelihood is the group means of the observations and tau^2 = (pooled variance) - se^2
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 300)
    true_a, true_f = np.array([np.log(0.25), np.log(0.45)]), np.array([0.88, 0.94])
    se_a, se_f = 0.2, 0.04
    obs_a = true_a[group] + 0.3 * rng.standard_normal(group.size) + se_a * rng.standard_normal(group.size)
    obs_f = true_f[group] + 0.08 * rng.standard_normal(group.size) + se_f * rng.standard_normal(group.size)
    a = _pilot_draws(obs_a, se_a, np.log(0.4), 1.0, 4000, rng)
    f = _pilot_draws(obs_f, se_f, 0.73, 0.27, 4000, rng)
    wide = {"exponent": (np.log(0.4), 1.0), "floor": (0.73, 0.27)}
    floors = {"exponent": TAU_MIN["exponent"], "floor": SHARE_SD_MIN["floor"]}
    pop, ess = reweighted_em({"exponent": a, "floor": f}, group, wide, floors)
    means_a = np.array([obs_a[group == g].mean() for g in (0, 1)])
    means_f = np.array([obs_f[group == g].mean() for g in (0, 1)])
    tau_a = np.sqrt(np.mean((obs_a - means_a[group]) ** 2) - se_a**2)
    sd_f = np.sqrt(np.mean((obs_f - means_f[group]) ** 2) - se_f**2)
    assert np.allclose(pop["exponent"][0], means_a, atol=0.01) and pop["exponent"][1] == pytest.approx(tau_a, abs=0.01)
    assert np.allclose(pop["floor"][0], means_f, atol=0.003) and pop["floor"][1] == pytest.approx(sd_f, abs=0.003)
    assert ess > 100
    # negative control: one EM step from the wide prior, with one location for both groups, takes
    # the groups' separation for spread between curves
    _, one_step_tau = em_location_scale(a, TAU_MIN["exponent"])
    assert one_step_tau > tau_a + 0.1
    # a population tighter than the floors stops at them
    tight, _ = reweighted_em({"exponent": np.log(0.3) + 1e-4 * rng.standard_normal((50, 4)),
                              "floor": 0.9 + 1e-5 * rng.standard_normal((50, 4))}, np.array([0, 0, 1, 1]), wide, floors)
    assert tight["exponent"][1] == TAU_MIN["exponent"] and tight["floor"][1] == SHARE_SD_MIN["floor"]
    with pytest.raises(ValueError, match="every group of curves needs at least one curve"):
        reweighted_em({"exponent": a[:, :2], "floor": f[:, :2]}, np.array([0, 2]), wide, floors)


def test_budget_shares_sum_to_one_and_clip_noise():
    s = shares(4.0, 3.0, 1.0)
    np.testing.assert_allclose(s, [0.25, 0.5, 0.25])
    s = shares(1.0, 1.1, 0.5)  # Monte Carlo noise: negative difference set to zero
    np.testing.assert_allclose(s, [0.0, 0.6 / 1.1, 0.5 / 1.1])
    assert s.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="leave no budget"):
        shares(0.0, 0.0, 0.0)


def test_lane_variance_split_is_the_law_of_total_variance():
    rng = np.random.default_rng(1)
    lane = np.repeat(np.arange(6), 50)
    pred = rng.normal(size=(6, 1, 3)) * 2.0 + rng.normal(size=(6, 50, 3)) * 0.5
    pred = pred.reshape(300, 3)
    within, between = lane_variance_split(pred, lane)
    np.testing.assert_allclose(within + between, pred.var(axis=0))  # the identity, ddof 0
    np.testing.assert_allclose(between, pred.reshape(6, 50, 3).mean(axis=1).var(axis=0))
    order = rng.permutation(300)  # lanes need not be contiguous
    np.testing.assert_allclose(lane_variance_split(pred[order], lane[order]), [within, between])
    constant = np.repeat(np.array([[1.0], [3.0]]), 4, axis=0)  # lanes differ, no spread within
    np.testing.assert_allclose(lane_variance_split(constant, np.repeat([0, 1], 4)), [[0.0], [1.0]])
    with pytest.raises(ValueError, match="equally many draws"):
        lane_variance_split(pred[:7], np.array([0, 0, 0, 1, 1, 2, 2]))


def test_upstream_step_fraction_weighs_evals_by_squared_weight():
    labels = pd.DataFrame({"mixture": ["a", "a", "b", "b"], "eval": ["x", "y", "x", "y"]})
    split = np.array([[1.0, 3.0, 2.0, 0.0],    # within lanes (the size law's own)
                      [1.0, 1.0, 0.0, 0.0]])   # between lanes (the step stage's)
    f = upstream_step_fraction(split, labels, ["b", "a"], "overall", {"x": 0.5, "y": 0.5})
    np.testing.assert_allclose(f, [0.0, 2 / 6])
    only_x = upstream_step_fraction(split, labels, ["a"], "x", {"x": 1.0})
    np.testing.assert_allclose(only_x, [0.5])
    heavy_y = upstream_step_fraction(split, labels, ["a"], "overall", {"x": 0.0, "y": 1.0})
    np.testing.assert_allclose(heavy_y, [0.25])
    with pytest.raises(ValueError, match="every observed mixture"):
        upstream_step_fraction(split, labels, ["a", "c"], "overall", {"x": 0.5, "y": 0.5})


def test_propagate_keeps_lane_descent():
    rng = np.random.default_rng(0)
    pred = np.arange(12.0)[:, None]  # 3 lanes x 4 draws, lane-major
    rows = st.propagate(pred, 3, 3, rng)
    np.testing.assert_array_equal(rows // 4, [0, 1, 2])
    rows = st.propagate(pred, 1, 5, rng)  # one fit: 5 distinct draws
    assert len(set(rows.tolist())) == 5
    with pytest.raises(ValueError, match="cannot propagate 3 lanes into 5"):
        st.propagate(pred, 3, 5, rng)


@pytest.fixture(scope="module")
def campaign():
    law = NestedLaw.random(["a", "b", "c"], ["e1", "e2"], seed=3)
    mixtures = dirichlet_mixtures(7, law.domains, seed=4)
    runs = simulate_campaign(law, mixtures, sizes=[2e6, 6e6, 2e7], steps=[1000, 2000, 4000, 8000], seed=5)
    return law, runs


def test_plan_stages_decides_what_runs(campaign):
    _, runs = campaign
    plan = st.plan_stages(runs, target_size=2e8, target_step=100000)
    assert plan.step and plan.size and plan.target_size == 200_000_000
    plan = st.plan_stages(runs, target_size=2e8, target_step=8000)  # every run ends at the target step
    assert not plan.step
    one = runs[runs["size"] == 2_000_000]
    assert not st.plan_stages(one, target_size=None, target_step=None).size
    with pytest.raises(RunTableError, match="pass target_size"):
        st.plan_stages(runs, target_size=None, target_step=None)
    with pytest.raises(RunTableError, match="one model size .* needs runs at 3 or more sizes"):
        st.plan_stages(one, target_size=1e9, target_step=None)


@pytest.mark.slow
def test_stacked_point_fit_equals_separate_fits(campaign):
    _, runs = campaign
    plan = st.plan_stages(runs, target_size=2e8, target_step=100000)
    stage = st.step_stage(runs, plan, min_step=1, evals=None, priors=resolve_priors("step"))
    y = stage.data.y
    ys = np.stack([y, y * 1.01])
    with jax.enable_x64(True):
        stacked = st.stacked_point_fit(stage, ys, seed=0, n_starts=4)
        fitted = st.fitted_at_obs(stage, stacked)
    assert stacked["exponent"].shape == (2, len(stage.data.coords["curve"]))
    # each copy fits its own data
    assert np.abs(fitted[0] - y).max() < 0.05 and np.abs(fitted[1] - 1.01 * y).max() < 0.05


def test_residual_bootstrap_stays_within_eval_groups():
    resid = np.array([1.0, -1.0, 10.0, -10.0])
    groups = np.array([0, 0, 1, 1])
    out = st.resample_residuals(resid, groups, 50, np.random.default_rng(0))
    assert set(np.abs(out[:, :2]).ravel()) == {1.0} and set(np.abs(out[:, 2:]).ravel()) == {10.0}


def test_pipeline_argument_errors(campaign):
    with pytest.raises(ValueError, match="mode must be one of"):
        Pipeline(mode="exact")
    with pytest.raises(ValueError, match=r"step_sampler must be one of \('grid', 'nuts'\), got 'hmc'"):
        Pipeline(step_sampler="hmc")
    with pytest.raises(ValueError, match="n_draws must be at least 2"):
        Pipeline(n_draws=1)
    with pytest.raises(ValueError, match="target_size must be positive"):
        Pipeline(target_size=-5)
    with pytest.raises(KeyError, match="unknown key"):
        Pipeline(priors={"steps": {}})
    with pytest.raises(KeyError, match="unknown prior name"):
        Pipeline(priors={"step": {"nonsense": 1.0}}).stage_priors()
    _, runs = campaign
    with pytest.raises(ValueError, match="a seed is required"):
        Pipeline(target_size=2e8).fit(runs, seed=None)
    with pytest.raises(ValueError, match=r"eval domain\(s\) \['web'\] are not in the table"):
        Pipeline(target_size=2e8, evals=("web",)).fit(runs, seed=0)


@pytest.mark.slow
def test_stage_errors_name_the_problem(campaign):
    _, runs = campaign
    two_sizes = runs[runs["size"] < 20_000_000]
    with pytest.raises(RunTableError, match="needs at least 3 distinct sizes"):
        Pipeline(target_size=2e8, mode="point", n_draws=4).fit(two_sizes, seed=0)
    few = runs[runs["run"].str.match(r"m[0-3]_")]  # 4 mixtures for 3 domains: M4 needs 5
    with pytest.raises(RunTableError, match="needs at least 5 distinct mixtures"):
        Pipeline(target_size=2e8, target_step=8000, mode="point", n_draws=4).fit(few, seed=0)
    short = runs[runs["step"] >= 4000]  # two checkpoints per run
    with pytest.raises(RunTableError, match="at least 3 checkpoints"):
        Pipeline(target_size=2e8, target_step=100000, mode="point", n_draws=4).fit(short, seed=0)


def test_size_stage_drops_mixtures_seen_at_one_size(campaign):
    _, runs = campaign
    plan = st.plan_stages(runs, target_size=2e8, target_step=8000)
    labels, observed = st.observed_at_target(runs, evals=None)
    labels = st.with_mixtures(labels, st.run_mixtures_frame(runs))
    lonely = labels["mixture"].iloc[0]
    keep = ~((labels["mixture"] == lonely) & (labels["size"] > 2_000_000))
    with pytest.warns(UserWarning, match="seen at one model size only"):
        stage = st.size_stage(labels[keep].reset_index(drop=True), observed[keep.to_numpy()], plan,
                              priors=resolve_priors("size"))
    assert lonely not in set(st.size_labels(stage)["mixture"])
    only_one = labels[labels["size"] == 2_000_000].reset_index(drop=True)
    with pytest.raises(RunTableError, match="no mixture is"):
        st.size_stage(only_one, observed[: len(only_one)], plan, priors=resolve_priors("size"))


def test_observed_at_target_takes_each_runs_last_checkpoint(campaign):
    _, runs = campaign
    labels, loss = st.observed_at_target(runs, evals=["e1"])
    assert set(labels["step"]) == {8000} and set(labels["eval"]) == {"e1"}
    assert len(labels) == runs["run"].nunique() and isinstance(labels, pd.DataFrame)
    expected = runs[(runs["step"] == 8000) & (runs["eval"] == "e1")].set_index("run")["loss"]
    np.testing.assert_allclose(loss, expected.loc[labels["run"]].to_numpy())


def test_pooled_thins_every_chain_alike_and_keeps_lanes_whole():
    assert thinning(19_200, 4000) == 5 and thinning(1600, 4000) == 1 and thinning(4000, 4000) == 1
    with pytest.raises(ValueError, match="positive number of draws"):
        thinning(10, 0)
    mu = np.arange(3 * 2 * 10, dtype=float).reshape(3, 2, 10)  # (D, chains, draws): value = its position
    lanes = LaneSamples({"mu": mu}, diverging=np.zeros((3, 2, 10), bool), num_steps=np.ones((3, 2, 10)))
    np.testing.assert_array_equal(lanes.pooled()["mu"], np.arange(60.0))
    thin = lanes.pooled(max_draws=20)["mu"]  # k = 3: draws 0, 3, 6, 9 of each chain
    np.testing.assert_array_equal(thin, mu[:, :, ::3].reshape(-1))
    assert thin.shape == (24,) and (thin // 20 == np.repeat([0, 1, 2], 8)).all()  # lane-major, 8 per lane


def test_pooled_split_rhat_hand_values():
    # two lanes, two chains, four draws, one quantity; halves of length 2
    x = np.array([[[0.0, 2.0, 0.0, 2.0], [1.0, 3.0, 1.0, 3.0]],
                  [[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]]])[..., None]  # (D=2, C=2, S=4, K=1)
    # lane 0: 4 sequences, each within-variance 2, means 1, 1, 2, 2 -> between_n = 1/3
    # lane 1: constant -> W = 0, between 0
    # pooled: W = (2 + 0) / 2 = 1, var+ = ((1/2 * 2 + 1/3) + 0) / 2 = 2/3 -> R = sqrt(2/3)
    np.testing.assert_allclose(pooled_split_rhat(x), [np.sqrt(2 / 3)])
    # lanes with different targets but well-mixed chains pool to about 1; one stuck lane shows
    rng = np.random.default_rng(0)
    good = rng.normal(np.arange(50.0)[:, None, None, None], 1.0, (50, 2, 200, 3))
    assert abs(pooled_split_rhat(good).max() - 1.0) < 0.01
    bad = good.copy()
    bad[:25, 1] += 2.0  # half the lanes have a chain in the wrong place
    assert pooled_split_rhat(bad).min() > 1.1


def test_lanes_failed_judges_the_stage_as_a_whole():
    assert not lanes_failed({"lanes": 128, "rhat_pooled": 1.005, "lanes_with_divergences": 3, "fail_fraction": 0.6})
    assert lanes_failed({"lanes": 128, "rhat_pooled": 1.03, "lanes_with_divergences": 0})
    assert lanes_failed({"lanes": 128, "rhat_pooled": 1.0, "lanes_with_divergences": 20})
    assert lanes_failed({"lanes": 1, "fail_fraction": 1.0}) and not lanes_failed({"lanes": 1, "fail_fraction": 0.0})


def test_a_grid_posterior_fails_when_any_curve_fails_its_checks_and_says_which():
    from bayesmix.pipeline.curves import grid_summary
    from bayesmix.pipeline.runners import lanes_problem

    checks = {"edge_mass": np.array([1e-9, 0.02, 1e-9]), "resolution": np.array([5.0, 6.0, 1.2]),
              "ok": np.array([True, False, False])}
    summary = grid_summary(checks)
    assert summary["fail_fraction"] == pytest.approx(2 / 3) and summary["failed_curves"] == [1, 2]
    assert lanes_failed(summary)
    assert lanes_problem(summary) == (
        "2 of 3 curves fail the grid's checks (largest posterior share on the grid's edge 0.02, at most 0.001; "
        "coarsest resolution 1.2 cells per posterior sd, at least 3); curves [1, 2]")
    passing = grid_summary({k: v[:1] for k, v in checks.items()})
    assert not lanes_failed(passing) and passing["fail_fraction"] == 0.0


@pytest.mark.slow
def test_warm_start_keeps_the_anchor_geometry():
    rng = np.random.default_rng(1)
    y = 3.0 + 2.0 * rng.standard_normal((6, 40))
    config = SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=100)
    with jax.enable_x64(True):
        sampler = LaneSampler(normal_model, {"y": y[0]}, config=config)
        anchor = sampler({"y": y[:1]}, seed=0)
        a = anchor.adaptation
        assert a["last"].shape == (1, 2, 2)
        warm = anchor.warm_start()
        np.testing.assert_allclose(warm.inverse_mass_matrix, a["inverse_mass_matrix"][0].mean(axis=0))
        np.testing.assert_allclose(warm.positions, a["last"][0])
        only_mu = WarmStart(warm.step_size, warm.inverse_mass_matrix[:1], warm.positions[:, :1])
        short = LaneSampler(normal_model, {"y": y[0]}, config=SamplerConfig.for_lanes(2, 50, 100))
        lanes = short({"y": y}, seed=1, warm_start=warm)
        post = lanes.samples["mu"].reshape(6, -1)
        np.testing.assert_allclose(post.mean(axis=1), y.mean(axis=1), atol=0.2)
        assert lanes.rhat_pooled < 1.05
        own = lanes.adaptation["inverse_mass_matrix"]  # each lane re-estimates its mass matrix from the anchor's
        assert not np.allclose(own, np.broadcast_to(warm.inverse_mass_matrix, own.shape))
        kept = LaneSampler(normal_model, {"y": y[0]}, config=SamplerConfig.for_lanes(2, 50, 100, adapt_warm_mass=False))
        kept_mass = kept({"y": y}, seed=1, warm_start=warm).adaptation["inverse_mass_matrix"]
        np.testing.assert_allclose(kept_mass, np.broadcast_to(warm.inverse_mass_matrix, kept_mass.shape))
        with pytest.raises(ValueError, match="coordinates"):
            short({"y": y}, seed=1, warm_start=only_mu)
        with pytest.raises(ValueError, match="dense"):
            short({"y": y}, seed=1, warm_start=WarmStart(1.0, np.eye(2), warm.positions))
    with pytest.raises(ValueError, match="step_size"):
        WarmStart(0.0, np.ones(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="positions"):
        WarmStart(1.0, np.ones(3), np.zeros((2, 2)))


def test_rising_curves_are_named():
    """A curve whose last loss is above its lowest by more than 1% is a law violation; noise below is not."""
    import pandas as pd

    steps = [100, 200, 400, 800]
    rows = [{"run": run, "size": 10, "step": s, "eval": "x", "loss": loss, "mix.p": 1.0}
            for run, losses in (("falls", (3.0, 2.5, 2.2, 2.1)), ("rises", (3.0, 2.5, 2.6, 2.7)),
                                ("flat", (3.0, 2.5, 2.2, 2.21)))
            for s, loss in zip(steps, losses)]
    rising = st.rising_curves(pd.DataFrame(rows), min_step=100)
    assert rising.to_dict(orient="records") == [{"run": "rises", "eval": "x", "lowest": 2.5, "last": 2.7}]
    assert st.rising_curves(pd.DataFrame(rows), min_step=400).to_dict(orient="records") == [
        {"run": "rises", "eval": "x", "lowest": 2.6, "last": 2.7}]


class RecordingBar:
    """Stands in for tqdm: records what a progress bar was told."""

    made: list = []

    def __init__(self, total, desc, unit, leave):
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        RecordingBar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


def test_iteration_bar_is_fed_by_the_host_callback_and_silent_when_not_interactive(monkeypatch):
    import bayesmix.inference.lanes as batched

    RecordingBar.made = []
    monkeypatch.setattr(batched, "tqdm", RecordingBar)
    with batched.iteration_bar(40, "size", show=True):
        for i in (9, 19, 39):  # what the compiled run reports every PROGRESS_EVERY iterations
            batched._report_iteration(np.int64(i))
        assert batched._BARS and RecordingBar.made[0].n == 40
    bar = RecordingBar.made[0]
    assert (bar.total, bar.desc, bar.closed) == (40, "size", True) and not batched._BARS
    batched._report_iteration(3)  # no bar in flight: nothing happens
    monkeypatch.setenv("CI", "true")
    with batched.iteration_bar(40, "size", show=None):
        assert not batched._BARS
    assert len(RecordingBar.made) == 1


@pytest.mark.slow
def test_compiled_nuts_reports_every_iteration_block_to_the_bar(monkeypatch):
    import bayesmix.inference.lanes as batched

    RecordingBar.made = []
    monkeypatch.setattr(batched, "tqdm", RecordingBar)
    with jax.enable_x64(True):
        sampler = LaneSampler(normal_model, {"y": np.zeros(5)}, config=SamplerConfig.for_lanes(2, 25, 20))
        sampler({"y": np.ones((3, 5))}, seed=1, progress=True, desc="toy")
        sampler({"y": np.ones((3, 5))}, seed=1)  # progress off by default: no bar
    (bar,) = RecordingBar.made
    assert bar.total == 45 and bar.n == 45 and bar.closed
    assert bar.desc == "toy: 3 lane(s) x 2 chain(s)"


def test_the_fast_tier_refuses_to_sample_nuts():
    from numpyro.infer import MCMC, NUTS

    with jax.enable_x64(True), pytest.raises(RuntimeError, match="the fast tier samples no NUTS"):
        sample_lanes(normal_model, {"y": np.zeros((2, 5))}, seed=0, config=SamplerConfig.for_lanes(1, 5, 5))
    mcmc = MCMC(NUTS(normal_model), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(RuntimeError, match="the fast tier samples no NUTS"):
        mcmc.run(jax.random.PRNGKey(0), {"y": np.zeros(5)})
