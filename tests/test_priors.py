import math

import pytest

from bayesmix.laws.priors import DEFAULT_PRIORS, resolve_priors


def test_defaults_are_returned_as_a_copy():
    priors = resolve_priors("mix")
    priors["noise_scale"] = 99.0
    assert DEFAULT_PRIORS["mix"]["noise_scale"] == 0.05


def test_override_by_name():
    priors = resolve_priors("step", {"exponent_log_loc": 0.0, "student_df": math.inf})
    assert priors["exponent_log_loc"] == 0.0
    assert math.isinf(priors["student_df"])
    assert priors["level_sd"] == DEFAULT_PRIORS["step"]["level_sd"]


def test_unknown_prior_name_is_an_error_listing_valid_names():
    with pytest.raises(KeyError, match=r"unknown prior name\(s\) \['noise'\] for law 'mix'; valid names: .*noise_scale"):
        resolve_priors("mix", {"noise": 0.1})


def test_unknown_law_is_an_error():
    with pytest.raises(KeyError, match="no priors for law 'nope'"):
        resolve_priors("nope")
