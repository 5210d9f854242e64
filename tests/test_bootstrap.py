"""Bootstrap of the point fit: resampling, percentile intervals, the FitResult-like API."""

import numpy as np
import pandas as pd
import pytest

from bayesmix.inference.bootstrap import BootstrapResult, bootstrap, resample_runs
from bayesmix.inference.compare import held_out
from bayesmix.data.simulate import dirichlet_mixtures

DOMAINS = ["a", "b", "c"]
T = np.array([-2.5, 0.5, 2.0])


def m4_runs(n, seed, prefix="r", noise=0.02):
    mixtures = dirichlet_mixtures(n, DOMAINS, seed=seed)
    truth = 1.8 + np.exp(-0.3 + mixtures.to_numpy() @ T)
    y = truth + noise * np.random.default_rng(seed + 100).standard_normal(n)
    return pd.DataFrame({"run": [f"{prefix}{i}" for i in range(n)], "size": 1000, "step": 100, "eval": "val",
                         "loss": y, **{c: mixtures[c].to_numpy() for c in mixtures}})


@pytest.fixture(scope="module")
def boot():
    return bootstrap(m4_runs(80, 1), "mix", seed=0, n_boot=40, n_starts=8)


def test_resample_keeps_runs_whole_and_within_size():
    runs = pd.DataFrame({"run": ["a", "a", "b", "c", "c", "d"], "size": [1, 1, 1, 2, 2, 2],
                         "step": [1, 2, 1, 1, 2, 1], "eval": "v", "loss": np.arange(6.0)})
    out = resample_runs(runs, np.random.default_rng(3))
    base = out["run"].str.split("#").str[0]
    assert out.groupby("run").size().to_dict() == {r: int((runs["run"] == b).sum())
                                                   for r, b in zip(out["run"], base)}
    assert set(base[out["size"] == 1]) <= {"a", "b"} and set(base[out["size"] == 2]) <= {"c", "d"}
    assert out.drop_duplicates("run").groupby("size").size().tolist() == [2, 2]
    again = resample_runs(runs, np.random.default_rng(3))
    pd.testing.assert_frame_equal(out, again)


@pytest.mark.slow
def test_predict_has_the_fit_result_shape_and_covers_the_truth(boot):
    new = dirichlet_mixtures(30, DOMAINS, seed=9)
    truth = 1.8 + np.exp(-0.3 + new.to_numpy() @ T)
    mean = boot.predict(mixtures=new, kind="mean")
    assert mean.columns.tolist() == ["mixture", "eval", "mix.a", "mix.b", "mix.c", "mean", "sd", "lower", "upper"]
    assert mean.attrs["prob"] == 0.9
    assert ((mean["lower"] <= truth) & (truth <= mean["upper"])).mean() >= 0.8
    obs = boot.predict(mixtures=new, kind="observation")
    assert (obs["upper"] - obs["lower"]).mean() > (mean["upper"] - mean["lower"]).mean()
    draws = boot.predict(mixtures=new, kind="observation", draws=True, noise_draws=5)
    assert draws.dims == ("draw", "point") and draws.shape == (40 * 5, 30)
    assert boot.predict(mixtures=new, kind="mean", draws=True).shape == (40, 30)
    point = boot.predict_point(mixtures=new)
    np.testing.assert_allclose(point["point"], truth, atol=0.05)


@pytest.mark.slow
def test_bootstrap_is_reproducible_and_validates_arguments():
    runs = m4_runs(20, 2)
    a = bootstrap(runs, "mix", seed=5, n_boot=5, n_starts=4)
    b = bootstrap(runs, "mix", seed=5, n_boot=5, n_starts=4)
    new = dirichlet_mixtures(4, DOMAINS, seed=1)
    pd.testing.assert_frame_equal(a.predict(mixtures=new, seed=1), b.predict(mixtures=new, seed=1))
    with pytest.raises(ValueError, match="n_boot must be an integer >= 2, got 1"):
        bootstrap(runs, "mix", seed=0, n_boot=1)
    with pytest.raises(ValueError, match="kind must be one of"):
        a.predict(mixtures=new, kind="nope")
    with pytest.raises(ValueError, match=r"prob must lie in \(0, 1\)"):
        a.predict(mixtures=new, prob=1.5)
    with pytest.raises(KeyError, match="unknown law"):
        bootstrap(runs, "nope", seed=0)


def test_held_out_scores_a_bootstrap_like_a_posterior(boot):
    out = held_out(boot, m4_runs(25, 3, "t"))
    assert out["n_test"] == 25 and out["test_mae"] < 0.05
    assert 0.6 <= out["test_cover90"] <= 1.0


@pytest.mark.slow
def test_bootstrap_of_other_laws_and_overall_residuals():
    mixtures = dirichlet_mixtures(30, DOMAINS, seed=4)
    rows = []
    for e, shift in (("x", 0.0), ("y", 0.5)):
        y = 1.8 + shift + np.exp(-0.3 + mixtures.to_numpy() @ T)
        rows.append(pd.DataFrame({"run": [f"r{i}" for i in range(30)], "size": 1000, "step": 100, "eval": e,
                                  "loss": y + 0.02 * np.random.default_rng(len(rows)).standard_normal(30),
                                  **{c: mixtures[c].to_numpy() for c in mixtures}}))
    result = bootstrap(pd.concat(rows), "mix", seed=0, n_boot=10, n_starts=4)
    assert isinstance(result, BootstrapResult)
    assert set(result.residuals) == {"x", "y", "overall", "_all"}
    tab = result.predict(mixtures=dirichlet_mixtures(3, DOMAINS, seed=2))
    assert tab["eval"].tolist() == ["x", "y", "overall"] * 3
    m1 = bootstrap(rows[0], "m1", seed=0, n_boot=5, n_starts=4)
    assert m1.predict(mixtures=mixtures.iloc[:3])["eval"].tolist() == ["x"] * 3
