"""Checking predictions against held-out target-scale runs: exact values on hand-built tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmix.pipeline.verify import coverage_summary, observed_at, truth_sentence


def _runs():
    rows = []
    for run, losses, mix in (("a", (2.0, 3.0), 1.0), ("b", (1.0, 5.0), 0.0)):
        for step in (100, 200):
            for e, loss in zip(("x", "y"), losses):
                rows.append({"run": run, "size": 10, "step": step, "eval": e, "loss": loss + (step == 100),
                             "mix.p": mix, "mix.q": 1 - mix})
    return pd.DataFrame(rows)


def test_observed_at_takes_the_target_step_and_weights_the_overall():
    obs = observed_at(_runs(), size=10, step=200, evals=["x", "y"], weights=np.array([0.25, 0.75]))
    overall = obs[obs["eval"] == "overall"].set_index("run")["observed"]
    assert overall.to_dict() == {"a": pytest.approx(0.25 * 2 + 0.75 * 3), "b": pytest.approx(0.25 + 0.75 * 5)}
    assert obs.set_index(["run", "eval"]).loc[("b", "x"), "observed"] == 1.0
    assert obs.set_index(["run", "eval"]).loc[("a", "x"), "mix.p"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=10, step=300), "no run of size 10 has a checkpoint at step 300"),
    (dict(size=11, step=200), "no run of size 11 has a checkpoint at step 200"),
])
def test_observed_at_without_target_rows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        observed_at(_runs(), evals=["x", "y"], weights=np.array([0.5, 0.5]), **kwargs)


def test_observed_at_names_missing_evals():
    with pytest.raises(ValueError, match=r"lack eval domain\(s\) \['z'\]"):
        observed_at(_runs(), size=10, step=200, evals=["x", "z"], weights=np.array([0.5, 0.5]))


def test_coverage_summary_and_sentence():
    truth = pd.DataFrame({"run": ["a", "b", "a", "b"], "eval": ["x", "x", "overall", "overall"],
                          "miss": [0.1, -0.3, 0.2, 0.0], "covered": [True, False, True, True]})
    summary = coverage_summary(truth)
    assert summary["eval"].tolist() == ["overall", "x"]
    row = summary.iloc[0]
    assert (row["runs"], row["covered"], row["coverage"]) == (2, 2, 1.0)
    assert row["mae"] == pytest.approx(0.1) and row["mean_miss"] == pytest.approx(0.1)
    assert summary.iloc[1]["mae"] == pytest.approx(0.2) and summary.iloc[1]["coverage"] == 0.5
    assert truth_sentence(summary) == ("2 of 2 held-out target-scale runs lie inside their 90% interval of the "
                                       "overall loss; mean absolute error 0.100 nats, mean miss +0.100 "
                                       "(observed minus predicted).")


def test_truth_sentence_splits_the_runs_by_the_trust_region():
    truth = pd.DataFrame({"run": ["a", "b", "c"], "eval": ["overall"] * 3, "miss": [0.0, 0.1, 0.5],
                          "covered": [True, True, False], "inside_support": [True, True, False]})
    text = truth_sentence(coverage_summary(truth), 0.9, truth)
    assert text.endswith("Inside the trust region of the fitted mixtures: 2 of 2; outside it: 0 of 1.")
    inside = truth.assign(inside_support=True)
    assert "trust region" not in truth_sentence(coverage_summary(inside), 0.9, inside)


def test_train_at_target_trains_each_mixture_at_the_size_with_the_target_parameters(tmp_path):
    from bayesmix.pipeline.verify import train_at_target

    rows = train_at_target({"codey": {"code": 0.7, "english": 0.3}}, target_size=98944, target_step=12,
                           plan_steps=12, batch_size=4, seq_len=32, checkpoints=3, eval_tokens=256, threads=1,
                           workdir=tmp_path / "work", cache_dir=tmp_path / "tokens", progress=False)
    assert rows["run"].unique().tolist() == ["codey@100k"]
    assert set(rows["size"]) == {98944} and rows["step"].max() == 12
    assert observed_at(rows, size=98944, step=12, evals=sorted(rows["eval"].unique()),
                       weights=np.full(rows["eval"].nunique(), 1.0 / rows["eval"].nunique()))["observed"].notna().all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(target_size=12345), "no proxy model size has 12,345 non-embedding parameters"),
    (dict(size="200k"), "size '200k' has 197,760 non-embedding parameters; the pipeline predicts 98,944"),
    (dict(steps=30), "steps=30 must equal the pipeline's target step 12"),
])
def test_train_at_target_refuses_a_size_or_step_off_the_target_before_training(kwargs, message):
    from bayesmix.pipeline.verify import train_at_target

    settings = dict(dict(target_size=98944, target_step=12), **kwargs)
    with pytest.raises(ValueError, match=message):
        train_at_target({"codey": {"code": 1.0}}, **settings)
