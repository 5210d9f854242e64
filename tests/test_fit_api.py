"""The fit/predict API: labels, shapes, save/load, errors; on a fit at known parameters
(:func:`conftest.mocked_nuts`: no sampler), and what only NUTS records on a real one."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesmix.inference.fit import fit, load_fit, summarise_draws
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.data.simulate import dirichlet_mixtures, simulate_mixing
from conftest import mocked_nuts

TINY = dict(num_chains=2, num_warmup=150, num_samples=150)


@pytest.fixture(scope="module")
def runs():
    mixtures = dirichlet_mixtures(12, ["web", "code", "books"], seed=0)
    return simulate_mixing(mixtures, c=np.array([2.0, 1.5]), b=np.array([0.0, -0.2]),
                           t=np.array([[-1.0, 0.5, 0.5], [0.5, -1.0, 0.5]]), evals=["web", "code"],
                           noise=0.01, seed=0)


@pytest.fixture(scope="module")
def result(runs):
    with mocked_nuts():
        return fit(runs, "mix", seed=1, sampler=TINY, weights={"web": 0.75, "code": 0.25})


@pytest.fixture(scope="module")
def sampled(runs):
    return fit(runs, "mix", seed=1, sampler=TINY, weights={"web": 0.75, "code": 0.25})


def test_predict_table_has_labels_and_interval_columns(result):
    table = result.predict(mixtures={"web": 0.5, "code": 0.3, "books": 0.2}, prob=0.8)
    assert table["eval"].tolist() == ["code", "web", "overall"]  # eval domains by name, then overall
    assert list(table.columns) == ["mixture", "eval", "mix.web", "mix.code", "mix.books", "mean", "sd", "lower", "upper"]
    assert (table["lower"] < table["mean"]).all() and (table["mean"] < table["upper"]).all()
    assert table.attrs["prob"] == 0.8


def test_overall_is_the_weighted_sum_of_eval_means(result):
    draws = result.predict(mixtures=[{"web": 0.2, "code": 0.6, "books": 0.2}], kind="mean", draws=True)
    assert isinstance(draws, xr.DataArray) and draws.dims == ("draw", "point")
    assert draws.sizes["draw"] == 2 * 150
    code, web, overall = (draws.isel(point=i).to_numpy() for i in range(3))  # eval domains by name
    np.testing.assert_allclose(overall, 0.75 * web + 0.25 * code, rtol=1e-12)


def test_observation_intervals_are_wider_than_mean_intervals(result):
    mix = {"web": 0.4, "code": 0.4, "books": 0.2}
    obs = result.predict(mixtures=mix, kind="observation")
    mean = result.predict(mixtures=mix, kind="mean")
    assert ((obs["upper"] - obs["lower"]) > (mean["upper"] - mean["lower"])).all()


def test_point_prediction_is_close_to_posterior_mean(result):
    mix = {"web": 0.3, "code": 0.3, "books": 0.4}
    point = result.predict_point(mixtures=mix)
    bayes = result.predict(mixtures=mix, kind="mean")
    np.testing.assert_allclose(point["point"], bayes["mean"], atol=0.02)


def test_save_and_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "fit.nc")
    loaded = load_fit(path)
    mix = {"web": 0.1, "code": 0.2, "books": 0.7}
    a = result.predict(mixtures=mix, seed=3)
    b = loaded.predict(mixtures=mix, seed=3)
    np.testing.assert_allclose(a[["mean", "sd", "lower", "upper"]], b[["mean", "sd", "lower", "upper"]])
    assert loaded.idata.posterior.attrs["law"] == "mix"
    assert "bayesmix_version" in loaded.idata.posterior.attrs
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data", "constant_data", "sample_stats"):
        assert group in loaded.idata.groups()
    assert loaded.diagnostics.max_tree_depth == result.diagnostics.max_tree_depth == SamplerConfig().max_tree_depth


@pytest.mark.slow
def test_tree_depths_are_recorded_and_summarised(sampled):
    result = sampled
    assert "mocked" not in result.idata.posterior.attrs
    stats = result.idata.sample_stats
    assert stats["tree_depth"].dims == ("chain", "draw")
    steps, depth = stats["n_steps"].to_numpy(), stats["tree_depth"].to_numpy()
    np.testing.assert_array_equal(depth, np.floor(np.log2(steps)).astype(int) + 1)
    assert result.diagnostics.treedepth_saturation == pytest.approx(np.mean(depth >= 10))


def test_bad_prediction_inputs_are_rejected(result):
    with pytest.raises(ValueError, match="mixtures lack domain column"):
        result.predict(mixtures={"web": 1.0})
    with pytest.raises(ValueError, match=r"sum to \[0.5\], not 1"):
        result.predict(mixtures={"web": 0.2, "code": 0.2, "books": 0.1})
    with pytest.raises(ValueError, match="law 'mix' predicts at mixtures"):
        result.predict(steps=[10])
    with pytest.raises(ValueError, match="kind must be one of"):
        result.predict(mixtures={"web": 0.2, "code": 0.2, "books": 0.6}, kind="median")
    with pytest.raises(ValueError, match="unknown domain column"):
        result.predict(mixtures={"web": 0.2, "code": 0.2, "books": 0.5, "math": 0.1})
    with pytest.raises(ValueError, match=r"unknown domain column\(s\) \['math'\]"):
        result.predict(mixtures=pd.DataFrame([{"mix.web": 0.2, "mix.code": 0.2, "mix.books": 0.5, "mix.math": 0.1}]))
    # with mix.* columns the rest are annotations: a suggestions table reads back as it is
    annotated = pd.DataFrame([{"mixture": "next1", "mix.web": 0.2, "mix.code": 0.3, "mix.books": 0.5, "mean": 2.1,
                               "nearest_tried": "m0"}])
    table = result.predict(mixtures=annotated)
    assert set(table["mixture"]) == {"next1"} and table["mean"].notna().all()


def test_fit_rejects_bad_options(runs):
    with pytest.raises(KeyError, match="unknown law 'quadratic'"):
        fit(runs, "quadratic", seed=0)
    with pytest.raises(KeyError, match="unknown prior name"):
        fit(runs, "mix", seed=0, priors={"nois_scale": 1.0})
    with pytest.raises(ValueError, match="init must be"):
        fit(runs, "mix", seed=0, init="random")
    with pytest.raises(ValueError, match="weights must name every eval domain"):
        fit(runs, "mix", seed=0, weights={"web": 1.0})


def test_sampler_config_validates():
    with pytest.raises(ValueError, match="chain_method must be one of"):
        SamplerConfig(chain_method="threads")
    with pytest.raises(ValueError, match="num_samples must be positive"):
        SamplerConfig(num_samples=0)
    with pytest.raises(ValueError, match="target_accept_prob must lie in"):
        SamplerConfig(target_accept_prob=1.5)


def test_summarise_draws_exact_values():
    draws = xr.DataArray(np.arange(1.0, 11.0)[:, None], dims=("draw", "point"), coords={"mixture": ("point", ["a"])})
    table = summarise_draws(draws, prob=0.8)
    assert table.loc[0, "mean"] == 5.5
    assert table.loc[0, "lower"] == pytest.approx(1.9)
    assert table.loc[0, "upper"] == pytest.approx(9.1)
    assert table.loc[0, "sd"] == pytest.approx(np.std(np.arange(1.0, 11.0), ddof=1))
