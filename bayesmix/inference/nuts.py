"""NUTS runner: numpyro's sampler, results as ArviZ InferenceData.

Chains are vectorised on one device by default (``chain_method="vectorized"``);
``"parallel"`` spreads them over devices (GPUs, or CPU devices the caller made
with ``XLA_FLAGS=--xla_force_host_platform_device_count``). Sampling runs in
float64 inside ``jax.enable_x64(True)``: nothing global is flipped. JAX places
the computation on a GPU when it sees one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median, init_to_value
from numpyro.handlers import seed
from numpyro.infer.util import get_transforms, initialize_model, transform_fn

from bayesmix import __version__
from bayesmix.inference.progress import progress_enabled

CHAIN_METHODS = ("vectorized", "parallel", "sequential")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings, for one fit (:func:`run_nuts`) and for many datasets at once
    (:class:`bayesmix.inference.lanes.LaneSampler`, which reads ``jitter``: the spread of the
    chains' starts around the point fit, and ignores ``chain_method`` and ``progress_bar``).
    ``progress_bar=None`` shows a bar only in a terminal. ``adapt_warm_mass``: lanes started from
    an anchor fit (:class:`bayesmix.inference.lanes.WarmStart`) re-estimate their mass matrix in
    their own warm-up, starting from the anchor's (False: keep the anchor's, adapt the step size
    only). :meth:`for_lanes` gives the lanes' shorter defaults."""

    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    chain_method: str = "vectorized"
    target_accept_prob: float = 0.9
    max_tree_depth: int = 10
    dense_mass: bool = False
    progress_bar: bool | None = None
    jitter: float = 0.1
    adapt_warm_mass: bool = True

    def __post_init__(self):
        if self.chain_method not in CHAIN_METHODS:
            raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {self.chain_method!r}")
        for name in ("num_chains", "num_warmup", "num_samples"):
            if int(getattr(self, name)) < (0 if name == "num_warmup" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {self.target_accept_prob}")
        if not 1 <= self.max_tree_depth <= 15:
            raise ValueError(f"max_tree_depth must lie in 1..15, got {self.max_tree_depth}")

    @classmethod
    def for_lanes(cls, num_chains: int = 2, num_warmup: int = 300, num_samples: int = 150,
                  **settings) -> SamplerConfig:
        """The defaults for many datasets sampled at once: 2 chains of 300 warm-up and 150 kept
        iterations, target acceptance 0.85, tree depth at most 8 (each lane is one of many:
        short chains, shallow trees); ``settings`` override any field."""
        return cls(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
                   **{"target_accept_prob": 0.85, "max_tree_depth": 8, **settings})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_nuts(
    model: Callable,
    model_kwargs: Mapping,
    *,
    seed: int,
    config: SamplerConfig = SamplerConfig(),
    init_values: Mapping[str, np.ndarray] | None = None,
    chain_inits: Sequence[Mapping[str, np.ndarray]] | None = None,
    coords: Mapping[str, list] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> az.InferenceData:
    """Sample ``model(**model_kwargs)`` with NUTS; return InferenceData.

    Groups: posterior, sample_stats, log_likelihood, observed_data,
    posterior_predictive (site ``obs``). ``chain_inits``: one dict of sample-site
    values per chain (chains started apart, e.g. from different point fits);
    it overrides ``init_values``. ``attrs`` (plus the sampler config and
    the package version) are stored on the posterior group as JSON-able values.
    """
    if seed is None:
        raise ValueError("a seed is required")
    with jax.enable_x64(True):
        init = (init_to_value(values={k: jnp.asarray(v, dtype=jnp.float64) for k, v in init_values.items()})
                if init_values else init_to_median)
        kernel = NUTS(model, init_strategy=init, target_accept_prob=config.target_accept_prob,
                      max_tree_depth=config.max_tree_depth, dense_mass=config.dense_mass)
        mcmc = MCMC(kernel, num_warmup=config.num_warmup, num_samples=config.num_samples,
                    num_chains=config.num_chains, chain_method=config.chain_method,
                    progress_bar=progress_enabled(config.progress_bar))
        key = jax.random.PRNGKey(seed)
        starts = None if chain_inits is None else per_chain_starts(model, model_kwargs, chain_inits,
                                                                  config.num_chains, key)
        mcmc.run(key, **model_kwargs, init_params=starts, extra_fields=("diverging", "energy", "num_steps"))
        samples = mcmc.get_samples()
        predictive = Predictive(model, samples)(jax.random.fold_in(key, 1), **{**model_kwargs, "y": None})
    ppc = {"obs": np.asarray(predictive["obs"]).reshape(config.num_chains, config.num_samples, -1)}
    idata = az.from_numpyro(mcmc, coords=dict(coords or {}), dims=dict(dims or {}), log_likelihood=True)
    extra = [v for v in idata.log_likelihood.data_vars if v != "obs"]
    if extra:  # numpyro.factor terms (prior pieces) are not observations: keep LOO on "obs" only
        idata.log_likelihood = idata.log_likelihood.drop_vars(extra)
    idata.add_groups(posterior_predictive=az.from_dict(posterior_predictive=ppc,
                                                       dims={"obs": ["obs_dim"]}).posterior_predictive)
    idata.posterior.attrs.update(
        bayesmix_version=__version__,
        sampler=json.dumps(config.to_dict()),
        seed=int(seed),
        **{k: v if isinstance(v, (int, float, str)) else json.dumps(v) for k, v in (attrs or {}).items()},
    )
    return idata


def per_chain_starts(model: Callable, model_kwargs: Mapping, chain_inits: Sequence[Mapping], num_chains: int,
                     key) -> dict:
    """Unconstrained starting points, one per chain (leading axis ``num_chains``), from
    sample-site values; sites a dict leaves out start where numpyro's default puts chain 0
    (uniform in (-2, 2), unconstrained). One model initialisation serves every chain."""
    if len(chain_inits) != num_chains:
        raise ValueError(f"chain_inits holds {len(chain_inits)} starts for {num_chains} chains")
    first = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in chain_inits[0].items()}
    info = initialize_model(key, model, model_kwargs=dict(model_kwargs), init_strategy=init_to_value(values=first))
    constrained = info.postprocess_fn(info.param_info.z)
    transforms = get_transforms(seed(model, key), (), dict(model_kwargs), constrained)
    starts = []
    for values in chain_inits:
        sites = {k: jnp.asarray(values.get(k, constrained[k]), dtype=jnp.float64) for k in info.param_info.z}
        starts.append(transform_fn(transforms, sites, invert=True))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *starts)


def posterior_draws(idata: az.InferenceData, names) -> dict[str, np.ndarray]:
    """Named posterior variables with chains and draws flattened: (draws, ...)."""
    post = idata.posterior
    return {n: post[n].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy() for n in names}


def save_idata(idata: az.InferenceData, path) -> None:
    """Write InferenceData to netCDF."""
    idata.to_netcdf(str(path))


def load_idata(path) -> az.InferenceData:
    """Read InferenceData from netCDF."""
    return az.from_netcdf(str(path))

