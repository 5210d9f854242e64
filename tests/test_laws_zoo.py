"""The law zoo: implicit aggregation, M1-M3, BiMix and the multi-scale M4.

Exact values of every mean function on hand-built inputs, point-fit recovery of
noiseless truths, NUTS recovery of predictions with a misspecified law as the
negative control, and every error message.
"""

import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from bayesmix.data.table import RunTableError
from bayesmix.inference.fit import diagnostic_vars, fit
from bayesmix.laws import get_law
from bayesmix.laws.alternatives import m1_mean, m2_mean, m3_mean
from bayesmix.laws.bimix import bimix_mean
from bayesmix.laws.implicit import ImplicitLaw, implicit_mean
from bayesmix.laws.priors import resolve_priors
from bayesmix.data.simulate import dirichlet_mixtures

pytestmark = pytest.mark.slow  # NUTS recovery of known parameters: the slow tier

SAMPLER = dict(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)
DOMAINS = ["a", "b", "c"]


def table(mixtures: pd.DataFrame, loss: np.ndarray, *, size=1000, step=100, eval_name="val", prefix="r"):
    return pd.DataFrame({"run": [f"{prefix}{i}" for i in range(len(loss))], "size": size, "step": step,
                         "eval": eval_name, "loss": loss, **{c: mixtures[c].to_numpy() for c in mixtures}})


def quiet_fit(runs, law, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(runs, law, seed=0, sampler=SAMPLER, **options)


def coverage_of(result, mixtures, truth):
    tab = result.predict(mixtures=mixtures, kind="mean")
    return float(((tab["lower"] <= truth) & (truth <= tab["upper"])).mean()), tab


# ---------------------------------------------------------------- exact means

def test_implicit_mean_equals_the_papers_form_through_natural_parameters():
    rng = np.random.default_rng(0)
    r = rng.dirichlet(np.ones(3), size=5)
    r0 = r.mean(axis=0)
    params = {"level": np.array(3.0), "floor": np.array(1.2), "weight": np.array([0.2, 0.3, 0.5]),
              "t": np.array([[1.0, -0.5, -0.5], [-2.0, 1.0, 1.0], [0.3, 0.3, -0.6]])}
    with jax.enable_x64(True):
        ours = np.asarray(implicit_mean(r - r0, **params))
    nat = ImplicitLaw.natural_parameters(params, r0)
    papers = (nat["s"][None] * (nat["c"][None] + np.exp(nat["b"][None] + r @ nat["t"].T))).sum(axis=1)
    np.testing.assert_allclose(ours, papers, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(implicit_mean(np.zeros((1, 3)), **params)), [3.0])  # level at r0


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_alternative_means_on_hand_built_inputs(x64):
    r = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    r0 = np.array([0.3, 0.3, 0.4])
    t = np.array([1.0, -2.0, 0.5])
    # M1: floor + (level - floor) sum_j e^{t_j r_j} / sum_j e^{t_j r0_j}
    expected = 1.0 + 2.0 * np.exp(r * t).sum(1) / np.exp(r0 * t).sum()
    np.testing.assert_allclose(np.asarray(m1_mean(r, r0, 3.0, 1.0, t)), expected)
    natural = get_law("m1").natural_parameters({"level": np.array(3.0), "floor": np.array(1.0), "t": t}, r0)
    np.testing.assert_allclose(natural["c"] + natural["k"] * np.exp(r * t).sum(1), expected)
    # M2: floor + (level - floor) sum_j w_j e^{t_j (r_j - r0_j)} and c + sum_j k_j e^{t_j r_j}
    w = np.array([0.2, 0.3, 0.5])
    expected = 1.0 + 2.0 * (np.exp((r - r0) * t) @ w)
    np.testing.assert_allclose(np.asarray(m2_mean(r, r0, 3.0, 1.0, w, t)), expected)
    natural = get_law("m2").natural_parameters({"level": np.array(3.0), "floor": np.array(1.0), "weight": w,
                                                "t": t}, r0)
    np.testing.assert_allclose(natural["c"] + np.exp(r * t) @ natural["k"], expected)
    # M3: c + k exp(t prod_j r_j); the first mixture has a zero, so only the constant remains
    u = 0.7
    natural = get_law("m3").natural_parameters({"level": np.array(3.0), "floor": np.array(1.0), "t": np.array(u)}, r0)
    expected = natural["c"] + natural["k"] * np.exp(natural["t"] * r.prod(axis=1))
    np.testing.assert_allclose(np.asarray(m3_mean(r, r0, 3.0, 1.0, u)), expected)
    assert np.isclose(expected[0], 1.0 + 2.0 * np.exp(-u))


def test_bimix_mean_and_natural_parameters(x64):
    r, s = np.array([0.1, 0.4]), np.array([500.0, 2000.0])
    A, alpha, B, beta, C = 2.0, 0.1, 30.0, 0.5, 0.9
    truth = A * r**-alpha * (B * s**-beta + C)
    r_ref, s_ref = 0.2, 2000.0
    level = A * r_ref**-alpha * (B * s_ref**-beta + C)
    share = C / (B * s_ref**-beta + C)
    ours = np.asarray(bimix_mean(r / r_ref, s / s_ref, level, alpha, share, beta))
    np.testing.assert_allclose(ours, truth, rtol=1e-12)
    nat = get_law("bimix").natural_parameters(
        {"level": np.array([level]), "alpha": np.array([alpha]), "share": np.array([share]), "beta": np.array([beta])},
        {"r_ref": [r_ref], "s_ref": s_ref})
    # identifiable up to the normalisation B S_ref^-beta + C = 1: A*B and A*C are recovered
    np.testing.assert_allclose(nat["A"] * nat["B"], [A * B], rtol=1e-12)
    np.testing.assert_allclose(nat["A"] * nat["C"], [A * C], rtol=1e-12)


def test_every_new_law_has_documented_priors():
    for name in ("implicit", "m1", "m2", "m3", "bimix", "multiscale"):
        priors = resolve_priors(name)
        assert priors["student_df"] > 0 and priors["noise_scale"] > 0
    with pytest.raises(KeyError, match="unknown prior name"):
        resolve_priors("implicit", {"latent": 30})


# ---------------------------------------------------------------- implicit aggregation

def three_latent_truth(r):
    """Two latent domains pulling towards opposite corners: a U-shaped loss no single
    exponential (M4) can follow."""
    s = np.array([0.45, 0.45, 0.1])
    b = np.array([0.0, 0.0, 0.5])
    t = np.array([[-4.0, 2.0, 2.0], [2.0, -4.0, 2.0], [1.0, 1.0, -2.0]])
    return 2.0 + (np.exp(b[None] + r @ t.T) @ s)


@pytest.fixture(scope="module")
def implicit_case():
    mixtures = dirichlet_mixtures(40, DOMAINS, seed=11)
    rng = np.random.default_rng(12)
    y = three_latent_truth(mixtures.to_numpy()) + 0.01 * rng.standard_normal(40)
    runs = table(mixtures, y)
    new = dirichlet_mixtures(25, DOMAINS, seed=13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs, "implicit", seed=0, latent=4,
                     sampler=dict(SAMPLER, max_tree_depth=8))
    return runs, new, three_latent_truth(new.to_numpy()), result


def test_implicit_recovers_three_latent_predictions_within_intervals(implicit_case):
    _, new, truth, result = implicit_case
    covered, tab = coverage_of(result, new, truth)
    assert covered >= 0.7
    assert np.mean(np.abs(tab["mean"] - truth)) < 0.015
    assert result.diagnostics.divergences <= 5


def test_implicit_negative_control_single_exponential_misses(implicit_case):
    runs, new, truth, result = implicit_case
    covered, tab = coverage_of(quiet_fit(runs, "mix"), new, truth)
    assert covered < 0.5
    implicit_error = np.mean(np.abs(coverage_of(result, new, truth)[1]["mean"] - truth))
    assert np.mean(np.abs(tab["mean"] - truth)) > 3 * implicit_error


def test_implicit_convergence_is_judged_on_label_invariant_predictions(implicit_case):
    _, _, _, result = implicit_case
    assert diagnostic_vars(result.law) == ["fitted", "level", "floor", "sigma"]
    fitted = result.idata.posterior["fitted"]
    assert fitted.dims == ("chain", "draw", "run") and fitted.sizes["run"] == 40
    weights = result.posterior()["weight"]
    assert weights.shape[1] == 4
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # labels are exchangeable: permuting the latent domains of a draw leaves its predictions unchanged
    draw = {k: v[0] for k, v in result.posterior().items()}
    x = np.asarray(result.data.arrays["r_centered"])
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(
        np.asarray(implicit_mean(x, draw["level"], draw["floor"], draw["weight"][perm], draw["t"][perm])),
        draw["fitted"], rtol=1e-6)
    assert result.idata.posterior["t"].dims == ("chain", "draw", "latent", "domain")


def test_implicit_rejects_a_bad_latent_count():
    runs = table(dirichlet_mixtures(10, DOMAINS, seed=0), np.linspace(2, 3, 10))
    with pytest.raises(ValueError, match="latent must be a positive integer, got 0"):
        get_law("implicit").prepare(runs, latent=0)


def test_overall_target_is_the_weighted_sum_of_evals():
    mixtures = dirichlet_mixtures(8, DOMAINS, seed=1)
    runs = pd.concat([table(mixtures, np.full(8, 2.0), eval_name="x"), table(mixtures, np.full(8, 4.0), eval_name="y")])
    data = get_law("m1").prepare(runs, weights={"x": 0.25, "y": 0.75})
    np.testing.assert_allclose(data.y, 3.5)
    assert data.meta["target"] == "overall"
    with pytest.raises(RunTableError, match=r"needs every run's loss on each eval domain \['x', 'y'\]; run\(s\) \['r0'\]"):
        get_law("m1").prepare(runs.iloc[1:])
    with pytest.raises(RunTableError, match=r"unknown eval domain\(s\) \['z'\]; the table has"):
        get_law("m1").prepare(runs, evals=["z"])
    with pytest.raises(RunTableError, match="needs at least 5 distinct mixtures for 3 domains, the table has 4"):
        get_law("m2").prepare(runs[runs["run"].isin(["r0", "r1", "r2", "r3"])])
    with pytest.raises(RunTableError, match="fits one model size"):
        get_law("implicit").prepare(pd.concat([runs, runs.assign(size=2000, run=runs["run"] + "b")]))


# ---------------------------------------------------------------- M1-M3

def m2_truth(r):
    k, t = np.array([0.8, 0.5, 0.3]), np.array([-3.0, -1.0, 2.0])
    return 1.5 + np.exp(r * t) @ k


def test_m1_and_m2_point_fits_recover_noiseless_truths():
    mixtures = dirichlet_mixtures(30, DOMAINS, seed=4)
    r = mixtures.to_numpy()
    k, t = 0.6, np.array([-2.0, 0.5, 1.5])
    law = get_law("m1")
    data = law.prepare(table(mixtures, 1.8 + k * np.exp(r * t).sum(1)))
    with jax.enable_x64(True):
        natural = law.natural_parameters(law.point_fit(data, seed=0, n_starts=16), data.arrays["r0"])
    np.testing.assert_allclose(natural["t"], t, atol=2e-2)
    np.testing.assert_allclose(natural["c"], 1.8, atol=2e-2)
    law = get_law("m2")
    data = law.prepare(table(mixtures, m2_truth(r)))
    with jax.enable_x64(True):
        point = law.point_fit(data, seed=0, n_starts=16)
    new = dirichlet_mixtures(10, DOMAINS, seed=5)
    pred = law.mean_draws({k: np.asarray(v)[None] for k, v in point.items()}, law.query(data, mixtures=new), data.meta)
    np.testing.assert_allclose(pred[0], m2_truth(new.to_numpy()), atol=5e-3)


@pytest.fixture(scope="module")
def m2_case():
    mixtures = dirichlet_mixtures(30, DOMAINS, seed=6)
    y = m2_truth(mixtures.to_numpy()) + 0.01 * np.random.default_rng(7).standard_normal(30)
    new = dirichlet_mixtures(20, DOMAINS, seed=8)
    return table(mixtures, y), new, m2_truth(new.to_numpy())


def test_m2_recovers_predictions_within_intervals(m2_case):
    runs, new, truth = m2_case
    covered, tab = coverage_of(quiet_fit(runs, "m2"), new, truth)
    assert covered >= 0.8
    assert np.mean(np.abs(tab["mean"] - truth)) < 0.02


def test_m3_negative_control_misses_an_m2_truth(m2_case):
    runs, new, truth = m2_case
    covered, _ = coverage_of(quiet_fit(runs, "m3"), new, truth)
    assert covered < 0.5


def test_m1_recovers_its_truth_and_the_interactions():
    mixtures = dirichlet_mixtures(30, DOMAINS, seed=9)
    t = np.array([-2.0, 0.5, 1.5])
    truth = 1.8 + 0.6 * np.exp(mixtures.to_numpy() * t).sum(1)
    result = quiet_fit(table(mixtures, truth + 0.01 * np.random.default_rng(1).standard_normal(30)), "m1")
    post = result.posterior()["t"]
    lo, hi = np.quantile(post, [0.05, 0.95], axis=0)
    assert np.all((lo <= t) & (t <= hi))
    wrong = t + np.array([1.0, -0.5, -0.5])  # a different law
    assert np.sum((lo <= wrong) & (wrong <= hi)) <= 1


def test_m3_refuses_a_domain_that_is_never_used():
    mixtures = dirichlet_mixtures(10, ["a", "b"], seed=0).assign(**{"mix.c": 0.0})
    with pytest.raises(RunTableError, match=r"law 'm3' multiplies every domain's proportion; domain\(s\) \['c'\]"):
        get_law("m3").prepare(table(mixtures, np.linspace(2, 3, 10)))


# ---------------------------------------------------------------- BiMix

BIMIX_TRUTH = {"a": (2.2, 0.08, 40.0, 0.5, 1.0), "b": (2.6, 0.15, 30.0, 0.45, 1.0)}  # A, alpha, B, beta, C


def bimix_runs(n_mix=12, steps=(500, 1000, 2000, 4000, 8000), seed=0, noise=0.005):
    rng = np.random.default_rng(seed)
    mixtures = dirichlet_mixtures(n_mix, DOMAINS, seed=seed, concentration=3.0)
    rows = []
    for i, mix in enumerate(mixtures.to_dict(orient="records")):
        for s in steps:
            for e, (A, alpha, B, beta, C) in BIMIX_TRUTH.items():
                loss = A * mix[f"mix.{e}"] ** -alpha * (B * s**-beta + C) + noise * rng.standard_normal()
                rows.append({"run": f"r{i}", "size": 1000, "step": s, "eval": e, "loss": loss, **mix})
    return pd.DataFrame(rows)


def bimix_truth(mixtures, step):
    return np.array([[A * m[f"mix.{e}"] ** -alpha * (B * step**-beta + C) for e, (A, alpha, B, beta, C)
                      in BIMIX_TRUTH.items()] for m in mixtures.to_dict(orient="records")])


def test_bimix_recovers_exponents_and_extrapolates_in_steps():
    result = quiet_fit(bimix_runs(), "bimix")
    alpha = np.array([v[1] for v in BIMIX_TRUTH.values()])
    post = result.posterior()["alpha"]
    lo, hi = np.quantile(post, [0.05, 0.95], axis=0)
    assert np.all((lo <= alpha) & (alpha <= hi))
    assert not np.any((lo <= alpha + 0.05) & (alpha + 0.05 <= hi))  # negative control: a wrong exponent
    new = dirichlet_mixtures(10, DOMAINS, seed=50, concentration=3.0)
    tab = result.predict(mixtures=new, steps=[8000, 16000], kind="mean")
    assert tab.columns[:3].tolist() == ["mixture", "step", "eval"]
    per_eval = tab[tab["eval"] != "overall"]
    at_last = per_eval[per_eval["step"] == 8000]
    truth = bimix_truth(new, 8000).ravel()
    # new mixtures at the last observed step: within 3 posterior sd (errors of one eval share its level)
    assert np.all(np.abs(at_last["mean"].to_numpy() - truth) <= 3 * at_last["sd"].to_numpy())
    beyond = per_eval[per_eval["step"] == 16000]["mean"].to_numpy()
    np.testing.assert_allclose(beyond, bimix_truth(new, 16000).ravel(), rtol=5e-3)  # 2x the last step
    overall = tab[tab["eval"] == "overall"]["mean"].to_numpy()
    np.testing.assert_allclose(overall, per_eval["mean"].to_numpy().reshape(-1, 2).mean(axis=1))


def test_bimix_rejects_zero_proportions_unless_epsilon_is_given():
    runs = bimix_runs(n_mix=6, steps=(1000,))
    rows = runs["run"] == "r2"
    runs.loc[rows, "mix.c"] += runs.loc[rows, "mix.a"]
    runs.loc[rows, "mix.a"] = 0.0
    law = get_law("bimix")
    with pytest.raises(RunTableError, match=r"own training proportion r_e > 0 .*run\(s\) \['r2'\] have a zero share "
                                            r"of their eval domain\(s\) \['a'\]\. Pass epsilon="):
        law.prepare(runs)
    data = law.prepare(runs, epsilon=1e-3)
    assert data.meta["epsilon"] == 1e-3 and not data.meta["fit_steps"]
    assert np.isclose(data.arrays["r_scaled"].min() * data.meta["r_ref"][0], 1e-3)
    with pytest.raises(ValueError, match=r"epsilon must lie in \(0, 1\), got 0"):
        law.prepare(runs, epsilon=0)


def test_bimix_errors_name_the_problem():
    runs = bimix_runs(n_mix=6, steps=(1000,))
    law = get_law("bimix")
    with pytest.raises(RunTableError, match=r"eval 'x' -> 'x' matches no mix.<domain> column .* pass domains="):
        law.prepare(runs.assign(eval=runs["eval"].replace("a", "x")))
    data = law.prepare(runs.assign(eval=runs["eval"].replace("a", "x")), domains={"x": "a"})
    assert data.meta["own_domains"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"domains= names eval domain\(s\) \['q'\] not fitted"):
        law.prepare(runs, domains={"q": "a"})
    with pytest.raises(ValueError, match="saw one checkpoint .* cannot predict other steps"):
        law.query(data, mixtures=dirichlet_mixtures(2, DOMAINS, seed=1), steps=[5000])
    zero = pd.DataFrame({"mix.a": [0.0], "mix.b": [0.5], "mix.c": [0.5]})
    with pytest.raises(RunTableError, match=r"mixture\(s\) \['q0'\] have a zero share .* no epsilon"):
        law.query(data, mixtures=zero)


# ---------------------------------------------------------------- hierarchy across scales

SCALE_T = np.array([-1.5, 0.5, 1.0])


def scale_runs(seed=0):
    """A cheap scale with 30 mixtures and an expensive one with 6; same interactions (plus a small
    shift at the large scale), different floors and levels."""
    rng = np.random.default_rng(seed)
    small = dirichlet_mixtures(30, DOMAINS, seed=seed + 1)
    large = dirichlet_mixtures(6, DOMAINS, seed=seed + 2)
    t_large = SCALE_T + np.array([0.1, -0.05, -0.05])
    parts = []
    for mix, (size, c, b, t, label) in [(small, (1_000_000, 2.0, 0.0, SCALE_T, "s")),
                                        (large, (100_000_000, 1.5, -0.4, t_large, "l"))]:
        y = c + np.exp(b + mix.to_numpy() @ t) + 0.01 * rng.standard_normal(len(mix))
        parts.append(table(mix, y, size=size, step=1000, prefix=label))
    return pd.concat(parts, ignore_index=True), t_large


def test_multiscale_borrows_strength_for_the_sparse_scale():
    runs, t_large = scale_runs()
    result = quiet_fit(runs, "multiscale")
    post = result.posterior()["t"]  # (draws, group, eval, domain)
    assert result.data.coords["group"] == ["size=1000000,step=1000", "size=100000000,step=1000"]
    lo, hi = np.quantile(post[:, 1, 0], [0.05, 0.95], axis=0)
    assert np.all((lo <= t_large) & (t_large <= hi))
    wrong = t_large + np.array([1.0, -0.5, -0.5])
    assert np.sum((lo <= wrong) & (wrong <= hi)) <= 1
    new = dirichlet_mixtures(15, DOMAINS, seed=77)
    tab = result.predict(mixtures=new, kind="mean")
    large = tab[tab["size"] == 100_000_000]
    truth = 1.5 + np.exp(-0.4 + new.to_numpy() @ t_large)
    assert ((large["lower"].to_numpy() <= truth) & (truth <= large["upper"].to_numpy())).mean() >= 0.8
    # pooling beats fitting the 6 expensive runs alone
    alone = quiet_fit(runs[runs["size"] == 100_000_000], "mix").predict(mixtures=new, kind="mean")
    assert np.mean(np.abs(large["mean"].to_numpy() - truth)) < np.mean(np.abs(alone["mean"].to_numpy() - truth))
    assert np.mean(large["upper"] - large["lower"]) < np.mean(alone["upper"] - alone["lower"])


def test_multiscale_errors():
    runs, _ = scale_runs()
    law = get_law("multiscale")
    with pytest.raises(RunTableError, match=r"pools across \(size, step\) groups and the rows form one .* use law 'mix'"):
        law.prepare(runs[runs["size"] == 1_000_000])
    thin = pd.concat([runs[runs["size"] == 1_000_000], runs[runs["size"] == 100_000_000].iloc[:2]])
    with pytest.raises(RunTableError, match=r"at least 3 distinct mixtures per \(size, step\) group; \[\(100000000, 1000\)\]"):
        law.prepare(thin)
    with pytest.raises(ValueError, match="predicts at mixtures="):
        law.query(law.prepare(runs), steps=[1])


def test_m4_draws_in_numpy_and_jax_equal_the_per_draw_formula(x64):
    from bayesmix.laws.mixing import m4_draws, m4_mean

    rng = np.random.default_rng(1)
    r = rng.dirichlet(np.ones(3), size=4) - 1 / 3
    level, floor, t = rng.uniform(2, 3, (5, 2)), rng.uniform(0.5, 1.5, (5, 2)), rng.normal(size=(5, 2, 3))
    by_draw = np.stack([np.asarray(m4_mean(r, level[d], floor[d], t[d])) for d in range(5)])
    np.testing.assert_allclose(np.asarray(m4_draws(r, level, floor, t)), by_draw, rtol=1e-12)
    np.testing.assert_allclose(m4_draws(r, level, floor, t, np), by_draw, rtol=1e-12)
