"""Bootstrap of the multi-start point fit: the standard non-Bayesian intervals.

    boot = bootstrap(runs, "mix", seed=0, n_boot=200)
    table = boot.predict(mixtures=candidates)          # same columns as FitResult.predict

What a practitioner without a posterior would do: resample the runs with
replacement (within each model size, keeping every checkpoint and eval domain of
a drawn run together), refit the law's multi-start Huber point fit on each of the
B resamples, and read intervals off the percentiles of the B refitted
predictions (the percentile bootstrap, Efron and Tibshirani 1993).

* ``kind="mean"``: the B refitted means; the central ``prob`` interval is their
  (1 - prob)/2 and (1 + prob)/2 percentiles.
* ``kind="observation"``: each refitted mean plus ``noise_draws`` residuals of
  the full-data point fit drawn with replacement from the same eval domain (for
  an ``overall`` point, the weighted sum of one run's residuals), so intervals
  cover a loss one would measure, as the Bayesian predictive does.

Each resample is prepared by the law itself, so its centring (reference
mixture, reference step) may differ from the full data's; every replicate
predicts with its own metadata.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from bayesmix.inference.compare import match_observations, observation_inputs
from bayesmix.data.table import validate_runs
from bayesmix.inference.fit import PREDICTION_KINDS, labelled_draws, summarise_draws
from bayesmix.laws import Law, LawData, get_law
from bayesmix.laws.overall import OVERALL
from bayesmix.inference.progress import progress_enabled


@dataclasses.dataclass
class BootstrapResult:
    """Point fits on the full data and on B resamples of the runs."""

    law: Law
    data: LawData
    point: dict[str, np.ndarray]
    replicates: list[tuple[dict[str, np.ndarray], dict, dict]]  # (point fit, coords, meta) per resample
    residuals: dict[str, np.ndarray]  # eval label -> residuals of the full-data point fit
    seed: int

    @property
    def n_boot(self) -> int:
        return len(self.replicates)

    def replicate_means(self, **inputs) -> xr.DataArray:
        """Each replicate's point prediction at the query: (draw = replicate, point)."""
        query = self.law.query(self.data, **inputs)
        values = np.empty((self.n_boot, len(query.labels)))
        for b, (params, coords, meta) in enumerate(self.replicates):
            shell = LawData(arrays={}, y=np.empty(0), coords=coords, meta=meta, obs_index=pd.DataFrame())
            q = self.law.query(shell, **inputs)
            if len(q.labels) != len(query.labels):
                raise RuntimeError(f"resample {b} predicts {len(q.labels)} points, the full fit {len(query.labels)}")
            values[b] = self.law.mean_draws({k: np.asarray(v)[None] for k, v in params.items()}, q, meta)[0]
        return labelled_draws(values, query.labels)

    def predict(self, *, kind: str = "mean", prob: float = 0.9, draws: bool = False, seed: int = 0,
                noise_draws: int = 20, **inputs):
        """Percentile-bootstrap summary (DataFrame: labels, mean, sd, lower, upper) or draws
        (``xr.DataArray`` (draw, point)), as :meth:`bayesmix.inference.fit.FitResult.predict`."""
        if kind not in PREDICTION_KINDS:
            raise ValueError(f"kind must be one of {PREDICTION_KINDS}, got {kind!r}")
        if not 0 < prob < 1:
            raise ValueError(f"prob must lie in (0, 1), got {prob}")
        means = self.replicate_means(**inputs)
        if kind == "mean":
            return means if draws else summarise_draws(means, prob)
        if noise_draws < 1:
            raise ValueError(f"noise_draws must be >= 1, got {noise_draws}")
        rng = np.random.default_rng(seed)
        evals = means["eval"].to_numpy().astype(str) if "eval" in means.coords else np.full(means.shape[1], "")
        values = np.repeat(means.to_numpy(), noise_draws, axis=0)
        for label in np.unique(evals):
            pool = self.residuals.get(label, self.residuals["_all"])
            cols = np.flatnonzero(evals == label)
            values[:, cols] += rng.choice(pool, size=(values.shape[0], cols.size), replace=True)
        labels = pd.DataFrame({c: means[c].to_numpy() for c in means.coords if means[c].dims == ("point",)})
        array = labelled_draws(values, labels)
        return array if draws else summarise_draws(array, prob)

    def predict_point(self, **inputs) -> pd.DataFrame:
        """The full-data point fit's prediction: labels plus ``point``."""
        query = self.law.query(self.data, **inputs)
        labels = query.labels.copy()
        labels["point"] = self.law.mean_draws({k: np.asarray(v)[None] for k, v in self.point.items()},
                                              query, self.data.meta)[0]
        return labels


def resample_runs(runs: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Runs drawn with replacement within each model size; a run drawn twice appears as
    ``<run>#0``, ``<run>#1`` (all its rows kept together)."""
    per_run = runs.drop_duplicates("run")[["run", "size"]]
    chosen = np.concatenate([rng.choice(group["run"].to_numpy(), size=len(group), replace=True)
                             for _, group in per_run.groupby("size", sort=True)])
    copy = pd.Series(chosen).groupby(chosen).cumcount().to_numpy()
    positions = runs.groupby("run", sort=False).indices
    rows = [positions[run] for run in chosen]
    out = runs.iloc[np.concatenate(rows)].reset_index(drop=True)
    out["run"] = np.repeat([f"{run}#{k}" for run, k in zip(chosen, copy)], [len(r) for r in rows])
    return out


def _residual_pools(law: Law, data: LawData, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Residuals of the point fit at the observations, by eval label (plus ``overall`` and ``_all``)."""
    obs = data.obs_index.reset_index(drop=True)
    query = law.query(data, **observation_inputs(law, obs))
    fitted = law.mean_draws({k: np.asarray(v)[None] for k, v in point.items()}, query, data.meta)[0]
    resid = data.y - fitted[match_observations(query.labels, obs)]
    evals = obs["eval"].astype(str).to_numpy()
    pools = {e: resid[evals == e] for e in np.unique(evals)}
    pools["_all"] = resid
    weights = data.meta.get("weights")
    eval_names = list(data.coords.get("eval", []))
    if weights is not None and len(eval_names) > 1 and OVERALL not in pools:
        keys = [c for c in ("run", "size", "step") if c in obs.columns]
        wide = obs.assign(resid=resid, eval=evals).pivot_table(index=keys, columns="eval", values="resid")
        wide = wide.reindex(columns=eval_names).dropna()
        if len(wide):
            pools[OVERALL] = wide.to_numpy() @ np.asarray(weights)
    return pools


def bootstrap(runs: pd.DataFrame, law: str = "mix", *, seed: int, n_boot: int = 200, n_starts: int = 16,
              progress: bool | None = None, **law_options) -> BootstrapResult:
    """Point-fit ``law`` on the runs and on ``n_boot`` resamples of them (see the module docstring).

    ``law_options`` go to the law's ``prepare`` as in :func:`bayesmix.inference.fit.fit`.
    """
    import jax

    if int(n_boot) != n_boot or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    law_obj = get_law(law)
    runs = validate_runs(runs)
    data = law_obj.prepare(runs, **law_options)
    rng = np.random.default_rng(seed)
    replicates = []
    with jax.enable_x64(True):
        point = law_obj.point_fit(data, seed=seed, n_starts=n_starts)
        for b in tqdm(range(int(n_boot)), desc=f"bootstrap {law}", disable=not progress_enabled(progress)):
            sample = law_obj.prepare(resample_runs(runs, rng), **law_options)
            fitted = law_obj.point_fit(sample, seed=seed + 1 + b, n_starts=n_starts)
            replicates.append((fitted, sample.coords, sample.meta))
    residuals = _residual_pools(law_obj, data, point)
    return BootstrapResult(law_obj, data, point, replicates, residuals, seed)
