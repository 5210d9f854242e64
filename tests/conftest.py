"""Shared fixtures: the public anchor tables, skipped cleanly when absent; fits at known
parameters without a sampler (:func:`mocked_nuts`); a guard that fails any test without the
``slow`` marker that samples NUTS; compiled programs kept on disk across the workers."""

from __future__ import annotations

import contextlib
import functools
import os
from unittest import mock
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _anchors_dir() -> Path:
    env = os.environ.get("BAYESMIX_ANCHORS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "anchors"


@pytest.fixture(scope="session")
def anchors_dir() -> Path:
    """Folder of public result tables (``../shared/anchors``); skip without it."""
    path = _anchors_dir()
    if not path.is_dir():
        pytest.skip(f"anchor tables not found at {path}")
    return path


# ------------------------------------------------------------------ fits at known parameters, no sampler

MOCK_JITTER = 0.01  # relative spread of the mocked draws around the known parameters


def mock_nuts(model, model_kwargs, *, seed, config, init_values=None, chain_inits=None, coords=None, dims=None,
              attrs=None):
    """Stands in for :func:`bayesmix.inference.nuts.run_nuts` (same signature, same InferenceData groups)
    without sampling, in the manner of pymc-marketing's ``create_mock_fit``: the draws of every
    latent site are its known value (``init_values``: the point fit) times ``exp(MOCK_JITTER * z)``
    with z standard normal, and the deterministic sites, the log-likelihood and the posterior
    predictive follow from the model itself (``numpyro.infer.Predictive``, ``log_likelihood``).
    With ``chain_inits`` (one dict per chain) chain c's draws centre on its own values."""
    import json

    import arviz as az
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import Predictive
    from numpyro.infer.util import log_likelihood

    from bayesmix import __version__

    if init_values is None and chain_inits is None:
        raise ValueError("the mocked sampler needs known parameters (init_values)")
    chains, draws = config.num_chains, config.num_samples
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        per_chain_known = [known_sites(model, model_kwargs, values, seed)
                           for values in (chain_inits or [init_values] * chains)]
        latent = {k: np.concatenate([np.asarray(known[k], float)[None]
                                     * np.exp(MOCK_JITTER * rng.standard_normal((draws,) + np.shape(known[k])))
                                     for known in per_chain_known])
                  for k in per_chain_known[0]}
        latent = {k: jnp.asarray(v) for k, v in latent.items()}
        sites = Predictive(model, posterior_samples=latent)(jax.random.PRNGKey(seed), **{**model_kwargs, "y": None})
        loglik = log_likelihood(model, latent, **model_kwargs)["obs"]

    def per_chain(v):
        v = np.asarray(v)
        return v.reshape((chains, draws) + v.shape[1:])

    posterior = {k: per_chain(v) for k, v in {**sites, **latent}.items() if k != "obs"}
    idata = az.from_dict(
        posterior=posterior, posterior_predictive={"obs": per_chain(sites["obs"])},
        log_likelihood={"obs": per_chain(loglik)}, observed_data={"obs": np.asarray(model_kwargs["y"])},
        sample_stats={"diverging": np.zeros((chains, draws), bool), "n_steps": np.full((chains, draws), 7),
                      "energy": rng.standard_normal((chains, draws)),  # independent draws: E-BFMI near 2
                      "tree_depth": np.full((chains, draws), 3)},
        coords=dict(coords or {}), dims={**dict(dims or {}), "obs": ["obs_dim"]})
    idata.posterior.attrs.update(
        bayesmix_version=__version__, sampler=json.dumps(config.to_dict()), seed=int(seed), mocked=1,
        **{k: v if isinstance(v, (int, float, str)) else json.dumps(v) for k, v in (attrs or {}).items()})
    return idata


def known_sites(model, model_kwargs, init_values, seed: int) -> dict:
    """Every latent site's value: ``init_values`` where given, the prior median elsewhere."""
    from numpyro import handlers
    from numpyro.infer import init_to_median

    def value(site):
        if site.get("is_observed"):
            return None
        if site["name"] in init_values:
            return init_values[site["name"]]
        return init_to_median(site)

    trace = handlers.trace(handlers.substitute(handlers.seed(model, seed), substitute_fn=value)).get_trace(
        **model_kwargs)
    return {name: site["value"] for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]}


@contextlib.contextmanager
def mocked_nuts():
    """Inside this block, ``bayesmix.inference.fit.fit`` draws at the point fit instead of running NUTS."""
    with mock.patch("bayesmix.inference.fit.run_nuts", mock_nuts):
        yield


# ------------------------------------------------------------------ the fast tier samples no NUTS

_TIER = {"fast": False}


def _forbidden_in_fast_tier(fn, what: str):
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        if _TIER["fast"]:
            raise RuntimeError(f"{what} in a test without the slow marker: the fast tier samples no NUTS "
                               "(mark the test slow, or fit at known parameters with mocked_nuts)")
        return fn(*args, **kwargs)

    return guarded


COMPILE_CACHE = REPO_ROOT / ".jax-cache"  # shared by the workers, the notebooks' kernels and CLI subprocesses


def pytest_configure(config):
    """Compiled programs are kept in ``COMPILE_CACHE`` (unless ``BAYESMIX_COMPILE_CACHE`` says
    otherwise), as the command line keeps them; every NUTS entry point (numpyro's MCMC, the
    vmapped lanes) raises inside a fast test."""
    from bayesmix.inference.compilecache import ENV, use_compile_cache

    os.environ.setdefault(ENV, str(COMPILE_CACHE))
    use_compile_cache()

    from numpyro.infer import MCMC

    from bayesmix.inference.lanes import LaneSampler

    MCMC.run = _forbidden_in_fast_tier(MCMC.run, "numpyro MCMC")
    LaneSampler.__call__ = _forbidden_in_fast_tier(LaneSampler.__call__, "batched NUTS lanes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Module fixtures are built in the setup of the first test that asks for them: judge by that test."""
    _TIER["fast"] = item.get_closest_marker("slow") is None
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _TIER["fast"] = item.get_closest_marker("slow") is None
    yield
