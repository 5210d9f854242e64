"""Posterior recovery of known parameters, with negative controls.

Each law is fitted with NUTS to data simulated from known parameters. The truth
must lie inside the 90% posterior interval; a deliberately wrong truth (or a
misspecified model) must not.
"""

import numpy as np
import pandas as pd
import pytest

from bayesmix.inference.fit import fit
from bayesmix.data.simulate import dirichlet_mixtures, simulate_curves, simulate_mixing

pytestmark = pytest.mark.slow  # NUTS recovery of known parameters: the slow tier

SAMPLER = dict(num_chains=2, num_warmup=400, num_samples=400)


def interval(draws: np.ndarray, prob: float = 0.9):
    return np.quantile(draws, (1 - prob) / 2, axis=0), np.quantile(draws, (1 + prob) / 2, axis=0)


def inside(truth, draws, prob=0.9):
    lo, hi = interval(draws, prob)
    return (lo <= truth) & (truth <= hi)


@pytest.fixture(scope="module")
def mixing_case():
    mixtures = dirichlet_mixtures(24, ["web", "code", "books"], seed=3)
    truth = {
        "c": np.array([2.0, 1.5]),
        "b": np.array([0.0, -0.3]),
        "t": np.array([[-1.0, 0.5, 0.5], [0.8, -1.2, 0.4]]),
    }
    runs = simulate_mixing(mixtures, evals=["web", "code"], noise=0.01, seed=4, **truth)
    result = fit(runs, "mix", seed=0, sampler=SAMPLER)
    # The run table orders eval domains by name; line the truth up with the fit's labels.
    order = [["web", "code"].index(e) for e in result.data.coords["eval"]]
    return {name: value[order] for name, value in truth.items()}, runs, result


def test_mixing_law_recovers_interactions_and_floors(mixing_case):
    truth, _, result = mixing_case
    post = result.posterior()
    assert inside(truth["t"], post["t"]).all()
    assert inside(truth["c"], post["floor"]).all()
    assert result.diagnostics.divergences == 0


def test_mixing_law_negative_control_wrong_truth_is_excluded(mixing_case):
    truth, _, result = mixing_case
    post = result.posterior()
    wrong = truth["t"].copy()
    wrong[0] += np.array([0.6, -0.3, -0.3])  # still sums to zero, but a different law
    assert (~inside(wrong, post["t"])[0]).sum() >= 2


def test_mixing_law_predicts_new_mixtures_within_intervals(mixing_case):
    truth, _, result = mixing_case
    new = dirichlet_mixtures(20, ["web", "code", "books"], seed=99)
    r = new.to_numpy()
    expected = truth["c"][None, :] + np.exp(truth["b"][None, :] + r @ truth["t"].T)
    evals = result.data.coords["eval"]
    table = result.predict(mixtures=new, kind="mean")
    per_eval = table[table["eval"] != "overall"]
    got = per_eval.pivot(index="mixture", columns="eval", values="mean").loc[[f"q{i}" for i in range(20)], evals]
    np.testing.assert_allclose(got.to_numpy(), expected, atol=0.03)
    lo = per_eval.pivot(index="mixture", columns="eval", values="lower").loc[got.index, evals].to_numpy()
    hi = per_eval.pivot(index="mixture", columns="eval", values="upper").loc[got.index, evals].to_numpy()
    assert ((lo <= expected) & (expected <= hi)).mean() >= 0.8


def test_misspecified_mixing_law_misses_the_truth():
    """Negative control: a linear truth fitted with one eval's exponential law and
    very tight priors on the noise cannot put the truth inside its intervals."""
    mixtures = dirichlet_mixtures(24, ["a", "b", "c"], seed=5)
    r = mixtures.to_numpy()
    truth = 3.0 - 2.5 * r[:, 0] ** 2 + 1.0 * np.sin(6 * r[:, 1])  # far from c + exp(b + t.r)
    runs = pd.DataFrame({"run": [f"r{i}" for i in range(24)], "size": 1000, "step": 10, "eval": "val",
                         "loss": truth, **{c: mixtures[c] for c in mixtures.columns}})
    result = fit(runs, "mix", seed=0, sampler=SAMPLER, priors={"noise_scale": 0.001})
    table = result.predict(mixtures=mixtures, kind="mean")
    covered = ((table["lower"] <= truth) & (truth <= table["upper"])).mean()
    assert covered < 0.5


def test_step_law_recovers_exponents_and_extrapolates():
    steps = np.geomspace(2000, 30000, 10).astype(int)
    E = np.array([2.0, 2.2, 2.4, 2.1])
    A = np.array([30.0, 40.0, 50.0, 35.0])
    alpha = np.array([0.45, 0.5, 0.55, 0.5])
    runs = simulate_curves(runs=["a", "b", "c", "d"], steps=steps, E=E, A=A, alpha=alpha, noise=0.003, seed=1)
    result = fit(runs, "step", seed=0, sampler=SAMPLER)
    post = result.posterior()
    assert inside(alpha, post["exponent"]).all()
    target = 100_000
    table = result.predict(steps=[target], kind="mean")
    expected = E + A * target ** -alpha
    assert ((table["lower"] <= expected) & (expected <= table["upper"])).sum() >= 3  # 90% intervals, 4 curves
    # negative control: a wrong exponent's extrapolation falls outside the interval
    wrong = E + A * target ** -(alpha + 0.25)
    assert not ((table["lower"] <= wrong) & (wrong <= table["upper"])).any()
    assert set(table.columns) >= {"run", "eval", "size", "step", "mean", "sd", "lower", "upper"}


def test_size_law_recovers_the_target_size_loss():
    sizes = np.array([1e6, 3e6, 1e7, 3e7])
    rows = []
    rng = np.random.default_rng(0)
    truth = {"m0": (1.8, 60.0, 0.3), "m1": (2.0, 70.0, 0.32), "m2": (1.9, 50.0, 0.28)}
    mixes = {"m0": (0.7, 0.3), "m1": (0.5, 0.5), "m2": (0.2, 0.8)}
    for m, (E, B, beta) in truth.items():
        for n in sizes:
            loss = E + B * n ** -beta + 0.003 * rng.standard_normal()
            rows.append({"run": f"{m}-{int(n)}", "size": int(n), "step": 1000, "eval": "val", "loss": loss,
                         "mix.a": mixes[m][0], "mix.b": mixes[m][1]})
    result = fit(pd.DataFrame(rows), "size", seed=0, sampler=SAMPLER)
    table = result.predict(sizes=[1e9], kind="mean")
    expected = np.array([E + B * 1e9 ** -beta for E, B, beta in truth.values()])
    assert ((table["lower"] <= expected) & (expected <= table["upper"])).sum() >= 2  # 90% intervals, 3 curves
    np.testing.assert_allclose(table["mean"], expected, atol=0.03)
    # negative control: exponents 0.1 smaller give losses the intervals exclude
    wrong = np.array([E + B * 1e9 ** -(beta - 0.1) for E, B, beta in truth.values()])
    assert not ((table["lower"] <= wrong) & (wrong <= table["upper"])).any()
    assert table["mixture"].tolist() == ["m0", "m1", "m2"]
