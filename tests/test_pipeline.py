"""The nested pipeline end to end on campaigns simulated from a known nested law."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix import cli
from bayesmix.decide import decisions as decide
from bayesmix.decide.support import hull_distance, support_distance
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.laws.mixtures import MIX_PREFIX
from bayesmix.pipeline.nested import Pipeline
from bayesmix.data.simulate import NestedLaw, dirichlet_mixtures, simulate_campaign

TARGET_SIZE, TARGET_STEP = 200_000_000, 100_000
SMALL = dict(fit_config=SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=150),
             lane_config=SamplerConfig.for_lanes(num_chains=2, num_warmup=200, num_samples=50),
             curve_config=SamplerConfig.for_lanes(num_chains=2, num_warmup=200, num_samples=100, dense_mass=True))


def truth_table(law: NestedLaw, table: pd.DataFrame) -> np.ndarray:
    """True target-scale loss for each row (mixture proportions, eval) of a prediction table."""
    r = table[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    per_eval = law.loss(r, TARGET_SIZE, TARGET_STEP)
    overall = per_eval @ law.weights
    return np.array([overall[i] if e == "overall" else per_eval[i, law.evals.index(e)]
                     for i, e in enumerate(table["eval"])])


@pytest.fixture(scope="module")
def campaign():
    """8 mixtures of 3 domains x 3 sizes x 6 checkpoints x 2 eval domains."""
    law = NestedLaw.random(["web", "code", "books"], ["val_web", "val_code"], seed=11)
    mixtures = dirichlet_mixtures(8, law.domains, seed=12)
    steps = np.geomspace(1000, 30000, 6).astype(int)
    runs = simulate_campaign(law, mixtures, sizes=[2e6, 6e6, 2e7], steps=steps, seed=13)
    return law, runs


@pytest.fixture(scope="module")
def draws_result(campaign):
    _, runs = campaign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, n_draws=16, **SMALL).fit(runs, seed=0)


@pytest.fixture(scope="module")
def point_result(campaign):
    _, runs = campaign
    return Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, mode="point", n_draws=16).fit(runs, seed=0)


@pytest.mark.slow
def test_draws_intervals_contain_the_target_scale_truth(campaign, draws_result):
    law, _ = campaign
    table = draws_result.predict(prob=0.9)
    truth = truth_table(law, table)
    inside = (table["lower"] <= truth) & (truth <= table["upper"])
    assert inside.mean() >= 0.75
    overall = table["eval"] == "overall"
    assert inside[overall].mean() >= 0.75
    assert set(draws_result.stages) == {"step", "size", "mix"}
    assert draws_result.n_draws_total == 16 * 2 * 50
    # negative control: the truth of another (farther) scale is excluded for most mixtures by the
    # laws' own posterior (the backtest discrepancy is checked on its own below)
    own = draws_result.predict(prob=0.9, discrepancy=False)
    wrong = truth + 0.5
    assert ((own["lower"] <= wrong) & (wrong <= own["upper"])).mean() <= 0.1


@pytest.mark.slow
def test_draws_cover_the_truth_where_the_point_chain_misses(campaign, draws_result, point_result):
    law, _ = campaign
    table = draws_result.predict(prob=0.9)
    point = point_result.predict_point()
    truth = truth_table(law, table)
    assert (table["mixture"].to_numpy() == point["mixture"].to_numpy()).all()
    miss = np.abs(point["point"].to_numpy() - truth) > 0.01  # the point chain has no interval: any error misses
    assert miss.any()
    covered = (table["lower"] <= truth) & (truth <= table["upper"])
    assert covered[miss].mean() >= 0.75
    assert (table["upper"] - table["lower"]).min() > 0  # wider than the point chain's zero width
    # the point mode's bootstrap gives intervals through the same API
    boot = point_result.predict(prob=0.9)
    assert {"mean", "sd", "lower", "upper"} <= set(boot.columns) and (boot["upper"] > boot["lower"]).all()


@pytest.mark.slow
def test_error_budget_sums_to_one(draws_result):
    budget = draws_result.error_budget(seed=0)
    assert budget.table["share"].sum() == pytest.approx(1.0)
    assert (budget.table["share"] >= 0).all() and budget.table["fitted"].all()
    assert budget.eval == "overall"
    assert budget.recommendation.startswith("most of the uncertainty comes from")
    assert budget.variances["all_stages"] > budget.variances["step_and_size_off"]
    # the backtest discrepancy is a fourth row: its variance at the observed mixtures
    assert budget.table["stage"].tolist() == ["step", "size", "mix", "discrepancy"]
    assert budget.variances["discrepancy"] > 0
    total = budget.variances["all_stages"] + budget.variances["discrepancy"]
    assert budget.table["share"].iloc[3] == pytest.approx(budget.variances["discrepancy"] / total)
    # the split is the law of total variance of the pipeline's own draws: its total is their variance
    pred = draws_result.predict(discrepancy=False, draws=True)
    overall = pred.to_numpy()[:, (pred["eval"] == "overall").to_numpy()]
    assert budget.variances["all_stages"] == pytest.approx(overall.var(axis=0).mean(), rel=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        draws_result.error_budget(method="ablate")


@pytest.mark.slow
def test_error_budget_split_agrees_with_switching_stages_off(draws_result):
    split = draws_result.error_budget(seed=0)
    refit = draws_result.error_budget(seed=0, method="refit")
    assert split.method == "split" and refit.method == "refit"
    v, w = split.variances, refit.variances
    assert w["all_stages"] == pytest.approx(v["all_stages"], rel=1e-2)  # the same draws, ddof 1 against 0
    # the mixing law's own variance and the upstream's agree within Monte Carlo error of 16 lanes
    assert 0.5 < v["step_and_size_off"] / w["step_and_size_off"] < 2.0
    upstream = v["all_stages"] - v["step_and_size_off"], w["all_stages"] - w["step_and_size_off"]
    assert 0.5 < upstream[0] / upstream[1] < 2.0


@pytest.mark.slow
def test_compute_multiplier_recovers_the_known_law(campaign, draws_result):
    law, _ = campaign
    mixtures = draws_result.observed_mixtures()
    baseline, other = mixtures["mixture"].iloc[0], mixtures["mixture"].iloc[1]
    same = decide.effective_compute_multiplier(draws_result, baseline, baseline)
    assert same["median"] == pytest.approx(1.0) and same["lower"] == pytest.approx(1.0)
    # truth: the step term exp(t.r_b) kA (S/S0)^-alpha is the same at every size under this law
    r = mixtures[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    level = law.loss(r[:1], TARGET_SIZE, TARGET_STEP)
    reducible = np.exp(r[:1] @ law.t.T) * law.kA * (TARGET_STEP / law.S0) ** -law.alpha
    target = law.overall(r[1:2], TARGET_SIZE, TARGET_STEP)
    k_true = decide.compute_multiplier(target, level, reducible, law.alpha[None], law.weights)[0]
    est = decide.effective_compute_multiplier(draws_result, other, baseline, prob=0.9)
    assert est["lower"] <= k_true <= est["upper"] or abs(np.log(est["median"] / k_true)) < 0.5


@pytest.mark.slow
def test_critical_proportion_and_optimum_on_the_pipeline(campaign, draws_result):
    law, _ = campaign
    base = draws_result.observed_mixtures()["mixture"].iloc[0]
    r0 = draws_result.observed_mixtures()[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)[0]
    shares = np.linspace(0, 1, 51)
    grid = (1 - shares)[:, None] * r0 + shares[:, None] * np.eye(3)[2]
    true_loss = law.loss(grid, TARGET_SIZE, TARGET_STEP)[:, 0]  # val_web as books are added
    level = float(np.interp(0.3, shares, true_loss))
    if np.all(np.diff(true_loss) > 0):  # the known law crosses the level once, at 0.3
        estimate, table = decide.critical_proportion_from(draws_result, base, "books", level=level, eval="val_web",
                                                          prob=0.5, shares=shares)
        assert abs(estimate - 0.3) < 0.15
        assert list(table.columns) == ["share", "mean", "lower", "upper", "prob_below"]
    best, table = decide.predicted_optimum(draws_result, baseline=base, n_candidates=256, seed=0)
    tried = draws_result.observed_mixtures()[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    # the tried mixtures are among the starts: refinement moves off the best start, or that start is a
    # tried mixture nothing near improves on (cutting a domain below its tried range carries the face rise)
    assert best.feasible and (best.moved or support_distance(best.mixture.to_numpy()[None], tried)[0] < 1e-9)
    observed = draws_result.predict()
    best_observed = observed.loc[observed["eval"] == "overall", "mean"].min()
    opt_mean = table.loc[(table["mixture"] == "optimum") & (table["eval"] == "overall"), "mean"].iloc[0]
    assert opt_mean <= best_observed + 1e-6
    assert "prob_beats" in table
    # over the tried mixtures' hull: inside it, no better than the free optimum, no worse than the best tried
    inside, table = decide.predicted_optimum(draws_result, region="hull", baseline=base, n_candidates=256, seed=0)
    assert inside.feasible and hull_distance(inside.mixture.to_numpy(), tried)[0] < 1e-6
    hull_mean = table.loc[(table["mixture"] == "optimum") & (table["eval"] == "overall"), "mean"].iloc[0]
    assert opt_mean - 1e-3 <= hull_mean <= best_observed + 1e-6


@pytest.mark.slow
def test_point_chain_carries_a_backtest_discrepancy_into_every_prediction(campaign, point_result):
    law, runs = campaign
    disc = point_result.discrepancy
    table = disc.table().set_index("stage")
    assert list(table.index) == ["step", "size", "mix", "face"]  # face: the prior of the rise nothing replays
    assert table.loc["face", "source"] == "prior" and table.loc["face", "k_median"] == pytest.approx(disc.level)
    assert table.loc["step", "backtests"] == runs["run"].nunique()  # every curve's first half -> its last step
    assert table.loc["mix", "backtests"] == 8  # every mixture left out once
    assert table.loc["size", "source"] == "step"  # three sizes: nothing to replay, the step stage lends its spread
    assert table.loc["step", "target_distance"] == pytest.approx(np.log(TARGET_STEP / 30000))
    assert table.loc["size", "target_distance"] == pytest.approx(np.log(TARGET_SIZE / 2e7))
    # drawn from the law itself: the step backtests (4 checkpoints -> a step 3.9x later) miss by little and
    # find no bias; a mixing-law blow-up far from the rest is clipped to the data's widened range
    assert table.loc["step", "max_abs_miss"] < 0.1 and abs(table.loc["step", "bias_median"]) < 0.02
    misses = disc.backtests["mix"].misses
    observed = misses["observed"]
    assert misses["predicted"].between(2 * observed.min() - observed.max(), 2 * observed.max() - observed.min()).all()
    with_ = point_result.predict(draws=True)
    without = point_result.predict(draws=True, discrepancy=False)
    overall = (with_["eval"] == "overall").to_numpy()
    r = point_result.observed_mixtures()[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    delta = disc.draws(r, point_result.n_draws_total)
    assert np.allclose((with_ - without).to_numpy()[:, overall], delta)
    assert sorted(disc.evals) == sorted(law.evals)  # each eval domain carries its own backtests' discrepancy
    for name in law.evals:
        pick = (with_["eval"] == name).to_numpy()
        assert np.allclose((with_ - without).to_numpy()[:, pick], disc.evals[name].draws(r, point_result.n_draws_total))
        own = disc.evals[name].backtests["step"].misses["miss"].to_numpy()
        assert len(own) == runs["run"].nunique() and not np.allclose(own, disc.backtests["step"].misses["miss"])
    assert np.allclose(np.asarray(point_result.loss_fn("val_web")(r)),
                       with_.to_numpy()[:, (with_["eval"] == "val_web").to_numpy()])
    f = point_result.loss_fn()
    assert np.allclose(np.asarray(f(r)), with_.to_numpy()[:, overall])
    assert np.allclose(np.asarray(point_result.loss_fn(discrepancy=False)(r)), without.to_numpy()[:, overall])


@pytest.mark.slow
def test_step_fan_chart_draws_the_law_itself_up_to_the_target(point_result):
    from bayesmix.report.figures import step_curve_draws, step_fan_chart

    labels = point_result.step_shape["labels"]
    mixture, eval = str(labels["mixture"].iloc[0]), str(labels["eval"].iloc[0])
    draws, obs = step_curve_draws(point_result, mixture, eval)
    at = (draws["step"] == TARGET_STEP).to_numpy()
    runs = draws["run"].to_numpy()[at]
    pick = [int(np.flatnonzero((labels["run"].astype(str) == r).to_numpy() & (labels["eval"] == eval).to_numpy())[0])
            for r in runs]
    assert np.allclose(draws.to_numpy()[:, at], point_result.outputs["step"].values[:, pick])
    assert draws["step"].min() == obs["step"].min() and set(obs["run"]) == set(runs)
    assert step_fan_chart(point_result, mixture, eval) is not None
    assert step_curve_draws(point_result, "no-such-mixture", eval) is None


@pytest.mark.slow
def test_report_from_the_pipeline_shows_its_backtests(campaign, point_result):
    from bayesmix.report.html import render_html
    from bayesmix.report.build import report_from_pipeline

    _, runs = campaign
    report = report_from_pipeline(point_result, baseline="m0", runs=runs, n_random=20, optimum=False,
                                  n_multiplier=1)
    assert report.backtest["stage"].tolist() == ["step", "size", "mix", "face"] * 3
    evals = report.backtest["eval"].tolist()
    assert evals[:4] == ["overall"] * 4 and sorted(set(evals[4:])) == ["val_code", "val_web"]
    text = render_html(report)
    assert "Extrapolation backtests" in text and "borrowed from step" in text and "upward only" in text
    assert "backtest" in report.settings["seconds per stage"]


@pytest.mark.slow
def test_the_discrepancy_can_be_switched_off(campaign):
    _, runs = campaign
    result = Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, mode="point", n_draws=4,
                      discrepancy=False).fit(runs, seed=0)
    assert result.discrepancy is None and "backtest" not in result.seconds
    assert set(result.diagnostics) == {"step", "size", "mix"}


@pytest.mark.slow
def test_single_scale_table_is_just_the_mixing_law(campaign):
    law, runs = campaign
    one = runs[(runs["size"] == 20_000_000) & (runs["step"] == runs["step"].max())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Pipeline(n_draws=8, **SMALL).fit(one, seed=0)
    assert set(result.stages) == {"mix"} and not result.plan.step and not result.plan.size
    table = result.stage_table().set_index("stage")
    assert table.loc["mix", "fitted"] and not table.loc["step", "fitted"]
    pred = result.predict()
    assert len(pred) == 8 * 3 and (pred["sd"] > 0).all()
    with pytest.raises(ValueError, match="needs the step law"):
        decide.effective_compute_multiplier(result, "m1", "m0")


@pytest.mark.slow
def test_missing_cells_drop_mixtures_with_one_size(campaign):
    law, runs = campaign
    # m1 only at the smallest size, m2 lacks the middle size: m1 is left out, m2 kept
    drop = runs["run"].isin([f"m1_n{j}" for j in (1, 2)] + ["m2_n1"])
    with pytest.warns(UserWarning, match="seen at one model size only"):
        result = Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, mode="point", n_draws=4).fit(
            runs[~drop], seed=0)
    observed = result.observed_mixtures()
    assert len(observed) == 7
    kept = observed[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    lost = runs.loc[runs["run"] == "m1_n0", [MIX_PREFIX + d for d in law.domains]].to_numpy(float)[0]
    assert not np.any(np.all(np.isclose(kept, lost), axis=1))


@pytest.mark.slow
def test_moments_mode_uses_one_fit_per_stage(campaign):
    law, runs = campaign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Pipeline(target_size=TARGET_SIZE, target_step=TARGET_STEP, mode="moments", n_draws=8,
                          **SMALL).fit(runs, seed=0)
    assert result.diagnostics["size"]["lanes"] == 1 and result.diagnostics["mix"]["lanes"] == 1
    assert result.outputs["step"].sd is not None and (result.outputs["step"].sd > 0).all()
    table = result.predict()
    truth = truth_table(law, table)
    assert np.abs(table["mean"] - truth).mean() < 0.1
    with pytest.raises(ValueError, match="mode='draws'"):
        result.error_budget()


@pytest.mark.slow
def test_cli_pipeline_on_a_single_scale_table(campaign, tmp_path, capsys):
    law, runs = campaign
    one = runs[(runs["size"] == 20_000_000) & (runs["step"] == runs["step"].max())]
    path = tmp_path / "runs.csv"
    one.to_csv(path, index=False)
    out, summary = tmp_path / "pred.csv", tmp_path / "summary.json"
    code = cli.main(["pipeline", str(path), "--mode", "point", "--n-draws", "8", "--optimum", "--baseline", "m0",
                     "--r-max", "web=0.5", "--predictions", str(out), "--json", str(summary), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "predicted optimum" in printed and "prob_beats" in printed
    table = pd.read_csv(out)
    assert {"mixture", "eval", "mean", "lower", "upper", "prob_beats"} <= set(table.columns)
    content = json.loads(summary.read_text())
    assert content["optimum"]["feasible"] and content["optimum"]["mixture"]["web"] <= 0.5 + 1e-9
    assert "convex hull" not in printed  # bounds given: the hull optimum (which ignores them) is not shown
    assert cli.main(["pipeline", str(path), "--mode", "point", "--n-draws", "8", "--optimum", "--baseline", "m0",
                     "--json", str(summary), "--no-progress"]) == 0
    assert "predicted optimum inside the tried mixtures' convex hull" in capsys.readouterr().out
    inside = json.loads(summary.read_text())["optimum"]
    assert inside["hull_distance"] >= 0 and inside["inside_hull"]["feasible"]
    # a single scale: only the mixing law is replayed (every mixture left out once)
    assert "extrapolation backtests" in printed
    rows = content["discrepancy"]
    assert [row["stage"] for row in rows if row["eval"] == "overall"] == ["mix", "face"]
    assert rows[0]["backtests"] == 8
    assert {row["eval"] for row in rows} == {"overall", *law.evals}
    assert {row["stage"] for row in rows} == {"mix", "face"}
    # the saved pipeline feeds the other commands
    fit_dir, nxt, report = tmp_path / "fit", tmp_path / "next.csv", tmp_path / "r.html"
    code = cli.main(["pipeline", str(path), "--mode", "point", "--n-draws", "8", "--out", str(fit_dir),
                     "--no-progress"])
    assert code == 0 and f"saved the fitted pipeline to {fit_dir}" in capsys.readouterr().out
    assert cli.main(["suggest", str(fit_dir), "--q", "2", "--steps", "0", "--out", str(nxt)]) == 0
    assert len(pd.read_csv(nxt)) == 2
    assert cli.main(["predict", str(fit_dir), "--mixtures", str(nxt), "--out", str(tmp_path / "p.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "p.csv")["mixture"]) == {"next1", "next2"}
    assert cli.main(["report", str(fit_dir), "--runs", str(path), "--random", "20", "--suggestions", str(nxt),
                     "--out", str(report)]) == 0
    assert "pipeline folder" in report.read_text(encoding="utf-8")
    capsys.readouterr()
    code = cli.main(["pipeline", str(path), "--mode", "point", "--n-draws", "8", "--no-discrepancy",
                     "--json", str(summary), "--no-progress"])
    assert code == 0 and "extrapolation backtests" not in capsys.readouterr().out
    assert "discrepancy" not in json.loads(summary.read_text())


def test_cli_pipeline_errors_are_one_line(campaign, tmp_path, capsys):
    _, runs = campaign
    one = runs[runs["size"] == 20_000_000]
    path = tmp_path / "runs.csv"
    one.to_csv(path, index=False)
    code = cli.main(["pipeline", str(path), "--target-size", "1e9", "--mode", "point", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "one model size (20000000)" in err and "3 or more sizes" in err
    with pytest.raises(SystemExit):
        cli.main(["pipeline", str(path), "--target-size", "-3"])


@pytest.mark.slow
def test_a_saved_pipeline_predicts_suggests_and_reports_as_the_fitted_one(point_result, campaign, tmp_path):
    from bayesmix import load_pipeline
    from bayesmix.design.suggest import Search, suggest
    from bayesmix.report.html import render_html
    from bayesmix.report.build import report_from_pipeline

    _, runs = campaign
    point_result.save(tmp_path / "fit")
    back = load_pipeline(tmp_path / "fit")
    pd.testing.assert_frame_equal(back.predict(), point_result.predict())
    pd.testing.assert_frame_equal(back.predict(kind="observation", seed=3), point_result.predict(kind="observation",
                                                                                                  seed=3))
    r = np.full((1, 3), 1 / 3)
    np.testing.assert_allclose(np.asarray(back.loss_fn(seed=1)(r)), np.asarray(point_result.loss_fn(seed=1)(r)))
    pd.testing.assert_frame_equal(back.stage_table(), point_result.stage_table())
    pd.testing.assert_frame_equal(suggest(back, q=2, search=Search(steps=0), seed=0),
                                  suggest(point_result, q=2, search=Search(steps=0), seed=0))
    assert back.discrepancy.table().equals(point_result.discrepancy.table())
    report = report_from_pipeline(back, baseline="m0", runs=runs, n_random=20, optimum=False, n_multiplier=1)
    assert "Extrapolation backtests" in render_html(report)
    with pytest.raises(ValueError, match="is not a saved pipeline"):
        load_pipeline(tmp_path / "nowhere")
