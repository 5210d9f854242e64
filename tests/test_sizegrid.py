"""The size stage by quadrature: recovery of known per-domain exponents and target-size losses,
with a negative control, and the grid's shapes and checks (no Markov chain: fast tier)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from bayesmix.laws import get_law, resolve_priors
from bayesmix.pipeline import sizegrid
from bayesmix.pipeline import stages as st
from bayesmix.pipeline.nested import Pipeline
from bayesmix.pipeline.runners import lanes_failed, lanes_problem

SIZES = np.array([1e6, 2e6, 4e6, 8e6])
TARGET = 64e6
EXPONENTS = {"e1": 0.3, "e2": 0.5, "e3": 0.8}
SIGMA = 0.01
D = 20  # noisy datasets (lanes)


def truth(n_mixtures: int = 12, seed: int = 0, shares=(0.6, 0.8)) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per (mixture, eval) a floor share drawn from U(``shares``) and a level near 3 at the largest
    size; returns the curves (mixture, eval, floor, level) and the exact losses at SIZES (C, 4) and
    at TARGET (C,)."""
    rng = np.random.default_rng(seed)
    rows = [(f"m{m}", e, 3.0 * np.exp(0.1 * rng.standard_normal()), rng.uniform(*shares))
            for m in range(n_mixtures) for e in EXPONENTS]
    curves = pd.DataFrame(rows, columns=["mixture", "eval", "level", "share"])
    beta = curves["eval"].map(EXPONENTS).to_numpy()
    floor = (curves["level"] * curves["share"]).to_numpy()
    law = lambda n: floor[:, None] + (curves["level"].to_numpy() - floor)[:, None] * (n / SIZES.max()) ** -beta[:, None]  # noqa: E731
    return curves, law(SIZES), law(np.array([TARGET]))[:, 0]


def size_stage(curves: pd.DataFrame, losses: np.ndarray) -> st.Stage:
    """The pipeline's size stage over a run table of these curves (one run per mixture and size)."""
    rows = []
    for c, row in curves.iterrows():
        m = int(row["mixture"][1:])
        for j, size in enumerate(SIZES):
            rows.append({"run": f"{row['mixture']}s{j}", "size": int(size), "step": 1000, "eval": row["eval"],
                         "loss": losses[c, j], "mix.a": (m + 1) / 20, "mix.b": 1 - (m + 1) / 20})
    table = pd.DataFrame(rows)
    law = get_law("size_pooled")
    data = law.prepare(table, step=1000)
    return st.Stage("size", data, law.query(data, sizes=[TARGET]), np.arange(data.n_obs), resolve_priors("size"),
                    law_name=law.name)


def datasets(stage: st.Stage, curves: pd.DataFrame, losses: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` noisy copies (n, n_obs) of the exact losses, in the stage's observation order."""
    index = stage.data.obs_index
    key = dict(zip(zip(curves["mixture"], curves["eval"]), range(len(curves))))
    c = np.array([key[(m, e)] for m, e in zip(index["mixture"].astype(str), index["eval"].astype(str))])
    j = np.searchsorted(SIZES, index["size"].to_numpy(float))
    exact = losses[c, j]
    return exact[None] + SIGMA * np.random.default_rng(seed).standard_normal((n, exact.size))


@pytest.fixture(scope="module")
def fitted():
    curves, losses, at_target = truth()
    stage = sizegrid.grid_stage(size_stage(curves, losses))
    values = datasets(stage, curves, losses, D, seed=1)
    with jax.enable_x64(True):
        lanes, population, checks = sizegrid.fit_size_grid(stage, values, seed=0, n_draws=400)
        pred = st.predict_stage(stage, lanes.pooled())
    return curves, stage, lanes, population, checks, pred, at_target


def _covered(draws: np.ndarray, value: np.ndarray, prob: float = 0.9) -> np.ndarray:
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return (value >= lo) & (value <= hi)


def test_the_grid_recovers_each_domains_exponent_and_a_wrong_one_is_excluded(fitted):
    """90% intervals of the D x E exponents cover the truth at the nominal rate (within 3.5 binomial
    sd); moved to 1.5 times the truth they cover almost nothing (negative control)."""
    _, stage, lanes, _, checks, _, _ = fitted
    assert checks["ok"].all()
    ce = stage.data.arrays["curve_eval"]
    first = [int(np.flatnonzero(ce == e)[0]) for e in range(len(EXPONENTS))]
    draws = lanes.samples["exponent"][:, 0][..., first]  # (D, draws, E): one exponent per domain and dataset
    want = np.array([EXPONENTS[e] for e in stage.data.coords["eval"]])
    covered = _covered(np.moveaxis(draws, 1, 0), np.broadcast_to(want, (D, len(want))))
    assert abs(covered.mean() - 0.9) < 3.5 * np.sqrt(0.09 / covered.size), covered.mean()
    assert _covered(np.moveaxis(draws, 1, 0), np.broadcast_to(1.5 * want, (D, len(want)))).mean() < 0.05
    for e in range(len(EXPONENTS)):
        same = lanes.samples["exponent"][..., ce == e]
        assert np.all(same == same[..., :1])  # every curve of the domain shares it


def test_the_grid_covers_the_target_size_losses(fitted):
    curves, stage, _, _, _, pred, at_target = fitted
    labels = stage.query.labels
    key = dict(zip(zip(curves["mixture"], curves["eval"]), at_target))
    want = np.array([key[(m, e)] for m, e in zip(labels["mixture"].astype(str), labels["eval"].astype(str))])
    per_lane = pred.reshape(D, -1, pred.shape[-1])  # each dataset's own posterior: coverage at the nominal rate
    covered = np.stack([_covered(p, want) for p in per_lane])
    assert abs(covered.mean() - 0.9) < 0.1, covered.mean()  # curves of a dataset share its exponent: not independent
    assert _covered(pred, want + 0.1).mean() < 0.05  # negative control: 0.1 nats off is far outside


def test_the_floor_population_is_near_the_simulated_shares(fitted):
    """The shares were drawn from U(0.6, 0.8): mean 0.7, sd 0.058."""
    _, _, _, population, _, _, _ = fitted
    assert population["groups"] == list(EXPONENTS)
    assert np.allclose(population["floor_share_mu"], 0.7, atol=0.05)
    assert all(0.0 < v < 0.05 for v in population["floor_share_mu_sd"])
    assert all(0.05 <= v <= 0.2 for v in population["floor_share_sd"])


def test_the_population_sd_is_the_logit_sd_through_the_sigmoid_slope_and_never_zero():
    np.testing.assert_allclose(sizegrid.share_sd_of(0.5, 0.4), 0.1)
    np.testing.assert_allclose(sizegrid.share_sd_of(np.array([0.9, 0.2]), 1.0), [0.09, 0.16])
    assert sizegrid.share_sd_of(0.999, 0.025) == sizegrid.SHARE_SD_FLOOR


def test_curves_sharing_one_floor_share_get_a_tight_population_that_pins_the_target(fitted):
    """Every curve's floor at 0.9 of its level (four sizes, extrapolated 8x): the population's sd
    is a few thousandths (the shares' spread is 0) and the target-size losses are covered at the
    nominal rate; the fixture's shares, spread over U(0.6, 0.8) (sd 0.058), get a loose population
    (negative control)."""
    curves, losses, at_target = truth(shares=(0.9, 0.9), seed=3)
    stage = sizegrid.grid_stage(size_stage(curves, losses))
    values = datasets(stage, curves, losses, D, seed=2)
    with jax.enable_x64(True):
        lanes, population, _ = sizegrid.fit_size_grid(stage, values, seed=0, n_draws=200)
        pred = st.predict_stage(stage, lanes.pooled())
    assert np.allclose(population["floor_share_mu"], 0.9, atol=0.03)
    assert all(v < 0.02 for v in population["floor_share_sd"]), population["floor_share_sd"]
    assert all(v > 0.03 for v in fitted[3]["floor_share_sd"]), fitted[3]["floor_share_sd"]
    labels = stage.query.labels
    key = dict(zip(zip(curves["mixture"], curves["eval"]), at_target))
    want = np.array([key[(m, e)] for m, e in zip(labels["mixture"].astype(str), labels["eval"].astype(str))])
    per_lane = pred.reshape(D, -1, pred.shape[-1])
    assert abs(np.mean([_covered(p, want).mean() for p in per_lane]) - 0.9) < 0.1


def test_the_population_posterior_weighs_candidates_by_their_marginal_likelihood():
    """A hand-built posterior over three candidates: lanes draw each at its weight (one domain
    certain, the other split 3:1)."""
    population = {"share_mu": np.array([0.5, 0.7, 0.9]), "share_sd": np.array([0.05, 0.1, 0.2]),
                  "weight": np.array([[0.0, 0.75], [1.0, 0.0], [0.0, 0.25]])}
    mu, sd = sizegrid.lane_populations(population, 4000, seed=0)
    assert mu.shape == (4000, 2) and np.all(mu[:, 0] == 0.7) and np.all(sd[:, 0] == 0.1)
    assert abs(np.mean(mu[:, 1] == 0.5) - 0.75) < 0.03 and set(np.unique(mu[:, 1])) == {0.5, 0.9}
    np.testing.assert_array_equal(sd[:, 1] == 0.05, mu[:, 1] == 0.5)  # a candidate's mean and sd travel together


def test_the_marginal_likelihood_prefers_the_true_floor_population(fitted):
    """Negative control of the population: the true shares' population beats one centred 0.2 away."""
    curves, stage, _, _, _, _, _ = fitted
    _, losses, _ = truth()
    mean = datasets(stage, curves, losses, 1, seed=5)
    with jax.enable_x64(True):
        log_ev = sizegrid.grid_log_evidence(stage.data, np.repeat(mean, 2, axis=0), stage.priors,
                                            np.array([[0.7], [0.5]]), np.array([[0.06], [0.06]]))
    assert (log_ev[0] > log_ev[1] + 10).all()


def test_lanes_carry_one_chain_of_draws_per_dataset(fitted):
    _, stage, lanes, _, _, _, _ = fitted
    C, E = len(stage.data.coords["curve"]), int(stage.data.arrays["n_evals"])
    assert lanes.samples["level"].shape == (D, 1, 400, C) and lanes.samples["sigma"].shape == (D, 1, 400, E)
    assert lanes.n_lanes == D and not lanes.diverging.any()
    assert np.quantile(lanes.samples["sigma"], 0.05) < SIGMA < np.quantile(lanes.samples["sigma"], 0.95)
    assert stage.priors["student_df"] == float("inf")


def test_grid_inputs_hold_one_group_per_dataset_and_domain_with_the_smaller_domains_padded():
    """Drop one domain's curve: its group keeps the slot, masked, and its other slots hold its curves."""
    curves, losses, _ = truth(n_mixtures=3)
    keep = ~((curves["mixture"] == "m0") & (curves["eval"] == "e2")).to_numpy()
    stage = size_stage(curves[keep].reset_index(drop=True), losses[keep])
    values = np.tile(stage.data.y, (2, 1))
    curves_in, lo, hi, (slots, filled) = sizegrid.grid_inputs(stage.data, values, stage.priors, 0.7, 0.1)
    ce = stage.data.arrays["curve_eval"]
    np.testing.assert_array_equal(filled.sum(axis=1), np.bincount(ce))
    short = stage.data.coords["eval"].index("e2")
    assert filled.shape == (3, 3) and filled.sum() == 8 and not filled[short].all()
    for e in range(3):
        assert (ce[slots[e, filled[e]]] == e).all()
    assert curves_in["mask"].shape[:2] == (2 * 3, 3) and lo.shape == hi.shape == (6, 2)
    for d in range(2):  # group d * E + e; the short domain's last slot has no observation in either dataset
        assert not curves_in["mask"][d * 3 + short].any(axis=-1).all()
        assert all(curves_in["mask"][d * 3 + e].any(axis=-1).all() for e in range(3) if e != short)


def test_a_failing_grid_is_named_and_fails_the_stage():
    checks = {"ok": np.array([[True, False], [True, True]]), "edge_mass": np.array([[0.0, 0.2], [0.0, 0.0]]),
              "resolution": np.full((2, 2), 5.0)}
    summary = sizegrid.size_grid_summary(checks, ["e1", "e2"])
    assert summary["failed"] == ["dataset 0 / e2"] and summary["fail_fraction"] == 0.25
    assert lanes_failed(summary)
    assert "1 of 4 grids (one per dataset and eval domain)" in lanes_problem(summary)
    assert "dataset 0 / e2" in lanes_problem(summary)
    fine = sizegrid.size_grid_summary(dict(checks, ok=np.ones((2, 2), bool)), ["e1", "e2"])
    assert not lanes_failed(fine)


def test_an_unknown_size_sampler_is_refused():
    with pytest.raises(ValueError, match=r"size_sampler must be one of \('grid', 'nuts'\), got 'hmc'"):
        Pipeline(size_sampler="hmc")


def test_the_report_shows_a_grid_size_stage_as_exact_inference_with_its_checks():
    import types

    from bayesmix.report import build

    checks = {"ok": np.ones((4, 2), bool), "edge_mass": np.full((4, 2), 1e-7), "resolution": np.full((4, 2), 6.5)}
    result = types.SimpleNamespace(diagnostics={"size": sizegrid.size_grid_summary(checks, ["e1", "e2"])})
    row = build.stage_diagnostics(result).set_index("part").loc["size law (exact grid posterior per dataset and "
                                                                "eval domain)"]
    assert bool(row["ok"]) and row["lanes"] == 4
    assert row["notes"] == ("exact posterior by quadrature, no chains: largest posterior share on the grid's edge "
                            "1e-07, coarsest resolution 6.5 cells per posterior sd")
    assert build._size_sampler_text(Pipeline(size_sampler="grid")).startswith("exact posterior per dataset")
    assert build._size_sampler_text(Pipeline()).startswith("NUTS lanes")
