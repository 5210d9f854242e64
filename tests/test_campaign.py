"""The closed experiment loop: pool and function runners, bounds, crash and resume, external
jobs, argument checks, and one round with the default NUTS fit.

Most tests use :class:`CheapFit`, a least-squares surrogate that returns posterior-like
draws of a linear loss in seconds, so that the loop itself (what is saved, when, and what
a resumed campaign does) is under test rather than the sampler.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayesmix.design import candidates as cand
from bayesmix.design.campaign import SEED_STRIDE, Campaign, CampaignError, default_fit_fn, pool_runner, proxy_runner
from bayesmix.data.table import validate_runs
from bayesmix.decide.simplex import SimplexBounds
from bayesmix.data.simulate import dirichlet_mixtures, m4_losses, simulate_mixing

DOMAINS = ["web", "code", "books"]
COLS = [f"mix.{d}" for d in DOMAINS]
EVALS = ["val"]
TRUTH = {"c": np.array([2.0]), "b": np.array([-0.5]), "t": np.array([[1.0, -1.0, 0.2]])}
N_POOL = 30
N_FIRST = 6
Q = 2
SEED = 3


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def pool_table() -> pd.DataFrame:
    """30 Dirichlet mixtures of 3 domains, one M4 loss each at a single (size, step): runs r000..r029."""
    mixtures = dirichlet_mixtures(N_POOL, DOMAINS, seed=0)
    return simulate_mixing(mixtures, **TRUTH, evals=EVALS, noise=0.01, seed=1)


def first_runs(table: pd.DataFrame, n: int = N_FIRST) -> pd.DataFrame:
    """The rows of the first ``n`` runs of the pool (the campaign's initial table)."""
    names = sorted(table["run"].unique())[:n]
    return table[table["run"].isin(names)].reset_index(drop=True)


class CheapFit:
    """A fit function: least squares of the per-run mean loss on the mixture, returned as a
    draws function ``r (n, M) -> (64, n)`` (the coefficients plus seeded noise). It records
    each call's seed and number of runs."""

    n_draws = 64

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def coefficients(self, runs: pd.DataFrame, seed: int) -> np.ndarray:
        per_run = runs.groupby("run").agg(loss=("loss", "mean"), **{c: (c, "first") for c in COLS})
        beta, *_ = np.linalg.lstsq(per_run[COLS].to_numpy(float), per_run["loss"].to_numpy(float), rcond=None)
        noise = np.random.default_rng(seed).standard_normal((self.n_draws, len(COLS)))
        return beta[None, :] + 0.05 * noise

    def __call__(self, runs: pd.DataFrame, seed: int):
        self.calls.append((int(seed), int(runs["run"].nunique())))
        coef = self.coefficients(runs, seed)
        return lambda r: jnp.asarray(coef) @ r.T  # evaluated under float64 by the design code


class CountingRunner:
    """Wraps a runner; records the mixture labels of every call and can raise on call ``fail_on``
    (1-based), optionally after handing the first suggestion's rows to ``campaign.add_runs``
    (a crash in the middle of a run phase, after part of the batch was saved)."""

    def __init__(self, inner, *, fail_on: int | None = None, save_first: bool = False):
        self.inner, self.fail_on, self.save_first = inner, fail_on, save_first
        self.calls: list[list[str]] = []
        self.campaign: Campaign | None = None

    def __call__(self, suggestions: pd.DataFrame) -> pd.DataFrame:
        self.calls.append(suggestions["mixture"].astype(str).tolist())
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            if self.save_first:
                self.campaign.add_runs(self.inner(suggestions.iloc[:1]))
            raise RuntimeError("simulated crash of the training job")
        return self.inner(suggestions)


def failing_on(fn, n: int):
    """``fn`` that raises on its ``n``-th call (1-based): a fit that dies."""
    calls = []

    def wrapped(*args):
        calls.append(args)
        if len(calls) == n:
            raise RuntimeError("simulated crash of the fit")
        return fn(*args)

    return wrapped


def m4_runner(suggestions: pd.DataFrame) -> pd.DataFrame:
    """A user runner: the true M4 loss (no noise) of every suggested mixture, run named by its label."""
    loss = m4_losses(suggestions[COLS].to_numpy(float), TRUTH["c"], TRUTH["b"], TRUTH["t"])
    return pd.DataFrame([{"run": str(row["mixture"]), "size": 1_000_000, "step": 1000, "eval": EVALS[0],
                          "loss": float(loss[i, 0]), **{c: float(row[c]) for c in COLS}}
                         for i, (_, row) in enumerate(suggestions.iterrows())])


def pool_campaign(folder, table, *, runner="pool", fit_fn=None, **kwargs) -> Campaign:
    """A pool campaign over ``table`` starting from its first runs (q=2, seed 3)."""
    options = dict(runs=first_runs(table), q=Q, seed=SEED, pool=table, bounds=SimplexBounds(DOMAINS))
    options.update(kwargs)
    return Campaign.create(folder, runner=pool_runner(table) if runner == "pool" else runner,
                           fit_fn=fit_fn or CheapFit(), **options)


def comparable_history(campaign: Campaign) -> pd.DataFrame:
    """The history without wall-clock columns, columns by name (a resumed campaign reads them from
    JSON in sorted order)."""
    history = campaign.history.drop(columns=["time", "fit_seconds"])
    return history[sorted(history.columns)]


def pool_mixtures(table: pd.DataFrame) -> np.ndarray:
    """One mixture (row of ``mix.*``) per run."""
    return table.drop_duplicates("run")[COLS].to_numpy(float)


# ---------------------------------------------------------------- a pool campaign


@pytest.mark.slow
def test_pool_campaign_runs_two_rounds_of_q_pool_mixtures(tmp_path, pool_table):
    fit_fn = CheapFit()
    bounds = SimplexBounds(DOMAINS, r_max={"web": 0.5})
    campaign = pool_campaign(tmp_path / "c", pool_table, fit_fn=fit_fn, bounds=bounds)
    assert (campaign.round, campaign.phase) == (0, "fit")

    campaign.run(2)

    # stops after the fit of round 2, before suggesting again
    assert (campaign.round, campaign.phase) == (2, "suggest")
    assert fit_fn.calls == [(SEED + k * SEED_STRIDE, N_FIRST + k * Q) for k in range(3)]  # (seed, runs) per fit
    runs = campaign.runs
    assert runs["run"].nunique() == N_FIRST + 2 * Q
    assert len(runs) == (N_FIRST + 2 * Q) * len(EVALS)
    # every run is a pool run, revealed unchanged (losses included)
    expected = pool_table[pool_table["run"].isin(runs["run"])].sort_values("run").reset_index(drop=True)
    pd.testing.assert_frame_equal(runs[expected.columns].reset_index(drop=True), expected, check_dtype=False)
    assert cand.tv_distance(pool_mixtures(runs), pool_mixtures(pool_table)).min(axis=1).max() < 1e-9

    history = campaign.history
    assert len(history) == 2
    assert history["round"].tolist() == [1, 2]
    assert history["seed"].tolist() == [SEED, SEED + SEED_STRIDE]
    assert history["runs"].tolist() == [N_FIRST + Q, N_FIRST + 2 * Q]
    assert history["mixtures"].tolist() == [N_FIRST + Q, N_FIRST + 2 * Q]

    seen = first_runs(pool_table)["run"].unique().tolist()
    for k in range(2):
        sugg = campaign.suggestions(k)
        assert len(sugg) == Q and sugg["order"].tolist() == [1, 2]
        r = sugg[COLS].to_numpy(float)
        np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-9)
        assert bounds.is_feasible(r, tol=1e-9).all() and (r[:, 0] <= 0.5 + 1e-9).all()
        assert (sugg["start"] == "pool").all() and not sugg["refined"].any()
        # pool suggestions keep the pool's run names and are never re-runs
        assert set(sugg["mixture"]).isdisjoint(seen)
        assert history["suggested"].iloc[k] == sugg["mixture"].tolist()
        seen += sugg["mixture"].tolist()
        # the incumbent is the best posterior mean among the runs before round k
        before = runs[runs["run"].isin(seen[: N_FIRST + Q * k])]
        coef = fit_fn.coefficients(before, campaign.seed_of(k))
        means = (coef @ pool_mixtures(before).T).mean(axis=0)
        assert history["incumbent"].iloc[k] == pytest.approx(means.min(), rel=1e-9)
        # best observed loss once round k's runs are in
        after = runs[runs["run"].isin(seen)]
        assert history["best_observed"].iloc[k] == pytest.approx(after["loss"].min(), rel=1e-12)
        assert history["best_run"].iloc[k] == after.loc[after["loss"].idxmin(), "run"]
    assert sorted(seen) == sorted(runs["run"].unique())

    # everything on disk is plain JSON/Parquet/CSV
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    assert (state["round"], state["phase"], state["q"], state["custom_fit"]) == (2, "suggest", Q, True)
    assert sorted(p.name for p in (tmp_path / "c" / "suggestions").iterdir()) == [
        "round_000.csv", "round_000_landscape.csv", "round_001.csv", "round_001_landscape.csv"]
    landscape = campaign.landscape(1)  # the acquisition of every untried pool mixture within the bounds
    assert landscape["suggested"].sum() == Q and set(landscape.loc[landscape["suggested"], "mixture"]) == set(
        campaign.suggestions(1)["mixture"])
    assert not any((tmp_path / "c" / "fits").iterdir())  # a draws function has nothing to save


def test_run_counts_earlier_rounds_and_step_names_each_phase(tmp_path, pool_table):
    campaign = pool_campaign(tmp_path / "c", pool_table)
    assert [campaign.step() for _ in range(4)] == ["fit", "suggest", "run", "fit"]
    assert campaign.round == 1
    campaign.run(1)  # already done: nothing more
    assert (campaign.round, campaign.phase) == (1, "suggest")
    campaign.run(2)
    assert campaign.round == 2 and campaign.runs["run"].nunique() == N_FIRST + 2 * Q


def test_pool_design_opens_with_n_initial_pool_mixtures_within_the_bounds(tmp_path, pool_table):
    bounds = SimplexBounds(DOMAINS, r_max={"web": 0.3})
    assert not bounds.is_feasible(pool_mixtures(pool_table), tol=1e-6).all()  # the pool crosses the bound
    campaign = Campaign.create(tmp_path / "c", runner=pool_runner(pool_table), bounds=bounds, n_initial=8, q=Q,
                               seed=SEED, fit_fn=CheapFit(), pool=pool_table)
    assert campaign.phase == "design"
    assert campaign.step() == "design"
    first = campaign.suggestions(0)
    assert len(first) == 8 and first["mixture"].is_unique
    assert bounds.is_feasible(first[COLS].to_numpy(float), tol=1e-6).all()
    campaign.run(2)
    # the initial design is round 1; round 2 is the first suggested batch
    assert campaign.history["runs"].tolist() == [8, 8 + Q]
    assert pd.isna(campaign.history["incumbent"].iloc[0])  # nothing was fitted before the design
    assert bounds.is_feasible(pool_mixtures(campaign.runs), tol=1e-6).all()


def test_pool_design_with_no_pool_mixture_inside_the_bounds_errors(tmp_path, pool_table):
    far = pool_table[pool_table["mix.web"] > 0.5]
    bounds = SimplexBounds(DOMAINS, r_max={"web": 0.4})
    campaign = Campaign.create(tmp_path / "c", runner=pool_runner(far), bounds=bounds, fit_fn=CheapFit(), pool=far)
    with pytest.raises(CampaignError, match="no pool mixture lies within the bounds"):
        campaign.step()


@pytest.mark.slow
def test_space_filling_design_and_refined_suggestions_with_a_function_runner(tmp_path):
    """Without a pool: space-filling first runs, then suggestions anywhere in the bounds. Here the
    linear surrogate's best point is a vertex of the bounds that the design already ran; suggestions
    keep their distance from it (re-running a mixture only re-measures noise)."""
    bounds = SimplexBounds(DOMAINS, r_min={"books": 0.1}, r_max={"web": 0.6})
    campaign = Campaign.create(tmp_path / "c", runner=m4_runner, bounds=bounds, n_initial=5, q=Q, seed=SEED,
                               fit_fn=CheapFit(), suggest_options={"n_candidates": 64, "steps": 10, "n_starts": 2})
    campaign.run(2)
    assert campaign.suggestions(0)["mixture"].tolist() == [f"r0-init{i}" for i in range(1, 6)]
    sugg = campaign.suggestions(1)
    assert sugg["mixture"].tolist() == ["r1-next1", "r1-next2"]
    runs = campaign.runs
    assert runs["run"].nunique() == 5 + Q
    r = pool_mixtures(runs)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-9)
    assert bounds.is_feasible(r, tol=1e-6).all()
    # the runner's losses are the true M4 losses of the suggested mixtures
    got = runs.set_index("run").loc[sugg["mixture"], "loss"].to_numpy()
    np.testing.assert_allclose(got, m4_losses(sugg[COLS].to_numpy(float), **TRUTH)[:, 0], rtol=1e-12)
    assert (sugg["distance_to_tried"] >= 0.01 - 1e-9).all()
    np.testing.assert_allclose(runs.set_index("run").loc["r0-init3", COLS].to_numpy(float), [0.0, 0.9, 0.1],
                               atol=1e-9)
    assert sugg.loc[0, "nearest_tried"] == "r0-init3"  # the first suggestion sits next to the best vertex
    assert campaign.history["runs"].tolist() == [5, 5 + Q]


# ---------------------------------------------------------------- crash and resume


def reference_campaign(folder, table) -> Campaign:
    """The same pool campaign, uninterrupted."""
    return pool_campaign(folder, table).run(2)


def assert_same_campaign(a: Campaign, b: Campaign) -> None:
    pd.testing.assert_frame_equal(a.runs, b.runs)
    for k in range(2):
        pd.testing.assert_frame_equal(a.suggestions(k), b.suggestions(k))
    pd.testing.assert_frame_equal(comparable_history(a), comparable_history(b))
    assert (a.round, a.phase) == (b.round, b.phase)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["runner", "fit"])
def test_resume_after_a_crash_finishes_like_an_uninterrupted_campaign(tmp_path, pool_table, where):
    reference = reference_campaign(tmp_path / "reference", pool_table)
    folder = tmp_path / "crashed"
    if where == "runner":  # the training job of round 1 dies
        runner, fit_fn = CountingRunner(pool_runner(pool_table), fail_on=1), CheapFit()
    else:  # the second fit (after round 1's runs) dies
        runner, fit_fn = CountingRunner(pool_runner(pool_table)), failing_on(CheapFit(), 2)
    campaign = pool_campaign(folder, pool_table, runner=runner, fit_fn=fit_fn)
    with pytest.raises(RuntimeError, match="simulated crash"):
        campaign.run(2)

    state = json.loads((folder / "state.json").read_text())
    if where == "runner":
        assert (state["round"], state["phase"], state["history"]) == (0, "run", [])
        pd.testing.assert_frame_equal(campaign.runs, validate_runs(first_runs(pool_table)))
        pd.testing.assert_frame_equal(campaign.suggestions(0), reference.suggestions(0))
    else:
        assert (state["round"], state["phase"]) == (1, "fit") and len(state["history"]) == 1
        assert campaign.runs["run"].nunique() == N_FIRST + Q
        pd.testing.assert_frame_equal(campaign.suggestions(0), reference.suggestions(0))
        assert not (folder / "suggestions" / "round_001.csv").exists()

    resumed = Campaign.resume(folder, runner=CountingRunner(pool_runner(pool_table)), fit_fn=CheapFit())
    assert (resumed.round, resumed.phase) == (state["round"], state["phase"])
    resumed.run(2)
    assert_same_campaign(resumed, reference)


def test_a_run_phase_interrupted_after_saving_some_rows_only_runs_the_missing_mixtures(tmp_path, pool_table):
    reference = reference_campaign(tmp_path / "reference", pool_table)
    folder = tmp_path / "crashed"
    runner = CountingRunner(pool_runner(pool_table), fail_on=1, save_first=True)
    campaign = pool_campaign(folder, pool_table, runner=runner)
    runner.campaign = campaign
    with pytest.raises(RuntimeError, match="simulated crash"):
        campaign.run(2)
    planned = reference.suggestions(0)["mixture"].tolist()
    assert runner.calls == [planned]
    # the first mixture's rows are saved, the round is still open
    assert (campaign.round, campaign.phase) == (0, "run")
    assert campaign.runs["run"].nunique() == N_FIRST + 1 and planned[0] in set(campaign.runs["run"])

    again = CountingRunner(pool_runner(pool_table))
    resumed = Campaign.resume(folder, runner=again, fit_fn=CheapFit())
    resumed.run(2)
    assert again.calls == [planned[1:], reference.suggestions(1)["mixture"].tolist()]
    assert_same_campaign(resumed, reference)


def test_resume_in_the_suggest_phase_refits_a_custom_fit(tmp_path, pool_table):
    campaign = pool_campaign(tmp_path / "c", pool_table)
    campaign.step()  # fit
    fit_fn = CheapFit()
    resumed = Campaign.resume(tmp_path / "c", runner=pool_runner(pool_table), fit_fn=fit_fn)
    assert resumed.step() == "suggest"
    assert fit_fn.calls == [(SEED, N_FIRST)]  # a draws function is not saved: refitted once, same seed


# ---------------------------------------------------------------- external jobs


def test_a_campaign_without_runner_waits_for_add_runs(tmp_path, pool_table):
    campaign = pool_campaign(tmp_path / "c", pool_table, runner=None)
    assert [campaign.step() for _ in range(3)] == ["fit", "suggest", "waiting"]
    assert campaign.step() == "waiting" and campaign.phase == "run"
    with pytest.raises(CampaignError, match="the run phase needs a runner"):
        campaign.run(1)

    sugg = campaign.suggestions()
    rows = pool_table[pool_table["run"].isin(sugg["mixture"])]
    stray = pool_table[~pool_table["run"].isin([*sugg["mixture"], *first_runs(pool_table)["run"]])].head(1)
    with pytest.raises(CampaignError, match=r"have mixtures that were not suggested this round"):
        campaign.add_runs(stray)
    assert campaign.runs["run"].nunique() == N_FIRST  # nothing was written

    # one external job finishes first: the round stays open
    first, second = (rows[rows["run"] == name] for name in sugg["mixture"])
    campaign.add_runs(first)
    assert (campaign.round, campaign.phase) == (0, "run")
    with pytest.raises(CampaignError, match=r"run id\(s\) \['" + first["run"].iloc[0]):
        campaign.add_runs(first)
    campaign.add_runs(second)
    assert (campaign.round, campaign.phase) == (1, "fit")
    assert campaign.runs["run"].nunique() == N_FIRST + Q
    assert campaign.history["suggested"].iloc[0] == sugg["mixture"].tolist()
    with pytest.raises(CampaignError, match="is in phase 'fit', not 'run'"):
        campaign.add_runs(second)

    # a runner given later takes over
    resumed = Campaign.resume(tmp_path / "c", runner=pool_runner(pool_table), fit_fn=CheapFit())
    resumed.run(2)
    assert resumed.runs["run"].nunique() == N_FIRST + 2 * Q


def test_add_runs_rejects_empty_and_mismatched_rows(tmp_path, pool_table):
    campaign = pool_campaign(tmp_path / "c", pool_table, runner=None)
    campaign.step(), campaign.step()
    with pytest.raises(CampaignError, match="returned no rows"):
        campaign.add_runs(pool_table.iloc[:0])
    rows = pool_table[pool_table["run"] == campaign.suggestions()["mixture"].iloc[0]]
    renamed = rows.rename(columns={"mix.books": "mix.novels"})
    with pytest.raises(CampaignError, match=r"new rows have mixture columns .*mix.novels"):
        campaign.add_runs(renamed)
    with pytest.raises(CampaignError, match=r"already in the campaign's run table"):
        campaign.add_runs(rows.assign(run="r000"))


def test_a_runner_returning_other_mixtures_stops_the_round(tmp_path, pool_table):
    def wrong(suggestions):
        return pool_table[pool_table["run"] == "r029"]

    campaign = pool_campaign(tmp_path / "c", pool_table, runner=wrong)
    campaign.step(), campaign.step()
    assert "r029" not in set(campaign.suggestions()["mixture"])
    with pytest.raises(CampaignError, match=r"run\(s\) \['r029'\] have mixtures that were not suggested"):
        campaign.step()
    assert campaign.phase == "run" and campaign.runs["run"].nunique() == N_FIRST


def test_pool_runner_names_mixtures_it_does_not_hold(pool_table):
    run = pool_runner(pool_table)
    known = pool_table.drop_duplicates("run").head(2)[["run", *COLS]].rename(columns={"run": "mixture"})
    rows = run(known)
    assert sorted(rows["run"].unique()) == sorted(known["mixture"])
    unknown = cand.mixtures_frame(np.array([[0.2, 0.3, 0.5]]), DOMAINS, labels=["new"])
    with pytest.raises(CampaignError, match=r"the pool has no run with the mixture of \['new'\]"):
        run(pd.concat([known, unknown], ignore_index=True))


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize("changes, error, match", [
    ({"q": 0}, ValueError, "q must be a positive integer, got 0"),
    ({"q": 1.5}, ValueError, "q must be a positive integer, got 1.5"),
    ({"suggest_options": {"q": 3}}, ValueError, "suggest_options may not set q, seed"),
    ({"suggest_options": {"acquisition": "ucb", "pool": None}}, ValueError, "suggest_options may not set"),
    ({"bounds": SimplexBounds(["web", "code", "news"])}, ValueError,
     r"the runs have domains \['web', 'code', 'books'\], the bounds \['web', 'code', 'news'\]"),
    ({"runs": None, "bounds": None}, ValueError, "give bounds= or domains="),
    ({"runs": None, "n_initial": 0}, ValueError, "n_initial must be a positive integer"),
])
def test_create_rejects_bad_settings_before_writing_anything(tmp_path, pool_table, changes, error, match):
    with pytest.raises(error, match=match):
        pool_campaign(tmp_path / "c", pool_table, **changes)
    assert not (tmp_path / "c" / "state.json").exists()
    assert not (tmp_path / "c" / "runs.parquet").exists()


def test_create_rejects_a_pool_over_other_domains_and_leaves_no_runs_behind(tmp_path, pool_table):
    other = pool_table.rename(columns={"mix.books": "mix.news"})
    with pytest.raises(ValueError, match=r"the pool has mixture columns .*mix.news"):
        pool_campaign(tmp_path / "c", pool_table, pool=other)
    assert not (tmp_path / "c" / "runs.parquet").exists()
    # a new campaign in the same folder starts clean
    campaign = Campaign.create(tmp_path / "c", runner=None, domains=DOMAINS, fit_fn=CheapFit())
    assert campaign.phase == "design" and campaign.runs.empty


def test_create_refuses_a_folder_that_holds_a_campaign(tmp_path, pool_table):
    pool_campaign(tmp_path / "c", pool_table)
    with pytest.raises(FileExistsError, match="already holds a campaign; use Campaign.resume"):
        pool_campaign(tmp_path / "c", pool_table)


def test_resume_errors(tmp_path, pool_table):
    with pytest.raises(FileNotFoundError, match=r"no campaign in .*missing \(no state.json\)"):
        Campaign.resume(tmp_path / "missing", runner=None)
    pool_campaign(tmp_path / "c", pool_table)
    with pytest.raises(ValueError, match="created with a custom fit_fn: pass it to resume"):
        Campaign.resume(tmp_path / "c", runner=None)
    path = tmp_path / "c" / "state.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps(dict(state, version=99)))
    with pytest.raises(ValueError, match="state version 99"):
        Campaign.resume(tmp_path / "c", runner=None, fit_fn=CheapFit())
    path.write_text(json.dumps(dict(state, phase="train")))
    with pytest.raises(CampaignError, match="unknown phase 'train'"):
        Campaign.resume(tmp_path / "c", runner=None, fit_fn=CheapFit()).step()


def test_default_fit_fn_passes_the_saved_options(monkeypatch):
    import bayesmix.inference.fit

    seen = {}
    monkeypatch.setattr(bayesmix.inference.fit, "fit", lambda runs, **kw: seen.update(kw) or "fitted")
    fn = default_fit_fn({"law": "mix", "sampler": {"num_chains": 1}, "law_options": {"step": 1000}})
    assert fn(pd.DataFrame(), 11) == "fitted"
    assert seen == {"law": "mix", "seed": 11, "sampler": {"num_chains": 1}, "step": 1000}


# ---------------------------------------------------------------- the default NUTS fit


TINY_NUTS = {"law": "mix", "sampler": {"num_chains": 1, "num_warmup": 100, "num_samples": 50, "progress_bar": False}}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:law 'mix'. convergence diagnostics failed")  # 50 draws: low ESS expected
def test_a_round_with_the_default_mixing_law_fit_saves_and_reloads_the_fit(tmp_path, pool_table, monkeypatch):
    import bayesmix.inference.fit

    folder = tmp_path / "c"
    campaign = Campaign.create(folder, runner=pool_runner(pool_table), runs=first_runs(pool_table, 8), q=Q,
                               seed=SEED, pool=pool_table, fit_options=TINY_NUTS,
                               suggest_options={"max_draws": 50})
    assert campaign.step() == "fit"
    assert campaign.state["fit_saved"] and not campaign.state["custom_fit"]
    assert [p.name for p in (folder / "fits").iterdir()] == ["round_000.nc"]
    fit = campaign.latest_fit()
    assert fit.law.name == "mix" and len(fit.data.coords["run"]) == 8
    assert fit.posterior()["t"].shape == (50, 1, len(DOMAINS))  # one chain of 50 draws, one eval

    # the process stops here; the resumed campaign loads the saved posterior instead of refitting
    def no_refit(*args, **kwargs):
        raise AssertionError("the saved fit should be loaded, not refitted")

    monkeypatch.setattr(bayesmix.inference.fit, "fit", no_refit)
    resumed = Campaign.resume(folder, runner=pool_runner(pool_table))
    np.testing.assert_allclose(resumed.latest_fit().posterior()["t"], fit.posterior()["t"])
    assert resumed.step() == "suggest"
    sugg = resumed.suggestions(0)
    assert len(sugg) == Q and set(sugg["mixture"]).isdisjoint(first_runs(pool_table, 8)["run"])
    assert np.isfinite(sugg[["acquisition", "log_ei", "mean", "sd"]].to_numpy(float)).all()
    assert ((sugg["lower"] <= sugg["mean"]) & (sugg["mean"] <= sugg["upper"])).all()
    # the incumbent is the best posterior mean of the mixing law among the 8 runs
    means = resumed.latest_fit().predict(mixtures=first_runs(pool_table, 8).drop_duplicates("run")
                                         .rename(columns={"run": "mixture"})[["mixture", *COLS]], kind="mean")
    assert resumed.state["last_incumbent"] == pytest.approx(means["mean"].min(), rel=1e-6)
    assert resumed.step() == "run"
    assert (resumed.round, resumed.phase) == (1, "fit")
    assert resumed.runs["run"].nunique() == 8 + Q
    assert resumed.history["incumbent"].iloc[0] == pytest.approx(means["mean"].min(), rel=1e-6)


# ---------------------------------------------------------------- the proxy trainer


def test_proxy_runner_trains_the_suggested_mixtures_and_closes_the_round(tmp_path):
    """The design batch trained for a few steps at the smallest size on three bundled domains."""
    from bayesmix.proxy import bundled_corpus
    from bayesmix.proxy.corpora import Corpus

    names = ["code", "english", "spanish"]
    corpus = Corpus(tuple(bundled_corpus().domain(d) for d in names), label="bundled-3")
    runner = proxy_runner(["100k"], workdir=tmp_path / "work", corpus=corpus, cache_dir=tmp_path / "tokens",
                          progress=False, steps=12, plan_steps=30, batch_size=4, seq_len=32, checkpoints=3,
                          eval_tokens=256, threads=1)
    campaign = Campaign.create(tmp_path / "c", runner=runner, domains=names, n_initial=2, seed=SEED, fit_fn=CheapFit())
    assert [campaign.step(), campaign.step()] == ["design", "run"]
    assert (campaign.round, campaign.phase) == (1, "fit")
    runs, sugg = campaign.runs, campaign.suggestions(0)
    assert sorted(runs["run"].unique()) == sorted(f"{m}@100k" for m in sugg["mixture"])
    assert sorted(runs["eval"].unique()) == sorted(names)
    assert runs.groupby("run")["step"].nunique().tolist() == [3, 3] and runs["step"].max() == 12
    per_run = runs.drop_duplicates("run").set_index("run")
    np.testing.assert_allclose(per_run.loc[[f"{m}@100k" for m in sugg["mixture"]], [f"mix.{d}" for d in names]],
                               sugg[[f"mix.{d}" for d in names]].to_numpy(), atol=1e-9)
    assert np.isfinite(runs["loss"]).all() and (runs["loss"] > 0).all()
    # a finished run is not trained again: the sweep reads it back from the work folder
    states = sorted((tmp_path / "work").glob("*/state.json"))
    assert len(states) == 2 and all(json.loads(p.read_text())["finished"] for p in states)
    stamps = [p.stat().st_mtime_ns for p in states]
    again = runner(sugg)
    assert [p.stat().st_mtime_ns for p in states] == stamps
    pd.testing.assert_frame_equal(again.sort_values(["run", "step", "eval"]).reset_index(drop=True),
                                  runs.sort_values(["run", "step", "eval"]).reset_index(drop=True),
                                  check_like=True)
