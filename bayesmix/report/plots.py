"""Figures of fits, predictions and decisions; every function returns a matplotlib Figure.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot
state, safe under the Agg backend and in threads) and take plain, labelled
inputs so they work on any source of draws:

* ``fan_chart(draws, observed, x="step")``: predicted loss vs steps or size,
  nested central intervals (a "fan") around the median, observed points on top;
* ``mixing_surface(loss_fn, domains)``: the predicted loss over the simplex
  (ternary for 3 domains, pairwise slices for more, a line for 2);
* ``predicted_vs_observed(table)``: predictions with intervals against
  measured losses, with the interval coverage written on the plot;
* ``acquisition_landscape(candidates)``: an acquisition value over candidate
  mixtures (ternary for 3 domains, a 2-D principal-component projection else);
* ``error_budget_bars(budget)``: each stage's share of the predictive variance;
* ``posterior_predictive(idata)``: ArviZ's posterior predictive check;
* ``risk_ranking(draws)`` and ``capability_balance(table)``: candidate
  mixtures' loss distributions and their per-eval-domain losses.

Draws are ``xr.DataArray`` with dims ``(draw, point)`` and label coords on
``point`` (as returned by ``predict(..., draws=True)``).
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
DEFAULT_PROBS = (0.5, 0.8, 0.95)
MAX_SLICE_DOMAINS = 5


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (rendered with Agg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _new_axes(ax=None, *, figsize=(6.4, 4.2)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _point_frame(draws: xr.DataArray) -> pd.DataFrame:
    """The label coords of a (draw, point) DataArray as a DataFrame (one row per point)."""
    if set(draws.dims) != {"draw", "point"}:
        raise ValueError(f"draws must have dims ('draw', 'point'), got {draws.dims}")
    return pd.DataFrame({c: draws[c].to_numpy() for c in draws.coords if draws[c].dims == ("point",)})


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} needs column(s) {missing}; got {list(frame.columns)}")


def _domains_of(frame: pd.DataFrame) -> list[str]:
    return [c[len(MIX_PREFIX):] for c in mix_columns(frame)]


def quantile_bands(draws: xr.DataArray, probs: Sequence[float] = DEFAULT_PROBS) -> pd.DataFrame:
    """Per point: median and the central ``prob`` interval for each ``prob``.

    Columns: the point labels, ``median``, and ``lower_<p>``/``upper_<p>`` with p
    in percent (e.g. ``lower_90``); quantiles (1 -/+ p) / 2 over ``draw``.
    """
    frame = _point_frame(draws)
    values = draws.transpose("draw", "point").to_numpy()
    frame["median"] = np.median(values, axis=0)
    for p in probs:
        if not 0 < p < 1:
            raise ValueError(f"probabilities must lie in (0, 1), got {p}")
        tag = f"{round(100 * p):d}"
        frame[f"lower_{tag}"] = np.quantile(values, (1 - p) / 2, axis=0)
        frame[f"upper_{tag}"] = np.quantile(values, (1 + p) / 2, axis=0)
    return frame


def fan_chart(
    draws: xr.DataArray,
    observed: pd.DataFrame | None = None,
    *,
    x: str = "step",
    group: str | None = None,
    probs: Sequence[float] = DEFAULT_PROBS,
    target: float | None = None,
    log_x: bool = True,
    max_groups: int = 8,
    style: str = "band",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Fan chart of predicted loss vs ``x`` ("step" or "size") with observed points.

    ``draws``: (draw, point) with a point coord ``x`` (and ``group`` when given,
    e.g. ``run``): bands are the central ``probs`` intervals, darker for narrower
    ones, around the median. ``observed``: rows with columns ``x``, ``loss`` (and
    ``group``). ``target`` draws a vertical line at the target step/size. At most
    ``max_groups`` groups are drawn (the first ones in label order). ``style="bars"``
    draws the intervals as nested error bars at each x (for a few scattered x,
    e.g. model sizes, where bands would interpolate between them).
    """
    if style not in ("band", "bars"):
        raise ValueError(f"style must be 'band' or 'bars', got {style!r}")
    bands = quantile_bands(draws, probs)
    _require(bands, [x] + ([group] if group else []), "fan_chart draws")
    if observed is not None:
        _require(observed, [x, "loss"] + ([group] if group else []), "fan_chart observed")
    fig, ax = _new_axes(ax)
    groups = sorted(bands[group].unique(), key=str)[:max_groups] if group else [None]
    order = sorted(probs, reverse=True)
    for k, g in enumerate(groups):
        colour = PALETTE[k % len(PALETTE)]
        part = bands if g is None else bands[bands[group] == g]
        part = part.sort_values(x)
        for i, p in enumerate(order):
            tag = f"{round(100 * p):d}"
            label = f"{tag}% interval" if k == 0 and len(groups) == 1 else None
            if style == "band":
                ax.fill_between(part[x], part[f"lower_{tag}"], part[f"upper_{tag}"], color=colour,
                                alpha=0.12 + 0.12 * i, linewidth=0, label=label)
            else:
                ax.vlines(part[x], part[f"lower_{tag}"], part[f"upper_{tag}"], color=colour,
                          alpha=0.3 + 0.3 * i, lw=2 + 3 * i, label=label)
        ax.plot(part[x], part["median"], color=colour, lw=1.6 if style == "band" else 0.8,
                ls="-" if style == "band" else ":", marker=None if style == "band" else "o", ms=4,
                label=str(g) if g is not None else "median")
        if observed is not None:
            obs = observed if g is None else observed[observed[group].astype(str) == str(g)]
            ax.scatter(obs[x], obs["loss"], s=14, color=colour, edgecolor="black", linewidth=0.4, zorder=3,
                       label="observed" if k == 0 and len(groups) == 1 else None)
    if target is not None:
        ax.axvline(target, color="black", ls="--", lw=1)
        ax.annotate("target", (target, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel({"step": "training steps", "size": "non-embedding parameters"}.get(x, x))
    ax.set_ylabel("validation loss (nats)")
    ax.set_title(title or f"predicted loss vs {x} ({', '.join(f'{round(100 * p)}%' for p in order)} intervals)",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2 if len(groups) > 4 else 1)
    ax.grid(alpha=0.3)
    return fig


def simplex_grid(n_domains: int, resolution: int) -> np.ndarray:
    """Every mixture with proportions in multiples of 1/``resolution``: (n, n_domains).

    n = C(resolution + n_domains - 1, n_domains - 1) (stars and bars).
    """
    if n_domains < 2 or resolution < 1:
        raise ValueError(f"need n_domains >= 2 and resolution >= 1, got {n_domains}, {resolution}")
    rows = []
    for bars in itertools.combinations(range(resolution + n_domains - 1), n_domains - 1):
        edges = (-1, *bars, resolution + n_domains - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_domains)])
    return np.asarray(rows, dtype=float) / resolution


def pair_slice(reference: np.ndarray, i: int, j: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mixtures with r_i = a, r_j = b and the rest (1 - a - b) shared as in ``reference``.

    ``reference`` (M,), a and b (n,) with a + b <= 1: returns (n, M). When the
    reference puts no mass outside i and j the rest is shared equally.
    """
    reference = np.asarray(reference, float)
    rest = np.delete(np.arange(reference.size), [i, j])
    weights = reference[rest]
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(rest.size, 1.0 / max(rest.size, 1))
    r = np.zeros((a.size, reference.size))
    r[:, i], r[:, j] = a, b
    r[:, rest] = (1.0 - a - b)[:, None] * weights[None, :]
    return r


def _as_matrix(mixtures, domains: list[str]) -> np.ndarray:
    if mixtures is None:
        return np.empty((0, len(domains)))
    if isinstance(mixtures, pd.DataFrame):
        cols = [d if d in mixtures.columns and MIX_PREFIX + d not in mixtures.columns else MIX_PREFIX + d
                for d in domains]
        _require(mixtures, cols, "mixtures")
        return mixtures[cols].to_numpy(float)
    return np.atleast_2d(np.asarray(mixtures, float))


def mixing_surface(
    loss_fn: Callable[[np.ndarray], np.ndarray],
    domains: Sequence[str],
    *,
    observed=None,
    best=None,
    reference=None,
    resolution: int = 40,
    label: str = "predicted loss",
    max_domains: int = MAX_SLICE_DOMAINS,
    title: str | None = None,
) -> Figure:
    """The predicted loss over the simplex of training mixtures.

    ``loss_fn(r (n, M)) -> (n,)``: e.g. the posterior mean of the overall loss.
    3 domains: a ternary heat map (mpltern). More: one triangle per pair (i, j)
    of the ``max_domains`` domains with most weight in ``reference``, varying
    r_i and r_j with the remaining mass shared as in ``reference`` (default
    ``best``, else uniform). 2 domains: a line in r_1. ``observed`` (mixtures
    tried) are drawn as dots, ``best`` as a star.
    """
    domains = list(domains)
    M = len(domains)
    if M < 2:
        raise ValueError("a mixing surface needs at least two domains")
    obs = _as_matrix(observed, domains)
    star = None if best is None else _as_matrix(best, domains)[0]
    if M == 2:
        return _surface_line(loss_fn, domains, obs, star, resolution, label, title)
    if M == 3:
        return _surface_ternary(loss_fn, domains, obs, star, resolution, label, title)
    ref = (star if reference is None and star is not None
           else np.full(M, 1.0 / M) if reference is None else _as_matrix(reference, domains)[0])
    return _surface_slices(loss_fn, domains, obs, star, ref, resolution, label, max_domains, title)


def _values(loss_fn, r: np.ndarray) -> np.ndarray:
    values = np.asarray(loss_fn(r), dtype=float).reshape(-1)
    if values.shape != (r.shape[0],):
        raise ValueError(f"loss_fn must return one value per mixture ({r.shape[0]}), got shape {values.shape}")
    return values


def _surface_line(loss_fn, domains, obs, star, resolution, label, title):
    fig, ax = _new_axes()
    a = np.linspace(0, 1, max(resolution, 2) * 4 + 1)
    r = np.stack([a, 1 - a], axis=1)
    ax.plot(a, _values(loss_fn, r), color=PALETTE[0], label=label)
    if obs.size:
        ax.scatter(obs[:, 0], _values(loss_fn, obs), color="black", s=14, zorder=3, label="tried")
    if star is not None:
        ax.scatter([star[0]], _values(loss_fn, star[None]), marker="*", s=160, color=PALETTE[1], zorder=4,
                   label="best")
    ax.set_xlabel(f"proportion of {domains[0]} (rest {domains[1]})")
    ax.set_ylabel(label)
    ax.set_title(title or "mixing law", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _surface_ternary(loss_fn, domains, obs, star, resolution, label, title):
    import mpltern  # noqa: F401  (registers the "ternary" projection)

    fig = Figure(figsize=(6.0, 5.2), layout="constrained")
    ax = fig.add_subplot(projection="ternary")
    grid = simplex_grid(3, resolution)
    values = _values(loss_fn, grid)
    mesh = ax.tripcolor(grid[:, 0], grid[:, 1], grid[:, 2], values, shading="gouraud", cmap="viridis_r",
                        rasterized=True)
    if obs.size:
        ax.scatter(obs[:, 0], obs[:, 1], obs[:, 2], s=16, color="white", edgecolor="black", linewidth=0.6,
                   label="tried", zorder=3)
    if star is not None:
        ax.scatter([star[0]], [star[1]], [star[2]], marker="*", s=220, color=PALETTE[1], edgecolor="black",
                   linewidth=0.6, label="best", zorder=4)
    ax.set_tlabel(domains[0])
    ax.set_llabel(domains[1])
    ax.set_rlabel(domains[2])
    ax.grid(alpha=0.3)
    fig.colorbar(mesh, ax=ax, shrink=0.7, label=label)
    if obs.size or star is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(-0.1, 1.05))
    fig.suptitle(title or "mixing law on the simplex", fontsize=10)
    return fig


def _surface_slices(loss_fn, domains, obs, star, ref, resolution, label, max_domains, title):
    shown = sorted(np.argsort(-ref, kind="stable")[:max(2, min(max_domains, len(domains)))].tolist())
    pairs = list(itertools.combinations(shown, 2))
    ncols = min(len(pairs), 5)
    nrows = int(np.ceil(len(pairs) / ncols))
    fig = Figure(figsize=(2.7 * ncols + 1.0, 2.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    n = max(resolution, 4)
    a, b = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    inside = (a + b) <= 1 + 1e-12
    slices = [np.full(a.shape, np.nan) for _ in pairs]
    for k, (i, j) in enumerate(pairs):
        r = pair_slice(ref, i, j, a[inside], np.minimum(b[inside], 1 - a[inside]))
        slices[k][inside] = _values(loss_fn, r)
    finite = np.concatenate([s[np.isfinite(s)] for s in slices])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mesh = None
    for k, (i, j) in enumerate(pairs):
        ax = axes.flat[k]
        mesh = ax.pcolormesh(a, b, slices[k], shading="nearest", cmap="viridis_r", vmin=vmin, vmax=vmax,
                             rasterized=True)
        if obs.size:
            ax.scatter(obs[:, i], obs[:, j], s=8, color="white", edgecolor="black", linewidth=0.4, zorder=3)
        if star is not None:
            ax.scatter([star[i]], [star[j]], marker="*", s=90, color=PALETTE[1], edgecolor="black",
                       linewidth=0.5, zorder=4)
        ax.set_xlabel(domains[i], fontsize=8)
        ax.set_ylabel(domains[j], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=0.8, label=label)
    rest = ", ".join(f"{d} {w:.2f}" for d, w in zip(domains, ref))
    fig.suptitle(title or f"mixing law: pairwise slices (other domains shared as in {rest})", fontsize=9)
    return fig


def predicted_vs_observed(
    table: pd.DataFrame,
    *,
    observed: str = "observed",
    group: str | None = "eval",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Predictions with intervals against measured losses.

    ``table``: columns ``observed``, ``mean``, ``lower``, ``upper`` (and
    ``group``, coloured). The title reports the mean absolute error and the share
    of observed values inside their interval (its nominal level from
    ``table.attrs["prob"]`` when present).
    """
    _require(table, [observed, "mean", "lower", "upper"], "predicted_vs_observed")
    if table.empty:
        raise ValueError("predicted_vs_observed needs at least one row")
    fig, ax = _new_axes(ax, figsize=(5.2, 4.8))
    groups = (sorted(table[group].astype(str).unique()) if group and group in table else [None])
    for k, g in enumerate(groups):
        part = table if g is None else table[table[group].astype(str) == g]
        y, m = part[observed].to_numpy(float), part["mean"].to_numpy(float)
        err = np.stack([m - part["lower"].to_numpy(float), part["upper"].to_numpy(float) - m])
        ax.errorbar(y, m, yerr=np.clip(err, 0, None), fmt="o", ms=4, lw=0.9, capsize=2,
                    color=PALETTE[k % len(PALETTE)], label=g)
    lo = float(np.nanmin(table[[observed, "lower"]].to_numpy(float)))
    hi = float(np.nanmax(table[[observed, "upper"]].to_numpy(float)))
    pad = 0.03 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.8, ls="--")
    y = table[observed].to_numpy(float)
    covered = float(np.mean((y >= table["lower"].to_numpy(float)) & (y <= table["upper"].to_numpy(float))))
    mae = float(np.mean(np.abs(y - table["mean"].to_numpy(float))))
    prob = table.attrs.get("prob")
    level = f"{round(100 * prob)}% " if prob else ""
    ax.set_title(title or f"MAE {mae:.4f}; {covered:.0%} inside the {level}intervals", fontsize=10)
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss")
    if groups != [None]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def pca_projection(r: np.ndarray, basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of mixtures r (n, M) on their first two principal axes.

    Returns (coordinates (n, 2), basis (M, 2)); pass ``basis`` to project other
    mixtures on the same axes (centred at the simplex centre 1/M).
    """
    centred = r - 1.0 / r.shape[1]
    if basis is None:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(r.shape[1])[:, :2]
    return centred @ basis, basis


def _axis_name(domains, weights) -> str:
    top = np.argsort(-np.abs(weights))[:2]
    return " ".join(f"{'+' if weights[i] >= 0 else '-'}{domains[i]}" for i in top)


def acquisition_landscape(
    candidates: pd.DataFrame,
    *,
    value: str = "acquisition",
    observed: pd.DataFrame | None = None,
    suggested: pd.DataFrame | None = None,
    label: str | None = None,
    title: str | None = None,
) -> Figure:
    """An acquisition value (e.g. LogEI) over candidate mixtures.

    ``candidates``: ``mix.*`` columns and ``value``. 3 domains: ternary scatter;
    otherwise the first two principal axes of the candidates (each axis named
    after its two heaviest domains). ``observed`` mixtures (tried) are drawn as
    crosses, ``suggested`` (next runs) as numbered stars.
    """
    _require(candidates, [value], "acquisition_landscape")
    domains = _domains_of(candidates)
    if len(domains) < 2:
        raise KeyError("acquisition_landscape needs mix.<domain> columns")
    r = _as_matrix(candidates, domains)
    values = candidates[value].to_numpy(float)
    obs = _as_matrix(observed, domains)
    sug = _as_matrix(suggested, domains)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"acquisition_landscape: no finite {value!r} values")
    label = label or value
    if len(domains) == 3:
        import mpltern  # noqa: F401

        fig = Figure(figsize=(6.0, 5.2), layout="constrained")
        ax = fig.add_subplot(projection="ternary")
        points = ax.scatter(r[finite, 0], r[finite, 1], r[finite, 2], c=values[finite], s=12, cmap="magma")
        if obs.size:
            ax.scatter(obs[:, 0], obs[:, 1], obs[:, 2], marker="x", s=26, color="black", label="tried")
        if sug.size:
            ax.scatter(sug[:, 0], sug[:, 1], sug[:, 2], marker="*", s=220, color=PALETTE[2], edgecolor="black",
                       linewidth=0.6, label="suggested", zorder=4)
        ax.set_tlabel(domains[0])
        ax.set_llabel(domains[1])
        ax.set_rlabel(domains[2])
    else:
        fig, ax = _new_axes(figsize=(6.4, 5.0))
        xy, basis = pca_projection(r)
        points = ax.scatter(xy[finite, 0], xy[finite, 1], c=values[finite], s=12, cmap="magma")
        if obs.size:
            o, _ = pca_projection(obs, basis)
            ax.scatter(o[:, 0], o[:, 1], marker="x", s=26, color="black", label="tried")
        if sug.size:
            s, _ = pca_projection(sug, basis)
            ax.scatter(s[:, 0], s[:, 1], marker="*", s=220, color=PALETTE[2], edgecolor="black", linewidth=0.6,
                       label="suggested", zorder=4)
            for k, (px, py) in enumerate(s):
                ax.annotate(str(k + 1), (px, py), xytext=(5, 5), textcoords="offset points", fontsize=8)
        ax.set_xlabel(f"principal axis 1 ({_axis_name(domains, basis[:, 0])})")
        ax.set_ylabel(f"principal axis 2 ({_axis_name(domains, basis[:, 1])})")
        ax.grid(alpha=0.3)
    fig.colorbar(points, ax=ax, shrink=0.7, label=label)
    if obs.size or sug.size:
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or f"acquisition landscape ({len(r)} candidates)", fontsize=10)
    return fig


def _budget_wide(budget: pd.DataFrame) -> pd.DataFrame:
    """Shares as (eval x stage); accepts long (eval, stage, share) or wide (stage columns)."""
    if {"stage", "share"} <= set(budget.columns):
        index = "eval" if "eval" in budget.columns else None
        if index is None:
            budget = budget.assign(eval="overall")
            index = "eval"
        return budget.pivot_table(index=index, columns="stage", values="share", aggfunc="sum", sort=False)
    wide = budget.set_index("eval") if "eval" in budget.columns else budget
    return wide.select_dtypes("number")


def error_budget_bars(budget: pd.DataFrame, *, ax=None, title: str | None = None) -> Figure:
    """Stacked horizontal bars: each stage's share of the final predictive variance, per eval.

    ``budget``: long (``eval``, ``stage``, ``share``) or wide (one numeric column
    per stage, ``eval`` column or index). Shares are drawn as given (they should
    sum to about 1 per eval; the remainder is labelled "other").
    """
    wide = _budget_wide(budget).fillna(0.0)
    if wide.empty:
        raise ValueError("error_budget_bars needs at least one row")
    if (wide.to_numpy() < -1e-9).any():
        raise ValueError("error budget shares must be non-negative")
    fig, ax = _new_axes(ax, figsize=(6.4, max(2.2, 1.2 + 0.45 * len(wide))))
    left = np.zeros(len(wide))
    labels = [str(i) for i in wide.index]
    colours = {"step": PALETTE[0], "size": PALETTE[4], "mix": PALETTE[2], "mixing": PALETTE[2]}
    for k, stage in enumerate(wide.columns):
        share = wide[stage].to_numpy(float)
        ax.barh(labels, share, left=left, color=colours.get(str(stage), PALETTE[(k + 5) % len(PALETTE)]),
                label=str(stage), edgecolor="white")
        for y, (l0, s) in enumerate(zip(left, share)):
            if s >= 0.08:
                ax.text(l0 + s / 2, y, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left = left + share
    other = 1.0 - left
    if (other > 0.01).any():
        ax.barh(labels, np.clip(other, 0, None), left=left, color="#dddddd", label="other", edgecolor="white")
    ax.set_xlim(0, max(1.0, float(left.max())))
    ax.invert_yaxis()
    ax.set_xlabel("share of predictive variance")
    ax.set_title(title or "error budget: where the uncertainty comes from", fontsize=10, pad=22)
    ax.legend(fontsize=8, ncol=len(wide.columns) + 1, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    return fig


def posterior_predictive(idata, *, num_pp_samples: int = 50, seed: int = 0, title: str | None = None) -> Figure:
    """ArviZ posterior predictive check of the observations (site ``obs``): the density
    of the observed losses against densities of replicated datasets."""
    import arviz as az

    for group in ("posterior_predictive", "observed_data"):
        if group not in idata.groups():
            raise ValueError(f"posterior_predictive needs the {group!r} group of the InferenceData")
    fig, ax = _new_axes(figsize=(6.4, 3.8))
    n = int(idata.posterior_predictive.sizes["chain"] * idata.posterior_predictive.sizes["draw"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="arviz.*")
        warnings.filterwarnings("ignore", message=".*alias_mapping.*")
        az.plot_ppc(idata, ax=ax, num_pp_samples=min(num_pp_samples, n), random_seed=seed, legend=True)
    ax.set_xlabel("loss")
    ax.set_title(title or "posterior predictive check", fontsize=10)
    return fig


def risk_ranking(
    draws: xr.DataArray,
    *,
    label: str = "mixture",
    baseline: str | None = None,
    order: Sequence[str] | None = None,
    probs: tuple[float, float] = (0.5, 0.9),
    title: str | None = None,
) -> Figure:
    """Interval plot of candidate mixtures' predicted loss (one row each, best on top).

    ``draws``: (draw, point) with a ``label`` coord (one point per mixture).
    Thick bar: central ``probs[0]`` interval; thin: ``probs[1]``; dot: mean.
    ``order`` fixes the rows (default: by posterior mean); ``baseline`` is marked
    and its mean drawn as a vertical line.
    """
    bands = quantile_bands(draws, probs)
    _require(bands, [label], "risk_ranking draws")
    bands["mean"] = draws.transpose("draw", "point").to_numpy().mean(axis=0)
    bands[label] = bands[label].astype(str)
    if order is not None:
        bands = bands.set_index(label).loc[[str(o) for o in order]].reset_index()
    else:
        bands = bands.sort_values("mean").reset_index(drop=True)
    inner, outer = (f"{round(100 * p):d}" for p in probs)
    fig, ax = _new_axes(figsize=(6.4, 0.6 + 0.32 * len(bands)))
    y = np.arange(len(bands))
    colours = [PALETTE[1] if baseline is not None and m == str(baseline) else PALETTE[0] for m in bands[label]]
    ax.hlines(y, bands[f"lower_{outer}"], bands[f"upper_{outer}"], color=colours, lw=1.2)
    ax.hlines(y, bands[f"lower_{inner}"], bands[f"upper_{inner}"], color=colours, lw=4)
    ax.scatter(bands["mean"], y, color="white", edgecolor=colours, zorder=3, s=22)
    names = [f"{m} (baseline)" if baseline is not None and m == str(baseline) else m for m in bands[label]]
    if baseline is not None and str(baseline) in set(bands[label]):
        ax.axvline(float(bands.loc[bands[label] == str(baseline), "mean"].iloc[0]), color=PALETTE[1], lw=0.8,
                   ls="--")
    ax.set_yticks(y, names, fontsize=8)
    for tick, colour in zip(ax.get_yticklabels(), colours):
        tick.set_color(colour)
    ax.invert_yaxis()
    ax.set_xlabel(f"predicted loss (mean, {inner}% and {outer}% intervals)")
    ax.set_title(title or "candidate mixtures", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return fig


def capability_balance(
    table: pd.DataFrame,
    *,
    label: str = "mixture",
    baseline: str | None = None,
    relative: bool = True,
    title: str | None = None,
) -> Figure:
    """Per-eval-domain predicted loss of a few mixtures, with intervals.

    ``table``: ``label``, ``eval``, ``mean``, ``lower``, ``upper`` (one row per
    mixture and eval). With ``relative`` and a ``baseline``, each value is
    shown as the difference from the baseline's mean on that eval (negative:
    better than the baseline), so evals of different scales share one axis.
    """
    _require(table, [label, "eval", "mean", "lower", "upper"], "capability_balance")
    table = table.assign(**{label: table[label].astype(str), "eval": table["eval"].astype(str)})
    evals = list(dict.fromkeys(table["eval"]))
    mixtures = list(dict.fromkeys(table[label]))
    shift = pd.Series(0.0, index=evals)
    relative = relative and baseline is not None and str(baseline) in mixtures
    if relative:
        shift = table[table[label] == str(baseline)].set_index("eval")["mean"].reindex(evals).fillna(0.0)
    fig, ax = _new_axes(figsize=(min(10.0, max(6.4, 1.1 * len(evals) + 1.5)), 4.0))
    width = 0.8 / max(len(mixtures), 1)
    x = np.arange(len(evals))
    for k, m in enumerate(mixtures):
        part = table[table[label] == m].set_index("eval").reindex(evals)
        mean = part["mean"].to_numpy(float) - shift.to_numpy(float)
        err = np.stack([part["mean"] - part["lower"], part["upper"] - part["mean"]]).astype(float)
        colour = PALETTE[1] if baseline is not None and m == str(baseline) else PALETTE[(k + 2) % len(PALETTE)]
        if k == 0 and not (baseline is not None and m == str(baseline)):
            colour = PALETTE[0]
        ax.errorbar(x + (k - (len(mixtures) - 1) / 2) * width, mean, yerr=np.clip(err, 0, None), fmt="o", ms=5,
                    capsize=2, lw=1, color=colour, label=m)
    if relative:
        ax.axhline(0.0, color=PALETTE[1], lw=0.8, ls="--")
    ax.set_xticks(x, evals, rotation=30 if len(evals) > 7 else 0, ha="right" if len(evals) > 7 else "center",
                  fontsize=9)
    ax.set_ylabel(f"loss minus {baseline}'s" if relative else "predicted loss")
    ax.set_title(title or "capability balance: predicted loss per eval domain", fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(mixtures), 4))
    ax.grid(alpha=0.3, axis="y")
    return fig


__all__ = [
    "acquisition_landscape", "capability_balance", "error_budget_bars", "fan_chart", "figure_png",
    "mixing_surface", "pair_slice", "pca_projection", "posterior_predictive", "predicted_vs_observed",
    "quantile_bands", "risk_ranking", "simplex_grid",
]
