"""PSIS-LOO comparison of laws: the true law wins, Pareto-k warnings, held-out columns, CLI."""

import types
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

from bayesmix.cli import main
from bayesmix.inference.compare import ParetoKWarning, compare_laws, held_out, loo_table, match_observations
from bayesmix.data.simulate import dirichlet_mixtures

pytestmark = pytest.mark.slow  # NUTS recovery of known parameters: the slow tier

SAMPLER = dict(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)
DOMAINS = ["a", "b", "c"]
T = np.array([-2.5, 0.5, 2.0])


def m4_runs(n, seed, prefix="r"):
    mixtures = dirichlet_mixtures(n, DOMAINS, seed=seed)
    y = 1.8 + np.exp(-0.3 + mixtures.to_numpy() @ T) + 0.01 * np.random.default_rng(seed + 100).standard_normal(n)
    return pd.DataFrame({"run": [f"{prefix}{i}" for i in range(n)], "size": 1000, "step": 100, "eval": "val",
                         "loss": y, **{c: mixtures[c].to_numpy() for c in mixtures}})


@pytest.fixture(scope="module")
def ranking():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_laws(m4_runs(40, 1), ["m3", "mix"], seed=0, sampler=SAMPLER, test=m4_runs(30, 2, "t"))


def test_loo_prefers_the_true_law(ranking):
    assert ranking.index.tolist() == ["mix", "m3"]
    assert ranking.loc["mix", "rank"] == 0 and ranking.loc["mix", "elpd_diff"] == 0
    assert ranking.loc["m3", "elpd_diff"] > 4 * ranking.loc["m3", "dse"]
    assert ranking.loc["mix", "weight"] > 0.9


def test_ranking_has_diagnostics_and_held_out_columns(ranking):
    for col in ("elpd_loo", "p_loo", "se", "dse", "pareto_k_bad", "diagnostics_ok", "rhat_max", "divergences",
                "seconds", "test_mae", "test_spearman", "test_cover50", "test_cover90", "n_test"):
        assert col in ranking.columns, col
    assert (ranking["n_test"] == 30).all()
    assert ranking.loc["mix", "test_mae"] < 0.02 < ranking.loc["m3", "test_mae"]
    assert ranking.loc["mix", "test_cover90"] >= 0.6
    assert ranking.loc["mix", "test_spearman"] > ranking.loc["m3", "test_spearman"]


def fake_fit(log_lik: np.ndarray, y: np.ndarray):
    """An object with what loo_table reads: idata (posterior, log_likelihood, observed_data)."""
    chains, draws, n = log_lik.shape
    idata = az.from_dict(posterior={"mu": np.zeros((chains, draws))}, log_likelihood={"obs": log_lik},
                         observed_data={"obs": y})
    return types.SimpleNamespace(idata=idata)


def test_pareto_k_above_0_7_is_counted_and_warned():
    rng = np.random.default_rng(0)
    good = rng.normal(-1.0, 0.05, size=(2, 500, 20))
    bad = good.copy()
    bad[..., 3] = -np.exp(rng.normal(0.0, 4.0, size=(2, 500)))  # one wildly influential observation
    y = np.arange(20.0)
    with pytest.warns(ParetoKWarning, match=r"law 'spiky': 1 of 20 observations have Pareto k > 0.7"):
        table = loo_table({"calm": fake_fit(good, y), "spiky": fake_fit(bad, y)})
    assert table.loc["spiky", "pareto_k_bad"] == 1 and table.loc["calm", "pareto_k_bad"] == 0


def test_laws_fitted_to_different_losses_are_refused():
    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.05, size=(2, 100, 5))
    with pytest.raises(ValueError, match=r"laws 'a' \(5 observations\) and 'b' \(5\) were fitted to different losses"):
        loo_table({"a": fake_fit(ll, np.arange(5.0)), "b": fake_fit(ll, np.arange(5.0) + 1)})


def test_argument_errors():
    runs = m4_runs(10, 0)
    with pytest.raises(ValueError, match="name at least one law"):
        compare_laws(runs, [], seed=0)
    with pytest.raises(ValueError, match=r"laws named twice"):
        compare_laws(runs, ["mix", "mix"], seed=0)
    with pytest.raises(ValueError, match=r"options/priors given for law\(s\) \['bimix'\] not being compared"):
        compare_laws(runs, ["mix"], seed=0, options={"bimix": {"epsilon": 1e-3}})
    with pytest.raises(KeyError, match="unknown law 'nope'"):
        compare_laws(runs, ["nope"], seed=0)


def test_match_observations_aligns_by_mixture_eval_and_step():
    labels = pd.DataFrame({"mixture": ["r1", "r1", "r0", "r0"], "step": [10.0, 20.0, 10.0, 20.0],
                           "eval": ["x", "x", "x", "x"]})
    obs = pd.DataFrame({"run": ["r0", "r1", "r0"], "step": [20, 10, 10], "eval": ["x", "x", "x"]})
    assert match_observations(labels, obs).tolist() == [3, 0, 2]
    with pytest.raises(ValueError, match="could not match 1 observations"):
        match_observations(labels, pd.DataFrame({"run": ["r9"], "step": [10], "eval": ["x"]}))


def test_held_out_works_for_a_fit_like_object():
    """held_out only needs ``law`` and ``predict``: a fake that predicts the truth exactly."""
    from bayesmix.laws import get_law

    test = m4_runs(12, 5, "h")
    truth_of = dict(zip(test["run"], test["loss"]))

    class Oracle:
        law = get_law("mix")

        def predict(self, **kwargs):
            import xarray as xr
            mixtures = kwargs["mixtures"]
            truth = np.array([truth_of[m] for m in mixtures["mixture"]])
            values = np.tile(truth, (50, 1)) + np.linspace(-0.01, 0.01, 50)[:, None]
            return xr.DataArray(values, dims=("draw", "point"),
                                coords={"mixture": ("point", mixtures["mixture"].to_numpy()),
                                        "eval": ("point", np.full(len(truth), "val"))})

    out = held_out(Oracle(), test)
    assert out["test_mae"] < 1e-12 and out["test_spearman"] == pytest.approx(1.0)
    assert out["test_cover90"] == 1.0 and out["n_test"] == 12


def test_cli_compare_prints_and_writes_the_ranking(tmp_path, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    m4_runs(30, 3).to_csv(train, index=False)
    m4_runs(15, 4, "t").to_csv(test, index=False)
    out = tmp_path / "ranking.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["compare", str(train), "--laws", "mix,m1", "--test", str(test), "--chains", "2", "--warmup",
                     "150", "--draws", "150", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "elpd_loo" in printed and "test_mae" in printed
    table = pd.read_csv(out)
    assert set(table["law"]) == {"mix", "m1"} and table["rank"].tolist() == [0, 1]


def test_cli_compare_user_errors_exit_2(tmp_path, capsys):
    train = tmp_path / "train.csv"
    m4_runs(10, 3).to_csv(train, index=False)
    assert main(["compare", str(train), "--laws", "mix,nope"]) == 2
    assert "bayesmix compare: error: unknown law 'nope'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.csv"), "--laws", "mix"]) == 2
