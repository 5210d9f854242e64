"""Fit a law to a run table and predict from it.

    result = fit(runs, law="mix", seed=0)
    table = result.predict(mixtures=candidates)        # mean, sd, lower, upper per (mixture, eval)
    draws = result.predict(mixtures=candidates, draws=True)   # xarray (draw, point)

A fit is the point fit (the baseline and NUTS's starting point), the NUTS
posterior as InferenceData, and its diagnostics. ``save``/``load_fit`` use
netCDF only.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data.table import MIX_PREFIX, absent_domains, validate_runs
from bayesmix.inference.diagnostics import Diagnostics, Thresholds, adequacy_problems, check, diagnose, loo_r2
from bayesmix.inference.nuts import SamplerConfig, load_idata, posterior_draws, run_nuts, save_idata
from bayesmix.inference.stacking import (
    COMBINE_MODES,
    Stacking,
    predictive_loo,
    stack_chains,
    stacked_diagnostics,
    stacked_draws,
)
from bayesmix.laws import Law, LawData, get_law, resolve_priors
from bayesmix.data.io import atomic_path, jsonable

PREDICTION_KINDS = ("observation", "mean")
FIT_ATTRIBUTES = ("law", "law_coords", "law_meta", "point_fit", "priors")  # posterior attributes of a saved fit


@dataclasses.dataclass
class FitResult:
    """A fitted law: ``law``, the prepared ``data``, ``idata``, ``point`` fit, ``diagnostics``;
    ``stacking`` when the chains were combined by stacking (:mod:`bayesmix.inference.stacking`)."""

    law: Law
    data: LawData
    idata: az.InferenceData
    point: dict[str, np.ndarray]
    diagnostics: Diagnostics
    priors: dict[str, float]
    stacking: Stacking | None = None

    def posterior(self) -> dict[str, np.ndarray]:
        """Natural parameters, chains flattened: name -> (draws, ...). A stacked fit gives the
        stacked mixture: each chain's draws in proportion to its weight."""
        if self.stacking is not None and self.stacking.ok:
            return stacked_draws(self.idata.posterior, self.law.param_dims, self.stacking.weights)
        return posterior_draws(self.idata, self.law.param_dims)

    def loo(self) -> az.ELPDData:
        """PSIS-LOO of the fit's predictive (pointwise; a stacked fit's is the stacked mixture's)."""
        return predictive_loo(self.idata, self.stacking)

    def predict(self, *, kind: str = "mean", prob: float = 0.9, draws: bool = False,
                seed: int = 0, **inputs):
        """Predictive summary (DataFrame) or draws (``xr.DataArray`` (draw, point)).

        ``inputs`` are the law's query (``mixtures=``, ``steps=`` or ``sizes=``).
        ``kind="mean"`` (the default, as :meth:`bayesmix.pipeline.result.PipelineResult.predict`)
        is the law's mean loss; ``kind="observation"`` adds the fitted Student-t noise (an
        interval for the loss one run would measure).
        """
        if kind not in PREDICTION_KINDS:
            raise ValueError(f"kind must be one of {PREDICTION_KINDS}, got {kind!r}")
        if not 0 < prob < 1:
            raise ValueError(f"prob must lie in (0, 1), got {prob}")
        query = self.law.query(self.data, **inputs)
        params = self.posterior()
        with jax.enable_x64(True):
            values = np.asarray(self.law.mean_draws(params, query, self.data.meta), dtype=float)
        if kind == "observation":
            scale = self.law.noise_scale(params, query, self.data.meta)
            values = values + scale * student_t_noise(self.priors["student_df"], values.shape, seed)
        array = labelled_draws(values, query.labels)
        return array if draws else summarise_draws(array, prob)

    def predict_point(self, **inputs) -> pd.DataFrame:
        """The point fit's prediction (the paper's baseline): labels plus ``point``."""
        query = self.law.query(self.data, **inputs)
        params = {k: np.asarray(v)[None] for k, v in self.point.items()}
        labels = query.labels.copy()
        with jax.enable_x64(True):
            labels["point"] = np.asarray(self.law.mean_draws(params, query, self.data.meta)[0], dtype=float)
        return labels

    def summary(self) -> pd.DataFrame:
        """ArviZ summary of the natural parameters."""
        return az.summary(self.idata, var_names=list(self.law.param_dims))

    def save(self, path) -> Path:
        """Write the fit to one netCDF file (InferenceData; law metadata in attributes)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            save_idata(self.idata, tmp)
        return path


def student_t_noise(df: float, shape, seed: int) -> np.ndarray:
    """Standard Student-t draws (Normal when ``df`` is infinite)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) if np.isinf(df) else rng.standard_t(df, shape)


def labelled_draws(values: np.ndarray, labels: pd.DataFrame) -> xr.DataArray:
    """Draws (draws, points) as a DataArray whose ``point`` coords are the label columns."""
    coords = {col: ("point", labels[col].to_numpy()) for col in labels.columns}
    return xr.DataArray(values, dims=("draw", "point"), coords=coords, name="loss")


def summarise_draws(draws: xr.DataArray, prob: float = 0.9) -> pd.DataFrame:
    """Mean, sd and the central ``prob`` interval (``lower``, ``upper``) per point."""
    values = draws.to_numpy()
    alpha = (1 - prob) / 2
    table = pd.DataFrame({c: draws[c].to_numpy() for c in draws.coords if draws[c].dims == ("point",)})
    table["mean"] = values.mean(axis=0)
    table["sd"] = values.std(axis=0, ddof=1) if values.shape[0] > 1 else 0.0
    table["lower"] = np.quantile(values, alpha, axis=0)
    table["upper"] = np.quantile(values, 1 - alpha, axis=0)
    table.attrs["prob"] = prob
    return table


def fit_diagnostics(idata: az.InferenceData, law: Law) -> Diagnostics:
    """Convergence diagnostics plus, for a law over mixtures, the held-out R^2 of each eval domain
    (a problem when the law explains less than a constant; see :func:`bayesmix.inference.diagnostics.loo_r2`)."""
    diagnostics = diagnose(idata, var_names=diagnostic_vars(law))
    groups = _eval_groups(idata)
    if groups is None:
        return diagnostics
    r2 = loo_r2(idata, groups)
    return dataclasses.replace(diagnostics, loo_r2=r2, problems=diagnostics.problems + adequacy_problems(r2))


def _eval_groups(idata: az.InferenceData) -> np.ndarray | None:
    """The eval domain of each observation of a fit over mixtures, else None."""
    groups = set(idata.groups())
    if not {"constant_data", "log_likelihood", "posterior_predictive", "observed_data"} <= groups:
        return None
    const = idata.constant_data
    if "eval" not in const or not any(str(v).startswith(MIX_PREFIX) for v in const.data_vars):
        return None
    if const["eval"].size != idata.observed_data["obs"].size:
        return None
    return const["eval"].to_numpy().astype(str)


def warn_absent_domains(rows: pd.DataFrame) -> None:
    """Warn, naming them, about training domains that are 0 in every run of ``rows``."""
    absent = absent_domains(rows)
    if absent:
        warnings.warn(f"domain(s) {absent} are 0 in every run: the data say nothing about them, so their "
                      "coefficients come from the prior alone (predictions for mixtures that use them are "
                      "guesses)", UserWarning, stacklevel=3)


def diagnostic_vars(law: Law) -> list[str]:
    """Variables whose convergence is checked: the law's ``diagnostic_vars`` when it names
    them (label-invariant quantities such as predictions), else its natural parameters."""
    return list(getattr(law, "diagnostic_vars", None) or law.param_dims)


def fit(
    runs: pd.DataFrame,
    law: str = "mix",
    *,
    seed: int,
    priors: dict[str, float] | None = None,
    sampler: SamplerConfig | dict | None = None,
    init: str = "point",
    n_starts: int = 16,
    strict: bool = False,
    combine: str = "pooled",
    **law_options,
) -> FitResult:
    """Fit ``law`` ("step", "size", "mix", ...) to a run table with NUTS.

    ``law_options`` go to the law's ``prepare`` (e.g. ``min_step=``, ``size=``,
    ``step=``, ``evals=``, ``weights=``). ``init="point"`` starts NUTS at the
    multi-start Huber fit, ``"median"`` at the prior median. With ``strict`` a
    failed diagnostic raises instead of warning.

    ``combine="stacking"`` is for posteriors whose chains do not mix (several
    modes NUTS cannot cross): each chain starts from its own multi-start point fit
    (``n_starts // num_chains`` starts each, at least 2, seeds ``seed + chain``; the
    fit's ``point`` stays the full ``n_starts`` fit), is
    judged on its own, and the chains are weighted by stacking their PSIS-LOO
    predictive densities (:mod:`bayesmix.inference.stacking`); use 8 or more chains.
    ``"pooled"`` (default) treats all chains as one sample.
    """
    if init not in ("point", "median"):
        raise ValueError(f"init must be 'point' or 'median', got {init!r}")
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    config = sampler if isinstance(sampler, SamplerConfig) else SamplerConfig(**(sampler or {}))
    law_obj = get_law(law)
    prior_values = resolve_priors(law, priors)
    data = law_obj.prepare(validate_runs(runs), **law_options)
    if "domains" in data.meta:
        warn_absent_domains(data.obs_index)
    with jax.enable_x64(True):
        point = law_obj.point_fit(data, seed=seed, n_starts=n_starts)
        init_values = law_obj.init_values(data, point, prior_values) if init == "point" else None
        chain_inits = None
        if combine == "stacking":
            per_chain = max(2, n_starts // config.num_chains)
            starts = [law_obj.point_fit(data, seed=seed + c, n_starts=per_chain) for c in range(config.num_chains)]
            chain_inits = [law_obj.init_values(data, p, prior_values) for p in starts]
        model_data = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in data.arrays.items()}
        attrs = {
            "law": law,
            "law_options": jsonable(law_options),
            "priors": prior_values,
            "law_meta": jsonable(data.meta),
            "law_coords": jsonable(data.coords),
            "point_fit": jsonable(point),
            "combine": combine,
        }
        idata = run_nuts(
            law_obj.model,
            {"data": model_data, "priors": prior_values, "y": jnp.asarray(data.y)},
            seed=seed,
            config=config,
            init_values=init_values,
            chain_inits=chain_inits,
            coords=data.coords,
            dims=law_obj.param_dims,
            attrs=attrs,
        )
    idata.add_groups(constant_data=xr.Dataset.from_dataframe(
        data.obs_index.astype({c: str for c in data.obs_index.columns if data.obs_index[c].dtype == object})
        .rename_axis("obs_dim")))
    diagnostics, stacking = combined_diagnostics(idata, law_obj)
    diagnostics = check(diagnostics, strict=strict, what=f"law {law!r}")
    return FitResult(law_obj, data, idata, point, diagnostics, prior_values, stacking)


def combined_diagnostics(idata: az.InferenceData, law: Law) -> tuple[Diagnostics, Stacking | None]:
    """The fit's diagnostics, and its stacking when the posterior says the chains were combined so."""
    diagnostics = fit_diagnostics(idata, law)
    if idata.posterior.attrs.get("combine", "pooled") != "stacking":
        return diagnostics, None
    mixed = diagnostics.rhat_max <= Thresholds().rhat_max  # the chains agree: equal weights
    stacking = stack_chains(idata, diagnostic_vars(law), mixed=bool(mixed))
    return stacked_diagnostics(diagnostics, stacking), stacking


def load_fit(path) -> FitResult:
    """Read a fit written by ``FitResult.save``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit at {path}")
    try:
        idata = load_idata(path)
    except Exception as exc:  # noqa: BLE001 - whatever the netCDF readers say, the file is not a fit
        raise ValueError(f"{path} is not a bayesmix fit: not a readable netCDF file "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if "posterior" not in idata.groups():
        raise ValueError(f"{path} is not a bayesmix fit: it holds no posterior (groups: {idata.groups() or 'none'})")
    attrs = idata.posterior.attrs
    missing = [k for k in FIT_ATTRIBUTES if k not in attrs]
    if missing:
        raise ValueError(f"{path} is not a bayesmix fit: its posterior lacks the attribute(s) {missing}")
    law = get_law(attrs["law"])
    try:
        coords, meta, priors = (json.loads(attrs[k]) for k in ("law_coords", "law_meta", "priors"))
        point = {k: np.asarray(v) for k, v in json.loads(attrs["point_fit"]).items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is not a bayesmix fit: unreadable law attributes ({exc})") from None
    missing = [name for name in law.param_dims if name not in idata.posterior]
    if missing:
        raise ValueError(f"{path} is not a bayesmix fit of law {attrs['law']!r}: its posterior lacks {missing}")
    data = LawData(arrays={}, y=np.empty(0), coords=coords, meta=meta, obs_index=pd.DataFrame())
    diagnostics, stacking = combined_diagnostics(idata, law)
    return FitResult(law, data, idata, point, diagnostics, priors, stacking)
