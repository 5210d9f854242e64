"""Plots on fake posteriors: each returns a Figure, draws what it says, rejects bad input."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from bayesmix.report import plots

DOMAINS5 = ["code", "english", "spanish", "dictionary", "tables"]


def fake_draws(labels: pd.DataFrame, values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("draw", "point"), coords={c: ("point", labels[c].to_numpy()) for c in labels})


def curve_draws(seed: int = 0, runs=("a", "b")) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    steps = np.geomspace(50, 2400, 12)
    labels = pd.DataFrame([(r, s) for r in runs for s in steps], columns=["run", "step"])
    floor = 2.0 + 0.2 * np.arange(len(runs)).repeat(steps.size)
    exponent = 0.4 + 0.03 * rng.standard_normal((200, 1))
    values = floor[None, :] + 5 * np.tile(steps, len(runs))[None, :] ** -exponent
    return fake_draws(labels, values)


def test_figure_png_is_a_png():
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    assert plots.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_quantile_bands_exact_on_uniform_grid():
    values = np.arange(101, dtype=float)[:, None] * np.array([[1.0, 2.0]])
    bands = plots.quantile_bands(fake_draws(pd.DataFrame({"m": ["x", "y"]}), values), (0.5, 0.9))
    np.testing.assert_allclose(bands["median"], [50, 100])
    np.testing.assert_allclose(bands["lower_50"], [25, 50])
    np.testing.assert_allclose(bands["upper_50"], [75, 150])
    np.testing.assert_allclose(bands["lower_90"], [5, 10])
    np.testing.assert_allclose(bands["upper_90"], [95, 190])
    with pytest.raises(ValueError, match="lie in"):
        plots.quantile_bands(fake_draws(pd.DataFrame({"m": ["x", "y"]}), values), (1.5,))
    with pytest.raises(ValueError, match="dims"):
        plots.quantile_bands(xr.DataArray(values, dims=("a", "b")))


def test_fan_chart_draws_one_band_per_interval_and_group():
    draws = curve_draws()
    observed = pd.DataFrame({"run": ["a", "a", "b"], "step": [50, 100, 50], "loss": [3.0, 2.8, 3.2]})
    fig = plots.fan_chart(draws, observed, x="step", group="run", target=2400)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2 * 3  # two runs x three intervals
    assert ax.get_xscale() == "log"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["a", "b"]
    single = plots.fan_chart(draws.isel(point=slice(0, 12)), observed[observed.run == "a"], x="step",
                             probs=(0.9,), log_x=False)
    assert len([c for c in single.axes[0].collections if isinstance(c, PolyCollection)]) == 1
    bars = plots.fan_chart(draws, None, x="step", group="run", style="bars")
    assert not [c for c in bars.axes[0].collections if isinstance(c, PolyCollection)]


def test_fan_chart_errors():
    draws = curve_draws()
    with pytest.raises(KeyError, match="size"):
        plots.fan_chart(draws, x="size")
    with pytest.raises(KeyError, match="loss"):
        plots.fan_chart(draws, pd.DataFrame({"step": [1]}), x="step")
    with pytest.raises(ValueError, match="style"):
        plots.fan_chart(draws, style="ribbon")


@pytest.mark.parametrize("m,res", [(2, 5), (3, 4), (5, 3)])
def test_simplex_grid_counts_and_rows(m, res):
    grid = plots.simplex_grid(m, res)
    assert grid.shape == (math.comb(res + m - 1, m - 1), m)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()
    assert len(np.unique(np.round(grid * res).astype(int), axis=0)) == len(grid)


def test_simplex_grid_errors():
    with pytest.raises(ValueError, match="n_domains"):
        plots.simplex_grid(1, 3)


def test_pair_slice_shares_the_rest_as_the_reference():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    r = plots.pair_slice(ref, 0, 1, np.array([0.5, 0.0]), np.array([0.2, 1.0]))
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    np.testing.assert_allclose(r[0], [0.5, 0.2, 0.3 * 3 / 7, 0.3 * 4 / 7])
    np.testing.assert_allclose(r[1], [0.0, 1.0, 0.0, 0.0])
    equal = plots.pair_slice(np.array([0.5, 0.5, 0.0, 0.0]), 0, 1, np.array([0.2]), np.array([0.2]))
    np.testing.assert_allclose(equal[0], [0.2, 0.2, 0.3, 0.3])


def _bowl(r):
    return 3.0 + np.sum((r - np.linspace(0.1, 0.4, r.shape[1]) / np.linspace(0.1, 0.4, r.shape[1]).sum()) ** 2, 1)


def test_mixing_surface_ternary_slices_and_line():
    import mpltern  # noqa: F401
    from mpltern.ternary import TernaryAxes

    rng = np.random.default_rng(0)
    fig3 = plots.mixing_surface(_bowl, ["a", "b", "c"], observed=rng.dirichlet(np.ones(3), 5), best=[0.2, 0.3, 0.5],
                                resolution=10)
    assert any(isinstance(ax, TernaryAxes) for ax in fig3.axes)
    observed = pd.DataFrame(rng.dirichlet(np.ones(5), 6), columns=[f"mix.{d}" for d in DOMAINS5])
    fig5 = plots.mixing_surface(_bowl, DOMAINS5, observed=observed, best=observed.iloc[[0]], resolution=6)
    panels = [ax for ax in fig5.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(panels) == 10  # every pair of five domains
    fig4 = plots.mixing_surface(_bowl, DOMAINS5, reference=[0.6, 0.3, 0.1, 0.0, 0.0], max_domains=3, resolution=4)
    assert len([ax for ax in fig4.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]) == 3
    fig2 = plots.mixing_surface(_bowl, ["a", "b"], best=[0.3, 0.7], observed=[[0.5, 0.5]])
    assert isinstance(fig2, Figure)


def test_mixing_surface_errors():
    with pytest.raises(ValueError, match="two domains"):
        plots.mixing_surface(_bowl, ["a"])
    with pytest.raises(ValueError, match="one value per mixture"):
        plots.mixing_surface(lambda r: np.zeros(3), ["a", "b", "c"], resolution=4)
    with pytest.raises(KeyError, match="mix.c"):
        plots.mixing_surface(_bowl, ["a", "b", "c"], observed=pd.DataFrame({"mix.a": [1.0], "mix.b": [0.0]}))


def test_predicted_vs_observed_reports_coverage_and_mae():
    table = pd.DataFrame({"observed": [1.0, 2.0, 3.0, 4.0], "mean": [1.1, 2.0, 2.9, 4.5],
                          "lower": [0.9, 1.9, 2.8, 4.2], "upper": [1.2, 2.1, 3.1, 4.8],
                          "eval": ["x", "x", "y", "y"]})
    table.attrs["prob"] = 0.9
    fig = plots.predicted_vs_observed(table)
    title = fig.axes[0].get_title()
    assert "75% inside the 90% intervals" in title
    assert "MAE 0.1750" in title
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == ["x", "y"]
    with pytest.raises(KeyError, match="upper"):
        plots.predicted_vs_observed(table.drop(columns="upper"))
    with pytest.raises(ValueError, match="at least one row"):
        plots.predicted_vs_observed(table.iloc[:0])


def test_pca_projection_is_orthonormal_and_reusable():
    r = np.random.default_rng(1).dirichlet(np.ones(5), 50)
    xy, basis = plots.pca_projection(r)
    assert xy.shape == (50, 2) and basis.shape == (5, 2)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    again, _ = plots.pca_projection(r[:3], basis)
    np.testing.assert_allclose(again, xy[:3])


@pytest.mark.parametrize("domains", [["a", "b", "c"], DOMAINS5])
def test_acquisition_landscape(domains):
    rng = np.random.default_rng(2)
    cand = pd.DataFrame(rng.dirichlet(np.ones(len(domains)), 200), columns=[f"mix.{d}" for d in domains])
    cand["log_ei"] = -np.sum((cand.to_numpy() - 0.3) ** 2, axis=1)
    cand.loc[0, "log_ei"] = -np.inf  # underflowed values are skipped, not plotted
    fig = plots.acquisition_landscape(cand, value="log_ei", observed=cand.iloc[:4],
                                      suggested=cand.nlargest(3, "log_ei"))
    assert isinstance(fig, Figure)
    assert fig.axes[-1].get_ylabel() == "log_ei"  # the colour bar


def test_acquisition_landscape_errors():
    cand = pd.DataFrame({"mix.a": [0.5, 0.5], "mix.b": [0.5, 0.5], "mix.c": [0.0, 0.0], "acquisition": [np.nan] * 2})
    with pytest.raises(ValueError, match="no finite"):
        plots.acquisition_landscape(cand)
    with pytest.raises(KeyError, match="log_ei"):
        plots.acquisition_landscape(cand, value="log_ei")
    with pytest.raises(KeyError, match="mix"):
        plots.acquisition_landscape(pd.DataFrame({"acquisition": [1.0]}))


def _bar_widths(fig):
    return sorted(round(p.get_width(), 6) for p in fig.axes[0].patches)


def test_error_budget_bars_long_and_wide_agree():
    long = pd.DataFrame({"eval": ["overall"] * 3 + ["code"] * 3, "stage": ["step", "size", "mix"] * 2,
                         "share": [0.5, 0.3, 0.2, 0.1, 0.6, 0.3]})
    wide = pd.DataFrame({"eval": ["overall", "code"], "step": [0.5, 0.1], "size": [0.3, 0.6], "mix": [0.2, 0.3]})
    a, b = plots.error_budget_bars(long), plots.error_budget_bars(wide)
    assert _bar_widths(a) == _bar_widths(b) == sorted([0.5, 0.3, 0.2, 0.1, 0.6, 0.3])
    labels = [t.get_text() for t in a.axes[0].get_legend().get_texts()]
    assert labels == ["step", "size", "mix"]
    partial = plots.error_budget_bars(pd.DataFrame({"stage": ["step", "mix"], "share": [0.4, 0.4]}))
    assert "other" in [t.get_text() for t in partial.axes[0].get_legend().get_texts()]
    with pytest.raises(ValueError, match="non-negative"):
        plots.error_budget_bars(wide.assign(step=[-0.5, 0.1]))


def test_posterior_predictive_on_fake_idata():
    rng = np.random.default_rng(3)
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 50))},
                         posterior_predictive={"obs": rng.normal(size=(2, 50, 20))},
                         observed_data={"obs": rng.normal(size=20)})
    fig = plots.posterior_predictive(idata, num_pp_samples=10)
    assert len(fig.axes[0].lines) >= 11  # ten replicates, the observed density (and the mean)
    with pytest.raises(ValueError, match="posterior_predictive"):
        plots.posterior_predictive(az.from_dict(posterior={"mu": rng.normal(size=(2, 50))}))


def test_risk_ranking_order_and_baseline_label():
    rng = np.random.default_rng(4)
    labels = pd.DataFrame({"mixture": ["a", "b", "c", "uniform"]})
    draws = fake_draws(labels, rng.normal([3.2, 3.0, 3.1, 3.3], 0.01, (300, 4)))
    fig = plots.risk_ranking(draws, baseline="uniform")
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["b", "c", "a", "uniform (baseline)"]
    fixed = plots.risk_ranking(draws, order=["uniform", "a"])
    assert [t.get_text() for t in fixed.axes[0].get_yticklabels()] == ["uniform", "a"]


def test_capability_balance_is_relative_to_the_baseline():
    table = pd.DataFrame({"mixture": ["best"] * 2 + ["uniform"] * 2, "eval": ["code", "web"] * 2,
                          "mean": [2.9, 3.4, 3.0, 3.5], "lower": [2.8, 3.3, 2.9, 3.4], "upper": [3.0, 3.5, 3.1, 3.6]})
    fig = plots.capability_balance(table, baseline="uniform")
    ax = fig.axes[0]
    ys = [line.get_ydata() for line in ax.lines if len(line.get_ydata()) == 2]
    assert any(np.allclose(y, [-0.1, -0.1]) for y in ys)  # best is 0.1 below uniform on both evals
    assert any(np.allclose(y, [0.0, 0.0]) for y in ys)
    absolute = plots.capability_balance(table, relative=False)
    assert absolute.axes[0].get_ylabel() == "predicted loss"
    with pytest.raises(KeyError, match="eval"):
        plots.capability_balance(table.drop(columns="eval"))


def test_plots_do_not_touch_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.fan_chart(curve_draws(), x="step", group="run")
    assert plt.get_fignums() == before
