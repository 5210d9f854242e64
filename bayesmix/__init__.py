"""bayesmix: Bayesian data-mixing laws for choosing pretraining mixtures.

The whole public API, in the order of the flow (each name is imported on first use, so
``import bayesmix`` is cheap and loads neither JAX nor torch)::

    data       read_runs, write_table, validate_runs, RunTableError, from_wide, to_wide, load_regmix,
               simulate_mixing, simulate_curves, simulate_campaign, NestedLaw, Schedule
    laws       get_law, LAWS, Law, LawData, resolve_priors, DEFAULT_PRIORS
    inference  fit, load_fit, FitResult, SamplerConfig, compare_laws, latent_grid, bootstrap, DiagnosticsError,
               stack_chains
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

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # data
    "read_runs": "data.table", "write_table": "data.table", "validate_runs": "data.table",
    "RunTableError": "data.table", "from_wide": "data.table", "to_wide": "data.table", "load_regmix": "data.table",
    "simulate_mixing": "data.simulate", "simulate_curves": "data.simulate", "simulate_campaign": "data.simulate",
    "NestedLaw": "data.simulate", "Schedule": "data.schedule",
    # laws
    "get_law": "laws", "LAWS": "laws", "Law": "laws", "LawData": "laws", "resolve_priors": "laws",
    "DEFAULT_PRIORS": "laws",
    # inference
    "fit": "inference.fit", "load_fit": "inference.fit", "FitResult": "inference.fit",
    "SamplerConfig": "inference.nuts", "compare_laws": "inference.compare", "latent_grid": "inference.compare",
    "stack_chains": "inference.stacking",
    "bootstrap": "inference.bootstrap", "DiagnosticsError": "inference.diagnostics",
    # pipeline
    "Pipeline": "pipeline.nested", "PipelineResult": "pipeline.nested", "load_pipeline": "pipeline.store",
    "error_budget": "pipeline.budget", "target_truth": "pipeline.verify", "coverage_summary": "pipeline.verify",
    "verify": "pipeline.verify",
    # decide
    "prob_beats": "decide.decisions", "rank_mixtures": "decide.decisions", "cvar": "decide.decisions",
    "optimum": "decide.decisions", "predicted_optimum": "decide.decisions", "hull_optimum": "decide.decisions",
    "hull_distance": "decide.support",
    "compute_multiplier": "decide.decisions", "effective_compute_multiplier": "decide.decisions",
    "critical_proportion": "decide.decisions", "SimplexBounds": "decide.simplex", "support_table": "decide.support",
    # design
    "suggest": "design.suggest", "Campaign": "design.campaign", "algorithm2": "design.candidates",
    "dirichlet": "design.candidates", "space_filling": "design.candidates",
    # report
    "report_from_fit": "report.build", "report_from_pipeline": "report.build", "risk_table": "report.build",
    "select_eval": "report.build", "write_report": "report.html", "render_html": "report.html",
    "step_fan_chart": "report.figures", "size_fan_chart": "report.figures",
    # proxy
    "train_run": "proxy", "sweep": "proxy", "bundled_corpus": "proxy", "demo_runs": "proxy",
    # the main job
    "run_demo": "demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"bayesmix.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")


def __dir__():
    return [*__all__, "__version__"]
