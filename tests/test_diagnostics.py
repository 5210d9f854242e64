"""The diagnostics gate on hand-built posteriors."""

import arviz as az
import numpy as np
import pytest

from bayesmix.diagnostics import DiagnosticsError, DiagnosticsWarning, check, diagnose


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
