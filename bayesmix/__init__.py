"""bayesmix: Bayesian data-mixing laws for choosing pretraining mixtures.

The whole public API, in the order of the flow (each name is imported on first use, so
``import bayesmix`` is cheap and loads neither JAX nor torch)::

    data       read_runs, write_table, validate_runs, RunTableError, from_wide, to_wide, load_regmix,
               simulate_mixing, simulate_curves, simulate_campaign, NestedLaw, Schedule
    laws       get_law, LAWS, Law, LawData, resolve_priors, DEFAULT_PRIORS
    inference  fit, load_fit, FitResult, SamplerConfig, compare_laws, latent_grid, bootstrap, DiagnosticsError,
               stack_chains, use_compile_cache
    pipeline   Pipeline, PipelineResult, load_pipeline, error_budget, target_truth, coverage_summary, verify
    decide     prob_beats, rank_mixtures, cvar, optimum, hull_optimum, predicted_optimum,
               compute_multiplier, effective_compute_multiplier, critical_proportion, SimplexBounds,
               support_table, hull_distance
    design     suggest, Campaign, algorithm2, dirichlet, space_filling
    report     report_from_fit, report_from_pipeline, risk_table, select_eval, write_report, render_html,
               step_fan_chart, size_fan_chart
    proxy      train_run, sweep, bundled_corpus, demo_runs (see :mod:`bayesmix.proxy` for the rest)
    main job   run_demo

    from bayesmix import Pipeline, demo_runs
    result = Pipeline(target_size=1_200_000, target_step=2400).fit(demo_runs(), seed=0)
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

_EXPORTS = {  # submodule -> the names it exports
    "data.table": ["read_runs", "write_table", "validate_runs", "RunTableError", "from_wide", "to_wide",
        "load_regmix"],
    "data.simulate": ["simulate_mixing", "simulate_curves", "simulate_campaign", "NestedLaw"],
    "data.schedule": ["Schedule"],
    "laws": ["get_law", "LAWS", "Law", "LawData", "resolve_priors", "DEFAULT_PRIORS"],
    "inference.fit": ["fit", "load_fit", "FitResult"],
    "inference.nuts": ["SamplerConfig"],
    "inference.compare": ["compare_laws", "latent_grid"],
    "inference.stacking": ["stack_chains"],
    "inference.bootstrap": ["bootstrap"],
    "inference.compilecache": ["use_compile_cache"],
    "inference.diagnostics": ["DiagnosticsError"],
    "pipeline.nested": ["Pipeline", "PipelineResult"],
    "pipeline.store": ["load_pipeline"],
    "pipeline.budget": ["error_budget"],
    "pipeline.verify": ["target_truth", "coverage_summary", "verify"],
    "decide.decisions": ["prob_beats", "rank_mixtures", "cvar", "optimum", "predicted_optimum", "hull_optimum",
        "compute_multiplier", "effective_compute_multiplier", "critical_proportion"],
    "decide.support": ["hull_distance", "support_table"],
    "decide.simplex": ["SimplexBounds"],
    "design.suggest": ["suggest"],
    "design.campaign": ["Campaign"],
    "design.candidates": ["algorithm2", "dirichlet", "space_filling"],
    "report.build": ["report_from_fit", "report_from_pipeline", "risk_table", "select_eval"],
    "report.html": ["write_report", "render_html"],
    "report.figures": ["step_fan_chart", "size_fan_chart"],
    "proxy": ["train_run", "sweep", "bundled_corpus", "demo_runs"],
    "demo": ["run_demo"],
}

__getattr__, _dir, __all__ = lazy_loader.attach(__name__, submod_attrs=_EXPORTS)


def __dir__():
    return [*_dir(), "__version__"]
