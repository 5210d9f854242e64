"""Law families. Each module holds a pure JAX mean function, a hierarchical
numpyro model and a multi-start point fitter; ``get_law`` looks one up by name."""

from __future__ import annotations

from bayesmix.laws.alternatives import M1Law, M2Law, M3Law
from bayesmix.laws.annealing import AnnealingStepLaw
from bayesmix.laws.base import Law, LawData, Query
from bayesmix.laws.bimix import BiMixLaw
from bayesmix.laws.implicit import ImplicitLaw
from bayesmix.laws.mixing import MixingLaw, m4_mean
from bayesmix.laws.multiscale import MultiScaleLaw
from bayesmix.laws.pooled_size import PooledSizeLaw
from bayesmix.laws.powerlaw import power_law_mean
from bayesmix.laws.priors import DEFAULT_PRIORS, resolve_priors
from bayesmix.laws.size import SizeLaw
from bayesmix.laws.step import StepLaw

LAWS: dict[str, Law] = {"step": StepLaw(), "size": SizeLaw(), "mix": MixingLaw()}
LAWS.update({law.name: law for law in (AnnealingStepLaw(), ImplicitLaw(), M1Law(), M2Law(), M3Law(), BiMixLaw(), MultiScaleLaw(), PooledSizeLaw())})


def get_law(name: str) -> Law:
    """The law registered under ``name``; unknown names list the known ones."""
    try:
        return LAWS[name]
    except KeyError:
        raise KeyError(f"unknown law {name!r}; known laws: {sorted(LAWS)}") from None


__all__ = ["LAWS", "AnnealingStepLaw", "DEFAULT_PRIORS", "Law", "LawData", "MixingLaw", "Query", "SizeLaw", "StepLaw",
           "get_law", "m4_mean", "power_law_mean", "resolve_priors",
           "BiMixLaw", "ImplicitLaw", "M1Law", "M2Law", "M3Law", "MultiScaleLaw", "PooledSizeLaw"]
