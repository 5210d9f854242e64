"""Rank laws fitted to the same losses by PSIS-LOO, with held-out error on a test table.

    table = compare_laws(runs, laws=["mix", "implicit", "bimix"], seed=0, test=test_runs)

Each law is fitted with NUTS (:func:`bayesmix.inference.fit.fit`); its pointwise
log-likelihood gives the Pareto-smoothed importance-sampling leave-one-out
estimate of the expected log predictive density, elpd_loo (Vehtari, Gelman and
Gabry 2017), and ``arviz.compare`` ranks the laws by it (higher is better; the
difference to the best law comes with its standard error ``dse``). LOO needs
every law to be fitted to the *same* observations, which is checked.

Pareto k > 0.7 means the importance weights of that observation are unreliable
(the observation is very influential); their count per law is a column and a
:class:`ParetoKWarning`. With a test table, each law also predicts the held-out
losses: MAE and Spearman of the predictive mean, and the share of held-out
losses inside the central 50% and 90% predictive intervals.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.data.table import validate_runs
from bayesmix.inference.fit import FitResult, fit
from bayesmix.inference.stacking import predictive_loo
from bayesmix.laws.mixtures import mix_columns

PARETO_K_MAX = 0.7
TEST_PROBS = (0.5, 0.9)


class ParetoKWarning(UserWarning):
    """Some observations have Pareto k above 0.7: that law's LOO estimate is unreliable."""


def _same_observations(fits: Mapping[str, FitResult]) -> None:
    """Raise when the fits' observations differ (LOO compares laws on the same data only)."""
    reference_name, reference = next(iter(fits.items()))
    y_ref = np.sort(np.asarray(reference.idata.observed_data["obs"]).ravel())
    for name, result in fits.items():
        y = np.sort(np.asarray(result.idata.observed_data["obs"]).ravel())
        if y.shape != y_ref.shape or not np.allclose(y, y_ref, rtol=0, atol=1e-9):
            raise ValueError(
                f"laws {reference_name!r} ({y_ref.size} observations) and {name!r} ({y.size}) were fitted to "
                "different losses; LOO compares laws fitted to the same observations only: choose options "
                "(evals=, step=, size=) so that every law sees the same losses"
            )


def loo_table(fits: Mapping[str, FitResult]) -> pd.DataFrame:
    """``arviz.compare`` of the fits by elpd_loo plus ``pareto_k_bad`` (count of k > 0.7).

    Warns with :class:`ParetoKWarning` naming each law that has such observations.
    """
    _same_observations(fits)
    loos, bad = {}, {}
    for name, result in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arviz's own k warning is replaced by ours, with the counts
            loos[name] = predictive_loo(result.idata, getattr(result, "stacking", None))
        bad[name] = int(np.sum(np.asarray(loos[name].pareto_k) > PARETO_K_MAX))
    for name, count in bad.items():
        if count:
            warnings.warn(f"law {name!r}: {count} of {fits[name].idata.observed_data['obs'].size} observations "
                          f"have Pareto k > {PARETO_K_MAX}; its elpd_loo is unreliable (influential runs: check "
                          "them, or compare on held-out data)", ParetoKWarning, stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loos, ic="loo", method="stacking")
    table.index.name = "law"
    table["pareto_k_bad"] = pd.Series(bad)
    return table.drop(columns=["warning", "scale"], errors="ignore")


def observation_inputs(law, obs: pd.DataFrame) -> dict:
    """Query inputs under which ``law`` predicts every row of ``obs`` (an ``obs_index``): the runs'
    mixtures labelled by run, plus the law's own extras (e.g. steps)."""
    if hasattr(law, "test_inputs"):
        return law.test_inputs(obs)
    frame = obs.drop_duplicates("run")
    return {"mixtures": frame[mix_columns(frame)].assign(mixture=frame["run"].astype(str).to_numpy())}


def match_observations(labels: pd.DataFrame, obs: pd.DataFrame) -> np.ndarray:
    """Index of the prediction point of each row of ``obs``, matching mixture (= run), eval,
    and size/step where the labels carry them."""
    keys = [c for c in ("eval", "size", "step") if c in labels.columns and c in obs.columns]
    left = obs[["run", *keys]].rename(columns={"run": "mixture"}).astype({"mixture": str})
    right = labels[["mixture", *keys]].assign(_point=np.arange(len(labels))).astype({"mixture": str})
    for key in keys:
        kind = str if key == "eval" else np.int64
        left[key] = left[key].astype(kind)
        right[key] = right[key].astype(kind)
    matched = left.merge(right, on=["mixture", *keys], how="left")
    if matched["_point"].isna().any():
        raise ValueError(f"could not match {int(matched['_point'].isna().sum())} observations to predictions")
    return matched["_point"].astype(int).to_numpy()


def held_out(result: FitResult, test: pd.DataFrame, law_options: Mapping | None = None, *,
             probs: Sequence[float] = TEST_PROBS, seed: int = 0) -> dict[str, float]:
    """MAE, Spearman and interval coverage of ``result``'s predictions of a test run table.

    The test table is read with the law's own ``prepare`` (same options), so the
    held-out losses are exactly the quantity the law was fitted to. ``result`` may
    be a :class:`FitResult` or anything with the same ``predict`` (a bootstrap).
    """
    test_data = result.law.prepare(validate_runs(test), **dict(law_options or {}))
    obs = test_data.obs_index.reset_index(drop=True)
    draws = result.predict(kind="observation", draws=True, seed=seed, **observation_inputs(result.law, obs))
    labels = pd.DataFrame({c: draws[c].to_numpy() for c in draws.coords if draws[c].dims == ("point",)})
    values = draws.to_numpy()[:, match_observations(labels, obs)]
    return interval_metrics(values, test_data.y, probs)


def interval_metrics(values: np.ndarray, observed: np.ndarray, probs: Sequence[float] = TEST_PROBS) -> dict:
    """MAE and Spearman of the mean of draws (draws, points), coverage of central intervals."""
    mean = values.mean(axis=0)
    out = {"test_mae": float(np.mean(np.abs(mean - observed))),
           "test_spearman": float(stats.spearmanr(mean, observed).statistic) if observed.size > 2 else float("nan")}
    for prob in probs:
        lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        out[f"test_cover{round(prob * 100)}"] = float(np.mean((lo <= observed) & (observed <= hi)))
    out["n_test"] = int(observed.size)
    return out


def compare_fits(fits: Mapping[str, FitResult], *, test: pd.DataFrame | None = None,
                 options: Mapping[str, Mapping] | None = None, seed: int = 0) -> pd.DataFrame:
    """Rank already fitted laws (name -> FitResult) by elpd_loo; add held-out columns when ``test``.

    ``options[name]`` are the law options used to fit ``name`` (needed to read the test table).
    """
    if len(fits) < 1:
        raise ValueError("compare needs at least one fit")
    table = loo_table(fits)
    table["diagnostics_ok"] = pd.Series({n: bool(f.diagnostics.ok) for n, f in fits.items()})
    table["rhat_max"] = pd.Series({n: float(f.diagnostics.rhat_max) for n, f in fits.items()})
    table["divergences"] = pd.Series({n: int(f.diagnostics.divergences) for n, f in fits.items()})
    table["chains_carrying"] = pd.Series({n: f.stacking.n_carrying if f.stacking is not None else np.nan
                                          for n, f in fits.items()})  # stacked fits: chains holding 90% of the weight
    if test is not None:
        rows = {n: held_out(f, test, (options or {}).get(n), seed=seed) for n, f in fits.items()}
        table = table.join(pd.DataFrame(rows).T)
    return table


def law_variants(laws: Sequence[str] | Mapping[str, str | tuple[str, Mapping]]) -> dict[str, tuple[str, dict]]:
    """label -> (law name, options of that variant). ``laws`` is a list of law names (each its
    own label) or a mapping label -> law name or (law name, options), e.g.
    ``{"implicit_K5": ("implicit", {"latent": 5}), "implicit_K30": ("implicit", {"latent": 30})}``."""
    if not isinstance(laws, Mapping):
        laws = list(laws)
        if len(set(laws)) != len(laws):
            raise ValueError(f"laws named twice: {laws}")
        laws = {name: name for name in laws}
    out = {}
    for label, spec in laws.items():
        name, opts = (spec, {}) if isinstance(spec, str) else spec
        out[str(label)] = (name, dict(opts))
    if not out:
        raise ValueError("name at least one law to compare")
    return out


def latent_grid(latents: Sequence[int], law: str = "implicit") -> dict[str, tuple[str, dict]]:
    """The K grid of the implicit law as comparison variants: ``{"implicit_K5": ("implicit", {"latent": 5}), ...}``."""
    if len(set(latents)) != len(latents):
        raise ValueError(f"latent counts named twice: {list(latents)}")
    return {f"{law}_K{int(k)}": (law, {"latent": int(k)}) for k in latents}


def compare_laws(runs: pd.DataFrame, laws: Sequence[str] | Mapping = ("mix", "implicit"), *, seed: int,
                 test: pd.DataFrame | None = None, sampler=None, priors: Mapping[str, Mapping] | None = None,
                 options: Mapping[str, Mapping] | None = None, strict: bool = False, combine: str = "pooled",
                 **common_options) -> pd.DataFrame:
    """Fit each law to ``runs`` with the same seed and rank them by PSIS-LOO.

    ``laws``: law names, or labelled variants (:func:`law_variants`; :func:`latent_grid`
    gives the implicit law's K grid). ``common_options`` (e.g. ``evals=["pile_cc"]``,
    ``size=``, ``step=``) go to every law's ``prepare``; ``options[law]`` adds
    law-specific ones (``{"bimix": {"epsilon": 1e-3}, "implicit": {"latent": 30}}``),
    keyed by law name or label; ``priors[law]`` overrides priors by name; ``strict``
    makes failed convergence diagnostics an error; ``combine`` goes to every fit
    (``"stacking"``: chains combined by stacking, and the LOO is the stacked
    mixture's). Returns one row per label, best first: ``rank``, ``elpd_loo``,
    ``p_loo``, ``elpd_diff``, ``weight`` (stacking across the laws: the weights of the
    best predictive mixture of them), ``se``, ``dse``,
    ``pareto_k_bad``, ``diagnostics_ok``, ``rhat_max``, ``divergences``,
    ``chains_carrying`` (stacked fits), ``seconds``, and with ``test`` the held-out
    ``test_mae``, ``test_spearman``, ``test_cover50``, ``test_cover90``, ``n_test``.
    """
    variants = law_variants(laws)
    keys = set(variants) | {name for name, _ in variants.values()}
    unknown = sorted(set(options or {}) - keys) + sorted(set(priors or {}) - keys)
    if unknown:
        raise ValueError(f"options/priors given for law(s) {sorted(set(unknown))} not being compared "
                         f"{list(variants)}")
    fits, seconds, used = {}, {}, {}
    for label, (name, variant_options) in variants.items():
        given = (options or {}).get(label, (options or {}).get(name, {}))
        used[label] = {**common_options, **dict(given), **variant_options}
        start = time.perf_counter()
        fits[label] = fit(runs, name, seed=seed, sampler=sampler, strict=strict, combine=combine,
                          priors=(priors or {}).get(label, (priors or {}).get(name)), **used[label])
        seconds[label] = time.perf_counter() - start
    table = compare_fits(fits, test=test, options=used, seed=seed)
    table["seconds"] = pd.Series(seconds)
    return table
