"""Mixtures: every bad-input error, mixture files, demo designs, and mixture-sampled batches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayesmix.proxy.mixtures import (MixtureError, design_mixtures, mixture_label, parse_mixture, read_mixtures,
                                     validate_mixture)
from bayesmix.proxy.sampling import MixtureSampler

DOMAINS = ["code", "english", "spanish", "tables"]


def test_valid_mixture_is_completed_and_renormalised():
    mix = validate_mixture({"code": 0.5, "mix.english": 0.5004}, DOMAINS)
    assert list(mix) == DOMAINS
    assert mix["spanish"] == 0 and sum(mix.values()) == pytest.approx(1, abs=1e-15)
    assert mixture_label(mix).startswith("code")


@pytest.mark.parametrize("mixture, message", [
    ({"code": 0.5, "web": 0.5}, r"unknown domain\(s\) \['web'\]; the corpus has \['code'"),
    ({"code": 1.2, "english": -0.2}, r"must not be negative: english=-0.2"),
    ({"code": 0.5, "english": 0.4}, r"sum to 0.9, not 1"),
    ({"code": "lots"}, r"proportion of 'code' is not a number: 'lots'"),
    ({"code": float("nan")}, r"proportion of 'code' is not finite"),
    ({"code": float("inf"), "english": 1}, r"not finite"),
    ({}, r"the mixture is empty"),
    ([0.5, 0.5], r"must be a mapping domain -> proportion, got list"),
    ({"code": 0.5, "mix.code": 0.5}, r"domain 'code' is given twice"),
])
def test_every_bad_mixture_is_rejected_with_its_reason(mixture, message):
    with pytest.raises(MixtureError, match=message):
        validate_mixture(mixture, DOMAINS, name="m1")


def test_error_names_the_mixture():
    with pytest.raises(MixtureError, match="^heavy-code: "):
        validate_mixture({"code": 2}, DOMAINS, name="heavy-code")


def test_read_mixtures_from_files_frames_and_run_tables(tmp_path):
    design = design_mixtures(DOMAINS, 4, seed=1)
    design.to_csv(tmp_path / "m.csv", index=False)
    got = read_mixtures(tmp_path / "m.csv")
    assert list(got) == list(design["name"]) and set(got["uniform"]) == set(DOMAINS)
    (tmp_path / "m.json").write_text(json.dumps({"a": {"code": 1}, "b": {"english": 0.5, "tables": 0.5}}))
    assert read_mixtures(tmp_path / "m.json")["b"] == {"english": 0.5, "tables": 0.5}
    runs = pd.DataFrame({"run": ["r1", "r1", "r2"], "size": 1, "step": [1, 2, 1], "eval": "code", "loss": 1.0,
                         "mix.code": [1.0, 1.0, 0.25], "mix.english": [0.0, 0.0, 0.75]})
    assert read_mixtures(runs) == {"r1": {"code": 1.0, "english": 0.0}, "r2": {"code": 0.25, "english": 0.75}}
    assert read_mixtures({"code": 1}) == {"mixture": {"code": 1}}
    pd.DataFrame({"code": [1.0, 0.5], "tables": [0.0, 0.5]}).to_parquet(tmp_path / "m.parquet")
    assert list(read_mixtures(tmp_path / "m.parquet")) == ["mix000", "mix001"]


def test_bad_mixture_files_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mixtures file not found"):
        read_mixtures(tmp_path / "none.csv")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(MixtureError, match="unsupported mixtures file type '.txt'"):
        read_mixtures(tmp_path / "m.txt")
    (tmp_path / "dup.csv").write_text("name,code,english\na,1,0\na,0,1\n")
    with pytest.raises(MixtureError, match="mixture name 'a' appears twice"):
        read_mixtures(tmp_path / "dup.csv")
    (tmp_path / "nocols.csv").write_text("name\na\n")
    with pytest.raises(MixtureError, match="no domain columns"):
        read_mixtures(tmp_path / "nocols.csv")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(MixtureError, match="not valid JSON"):
        read_mixtures(tmp_path / "bad.json")
    (tmp_path / "scalar.json").write_text("3")
    with pytest.raises(MixtureError, match="expected a JSON object"):
        read_mixtures(tmp_path / "scalar.json")
    with pytest.raises(MixtureError, match="expected DOMAIN=PROPORTION, got 'code'"):
        parse_mixture("code")
    with pytest.raises(MixtureError, match="not a number: 'x'"):
        parse_mixture("code=x")
    assert parse_mixture("code=0.25, english=0.75") == {"code": 0.25, "english": 0.75}


def test_design_has_baseline_led_and_dirichlet_mixtures_on_the_simplex():
    d = design_mixtures(DOMAINS, 16, seed=0)
    assert len(d) == 1 + len(DOMAINS) + 16
    assert d.loc[d["baseline"], "name"].tolist() == ["uniform"]
    values = d[DOMAINS].to_numpy()
    assert np.allclose(values.sum(axis=1), 1, atol=1e-12) and (values >= 0).all()
    assert values.std(axis=0).min() > 0.1
    assert design_mixtures(DOMAINS, 16, seed=0).equals(d)


def _sampler(mixture, seed=0, batch_size=64):
    arrays = {d: np.full(10_000, i, dtype=np.uint8) for i, d in enumerate(DOMAINS)}
    mix = validate_mixture(mixture, DOMAINS)
    return MixtureSampler(arrays, mix, batch_size=batch_size, seq_len=16, seed=seed)


def test_sampling_frequencies_match_the_mixture():
    mixture = {"code": 0.5, "english": 0.3, "spanish": 0.2, "tables": 0.0}
    sampler = _sampler(mixture)
    counts = np.zeros(len(DOMAINS))
    steps = 400
    for step in range(1, steps + 1):
        batch = sampler.batch(step)
        counts += np.bincount(batch[:, 0], minlength=len(DOMAINS))  # token value = domain index
    n = steps * sampler.batch_size
    expected = np.array([mixture[d] for d in DOMAINS])
    se = np.sqrt(expected * (1 - expected) / n)
    assert counts[3] == 0
    assert np.all(np.abs(counts / n - expected) <= 4 * se + 1e-12)


def test_batches_depend_only_on_seed_and_step():
    a, b = _sampler({"code": 0.5, "english": 0.5}), _sampler({"code": 0.5, "english": 0.5})
    assert np.array_equal(a.batch(7), b.batch(7)) and np.array_equal(a.batch(3), a.batch(3))
    assert not np.array_equal(a.domain_indices(7), _sampler({"code": 0.5, "english": 0.5}, seed=1).domain_indices(7))
    assert np.array_equal(a.domain_indices(5), a.batch(5)[:, 0])


def test_domains_too_short_for_a_sequence_are_rejected():
    arrays = {"code": np.zeros(5, dtype=np.uint8), "english": np.zeros(100, dtype=np.uint8)}
    with pytest.raises(MixtureError, match=r"too little training text.*code \(5 tokens\)"):
        MixtureSampler(arrays, {"code": 0.5, "english": 0.5}, batch_size=2, seq_len=16)
    MixtureSampler(arrays, {"code": 0.0, "english": 1.0}, batch_size=2, seq_len=16)  # unused domain is fine
