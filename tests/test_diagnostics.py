"""The diagnostics gate on hand-built posteriors."""

import json

import arviz as az
import numpy as np
import pytest

from bayesmix.inference.diagnostics import DiagnosticsError, DiagnosticsWarning, check, diagnose, treedepth_saturation


def idata_from(chains: np.ndarray, diverging=None, energy=None) -> az.InferenceData:
    stats = {}
    if diverging is not None:
        stats["diverging"] = diverging
    if energy is not None:
        stats["energy"] = energy
    return az.from_dict(posterior={"x": chains}, sample_stats=stats or None)


def test_well_mixed_chains_pass():
    rng = np.random.default_rng(0)
    idata = idata_from(rng.standard_normal((4, 1000)), diverging=np.zeros((4, 1000), bool),
                       energy=rng.standard_normal((4, 1000)))
    d = diagnose(idata)
    assert d.ok and d.problems == ()
    assert d.rhat_max < 1.01 and d.ess_bulk_min > 400 and d.divergences == 0
    assert check(d) is d


def test_stuck_chains_fail_with_numbers():
    rng = np.random.default_rng(0)
    chains = rng.standard_normal((4, 500)) * 0.1 + np.array([0.0, 0.0, 0.0, 5.0])[:, None]
    diverging = np.zeros((4, 500), bool)
    diverging[0, :3] = True
    energy = np.cumsum(rng.standard_normal((4, 500)), axis=1)  # random walk energy: tiny E-BFMI
    d = diagnose(idata_from(chains, diverging, energy))
    assert not d.ok
    text = "; ".join(d.problems)
    assert "R-hat" in text and "bulk ESS" in text and "3 divergent transitions" in text and "E-BFMI" in text
    with pytest.warns(DiagnosticsWarning, match=r"fit: convergence diagnostics failed: R-hat \d\.\d+ > 1.01"):
        check(d)
    with pytest.raises(DiagnosticsError, match="3 divergent transitions"):
        check(d, strict=True)


def saturated_idata(depth: np.ndarray, max_tree_depth=8) -> az.InferenceData:
    """Stuck chains whose trees reached ``depth`` (chain, draw), with the sampler's limit recorded."""
    rng = np.random.default_rng(1)
    chains = rng.standard_normal(depth.shape) * 0.1 + np.arange(depth.shape[0])[:, None]
    idata = az.from_dict(posterior={"x": chains}, sample_stats={"tree_depth": depth})
    if max_tree_depth is not None:
        idata.posterior.attrs["sampler"] = json.dumps({"max_tree_depth": max_tree_depth})
    return idata


def test_treedepth_saturation_is_the_share_of_trees_at_the_limit():
    depth = np.full((2, 100), 5)
    depth[0, :30] = 8
    depth[1, :10] = 8
    d = diagnose(saturated_idata(depth))
    assert d.max_tree_depth == 8
    assert d.treedepth_saturation == pytest.approx(0.2)
    assert treedepth_saturation({"tree_depth": depth}, 5) == 1.0
    assert np.isnan(treedepth_saturation({"tree_depth": depth}, None))
    assert np.isnan(diagnose(saturated_idata(depth, max_tree_depth=None)).treedepth_saturation)


def test_failed_fit_with_saturated_trees_says_nuts_moved_as_a_random_walk():
    saturated = diagnose(saturated_idata(np.full((2, 100), 8)))
    assert not saturated.ok and saturated.treedepth_saturation == 1.0
    assert not any("tree" in p for p in saturated.problems)  # an efficiency signal, not a failure of its own
    with pytest.warns(DiagnosticsWarning, match=r"100% of transitions hit max_tree_depth=8, so NUTS moved as a random walk"):
        check(saturated)
    shallow = diagnose(saturated_idata(np.full((2, 100), 4)))
    with pytest.warns(DiagnosticsWarning) as record:
        check(shallow)
    assert "max_tree_depth" not in str(record[0].message)
