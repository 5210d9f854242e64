"""The main job: bundled proxy runs -> nested pipeline -> next runs -> risk-aware report.

    paths = run_demo("bayesmix-demo", seed=0)          # report at paths["report"]
    paths = run_demo("bayesmix-demo", live=2)          # plus two closed-loop rounds of real training

Steps: read the bundled demo run table (16 mixtures x 3 model sizes of real
proxy runs on the bundled corpus; a simulated table of the same shape when the
bundled one is missing); fit the nested step -> size -> mixing pipeline
predicting every mixture's loss at the target scale (a model size and a
planned step count beyond any run); suggest the next mixtures to run; write
the report. With ``live=N`` it then runs N rounds of the closed loop: train
the suggested mixtures with the proxy trainer at the small sizes, add their
rows, refit, suggest again; the report shows the last round.

Default sampler settings are chosen so that the whole job takes a few minutes
on a laptop CPU (:data:`QUICK`); :data:`THOROUGH` is for a final answer.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.inference.nuts import SamplerConfig
from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns

TARGET_SIZE = "1.2M"
TARGET_STEP = 2400
MIN_STEP = 90  # the demo runs warm up for 48 steps; checkpoints 50 and 68 are left out
LIVE_SIZES = ("100k", "200k")
OUTPUT_FILES = ("report.html", "ranking.csv", "suggestions.csv", "runs.parquet")  # written under the output folder


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Settings of the demo's pipeline, design and live rounds.

    ``target_size``: a proxy size name (its non-embedding parameter count) or a
    count; ``target_step``: the planned step count to predict. ``n_draws``:
    upstream draws propagated through the pipeline; the three ``*_config`` are
    its NUTS settings; ``size_sampler``: the size law's (the exact grid: 12 s on the bundled
    runs, every check passing, against about 200 s for NUTS lanes). ``q``: mixtures suggested per round; ``n_random``: random
    candidates ranked in the report. ``live_sizes``: model sizes trained in a
    live round (the size law needs each mixture at two sizes or more).
    """

    target_size: str | int = TARGET_SIZE
    target_step: int = TARGET_STEP
    min_step: int = MIN_STEP
    mode: str = "draws"
    n_draws: int = 16
    fit_config: SamplerConfig = SamplerConfig.for_lanes(num_chains=2, num_warmup=500, num_samples=500)
    # 600 draws per lane chain: the mixing law's pooled R-hat over the 16 lanes is a maximum over
    # hundreds of predictions and, at 300 draws, scattered 1.005-1.013 across seeds about the 1.01
    # check; at 600 it is 1.003 (bundled runs), for about 10 s more.
    lane_config: SamplerConfig = SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=600)
    curve_config: SamplerConfig = SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=150, dense_mass=True)
    size_sampler: str = "grid"
    q: int = 4
    n_random: int = 1000
    live_sizes: tuple[str, ...] = LIVE_SIZES
    workers: int = 2
    budget: bool = True

    def pipeline(self, *, progress: bool | None = None):
        """The :class:`bayesmix.pipeline.nested.Pipeline` these settings describe."""
        from bayesmix.pipeline.nested import Pipeline

        return Pipeline(target_size=target_parameters(self.target_size), target_step=self.target_step,
                        min_step=self.min_step, mode=self.mode, n_draws=self.n_draws, fit_config=self.fit_config,
                        lane_config=self.lane_config, curve_config=self.curve_config,
                        size_sampler=self.size_sampler, progress=progress)


QUICK = DemoSettings()
THOROUGH = DemoSettings(
    n_draws=128, fit_config=SamplerConfig.for_lanes(num_chains=4, num_warmup=500, num_samples=500),
    lane_config=SamplerConfig.for_lanes(num_chains=2, num_warmup=300, num_samples=600),
    curve_config=SamplerConfig.for_lanes(num_chains=4, num_warmup=300, num_samples=250, dense_mass=True), n_random=4000)


def target_parameters(size: str | int) -> int:
    """Non-embedding parameters of a proxy size name (``"1.2M"``) or a count."""
    if isinstance(size, (int, np.integer)) or str(size).isdigit():
        value = int(size)
        if value <= 0:
            raise ValueError(f"target size must be positive, got {value}")
        return value
    from bayesmix.proxy.model import non_embedding_params

    return int(non_embedding_params(str(size)))


def demo_table(*, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The bundled demo run table and where it came from; a simulated table of the
    same design (from a known nested law) when the bundled file is missing."""
    from bayesmix.proxy.demo import DEMO_RUNS_PATH, demo_runs

    if DEMO_RUNS_PATH.is_file():
        return demo_runs(), f"bundled proxy runs ({DEMO_RUNS_PATH.name})"
    warnings.warn(f"the bundled demo table is missing ({DEMO_RUNS_PATH}): using a simulated table",
                  UserWarning, stacklevel=2)
    return simulated_table(seed=seed), "simulated runs from a known nested law"


def simulated_table(*, seed: int = 0) -> pd.DataFrame:
    """16 mixtures (uniform, five domain-led, ten Dirichlet) x 3 sizes x 10 checkpoints x
    5 eval domains from :class:`bayesmix.data.simulate.NestedLaw`, named like the demo runs."""
    from bayesmix.data.simulate import NestedLaw, dirichlet_mixtures, simulate_campaign

    domains = ["code", "english", "spanish", "dictionary", "tables"]
    law = NestedLaw.random(domains, domains, seed=seed)
    led = np.full((5, 5), 0.05) + np.eye(5) * 0.75
    design = pd.concat([pd.DataFrame([np.full(5, 0.2)], columns=[MIX_PREFIX + d for d in domains]),
                        pd.DataFrame(led, columns=[MIX_PREFIX + d for d in domains]),
                        dirichlet_mixtures(10, domains, seed=seed)], ignore_index=True)
    names = ["uniform", *(f"{d}-led" for d in domains), *(f"dirichlet{k:02d}" for k in range(10))]
    sizes = [98_944, 197_760, 444_096]
    steps = np.unique(np.geomspace(50, 800, 10).astype(int))
    table = simulate_campaign(law, design, sizes=sizes, steps=steps, seed=seed)
    k = table["run"].str.extract(r"m(\d+)_n(\d+)").astype(int)
    table["run"] = [f"{names[a]}@{['100k', '200k', '450k'][b]}" for a, b in zip(k[0], k[1])]
    return table


def train_at_target(mixtures: dict[str, dict[str, float]], *, settings: DemoSettings, workdir: Path,
                    progress: bool | None = None) -> pd.DataFrame:
    """Train ``mixtures`` (name -> mixture) at the target scale with the proxy trainer and the
    demo's settings, planned for and stopped at the target step
    (:func:`bayesmix.pipeline.verify.train_at_target`); returns their rows."""
    from bayesmix.pipeline.verify import train_at_target as train
    from bayesmix.proxy.demo import DEMO_SETTINGS

    steps = int(settings.target_step)
    return train(mixtures, target_size=target_parameters(settings.target_size), target_step=steps,
                 workdir=workdir, workers=settings.workers, threads=1, progress=progress,
                 **dict(DEMO_SETTINGS, steps=steps, plan_steps=steps))


def held_out_truth(settings: DemoSettings) -> pd.DataFrame | None:
    """The bundled held-out target-scale runs when ``settings`` target their scale, else None."""
    from bayesmix.proxy.demo import DEMO_TARGET_PATH, DEMO_TARGET_SETTINGS, DEMO_TARGET_SIZE, demo_target_runs

    same = (target_parameters(settings.target_size) == target_parameters(DEMO_TARGET_SIZE)
            and settings.target_step == DEMO_TARGET_SETTINGS["steps"])
    return demo_target_runs() if same and DEMO_TARGET_PATH.is_file() else None


def live_runner(settings: DemoSettings, workdir: Path, progress: bool | None = None):
    """The campaign runner of the live rounds: the proxy trainer at ``settings.live_sizes`` with
    the demo table's training settings (:func:`bayesmix.design.campaign.proxy_runner`)."""
    from bayesmix.design.campaign import proxy_runner
    from bayesmix.proxy.demo import DEMO_SETTINGS

    return proxy_runner(list(settings.live_sizes), workdir=workdir, workers=settings.workers, threads=1,
                        progress=progress, **DEMO_SETTINGS)


def open_campaign(folder: Path, runs: pd.DataFrame, pipeline, *, settings: DemoSettings, seed: int, runner):
    """A fresh closed loop in ``folder`` over ``runs`` (a previous demo's campaign there is
    replaced): the nested pipeline is its fit, qLogEI over the target-scale loss its suggestion."""
    import shutil

    from bayesmix.design.campaign import STATE_FILE, Campaign

    if (folder / STATE_FILE).is_file():
        shutil.rmtree(folder)

    def fit_pipeline(rows: pd.DataFrame, fit_seed: int):
        return pipeline.fit(rows, seed=fit_seed)

    return Campaign.create(folder, runner=runner, runs=runs, q=settings.q, seed=seed, fit_fn=fit_pipeline)


def run_rounds(campaign, live: int, settings: DemoSettings, log: Callable[[str], None], timings: dict):
    """Fit and suggest, then ``live`` times train the suggestions, refit and suggest again;
    returns the last fit, its suggestions and their acquisition landscape."""
    while True:
        k = campaign.round
        t0 = time.perf_counter()
        campaign.step()  # fit round k
        timings[f"pipeline fit {k}"] = time.perf_counter() - t0
        result = campaign.latest_fit()
        log(f"  pipeline fitted in {timings[f'pipeline fit {k}']:.0f} s "
            f"({', '.join(f'{name} {v:.0f} s' for name, v in result.seconds.items())})")
        campaign.step()  # suggest
        if k == live:
            return result, campaign.suggestions(), campaign.landscape()
        log(f"live round {k + 1}/{live}: training {settings.q} suggested mixtures at "
            f"{', '.join(settings.live_sizes)}")
        t0 = time.perf_counter()
        campaign.step()  # run: train the suggestions, add their rows, next round
        timings[f"training round {k + 1}"] = time.perf_counter() - t0


def verify_recommended(report, result, truth, *, baseline: str, settings: DemoSettings, workdir: Path,
                       progress, verifier, seed: int, log: Callable[[str], None]) -> None:
    """Train the baseline, the recommended mixture and (when the confidence rule kept the
    baseline instead) the best-ranked mixture in the trust region at the target scale, and add
    the check of the predictions against them to ``report``."""
    from bayesmix.report.build import add_truth

    rows = report.ranking.set_index(report.ranking["mixture"].astype(str))
    chosen = {f"verify-{baseline}": rows.loc[report.baseline]}
    if str(report.best["mixture"]) != report.baseline:
        chosen["verify-recommended"] = report.best
    if str(report.trusted["mixture"]) not in {str(report.best["mixture"]), report.baseline}:
        chosen["verify-best-ranked"] = report.trusted  # the claim the confidence rule declined
    mixtures = {name: {c[len(MIX_PREFIX):]: float(row[c]) for c in mix_columns(report.ranking)}
                for name, row in chosen.items()}
    log(f"verifying: training {', '.join(mixtures)} at the target scale")
    new = (verifier or train_at_target)(mixtures, settings=settings, workdir=workdir, progress=progress)
    truth = new if truth is None else pd.concat([truth, new], ignore_index=True)
    add_truth(report, result, truth, prob=report.prob, seed=seed)


def write_outputs(out: Path, report, suggestions: pd.DataFrame, runs: pd.DataFrame,
                  log: Callable[[str], None]) -> dict[str, Path]:
    """The report, the ranking, the suggestions and the run table under ``out``; their paths."""
    from bayesmix.data.table import write_runs, write_table
    from bayesmix.report.html import write_report

    report.rerun_hint = "Rerun with longer chains (bayesmix demo --thorough)"
    paths = {"report": write_report(report, out / "report.html"), "ranking": out / "ranking.csv",
             "suggestions": out / "suggestions.csv"}
    write_table(report.ranking, paths["ranking"])
    write_table(suggestions, paths["suggestions"])
    paths["runs"] = write_runs(runs, out / "runs.parquet")
    best = report.best
    log(f"recommended mixture: {best['mixture']} ("
        + ", ".join(f"{c[len(MIX_PREFIX):]} {best[c]:.2f}" for c in mix_columns(report.ranking)) + ")"
        f"; predicted loss {best['mean']:.4f} [{best['lower']:.4f}, {best['upper']:.4f}]")
    if report.truth is not None:
        log("checked against real target-scale runs: " + report.truth_note)
    if report.failed:
        log("warning: convergence diagnostics failed: " + "; ".join(report.failed))
    log(f"report written to {paths['report'].resolve()}")
    return paths


def run_demo(
    out,
    *,
    live: int = 0,
    seed: int = 0,
    settings: DemoSettings = QUICK,
    runs: pd.DataFrame | None = None,
    baseline: str = "uniform",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    runner: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    truth: pd.DataFrame | None = None,
    verify: bool = False,
    verifier: Callable[..., pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Run the main job and write its outputs under ``out``; returns their paths.

    Outputs: ``report.html``, ``ranking.csv`` (every ranked candidate),
    ``suggestions.csv`` (when there are suggestions) and ``runs.parquet`` (the
    run table used, live rows included) and ``campaign/`` (the closed loop's state, fits and
    suggestions: :class:`bayesmix.design.campaign.Campaign`). ``runs`` replaces the bundled
    table; ``runner`` (suggestions -> run-table rows) replaces :func:`live_runner` in the live rounds.
    ``truth``: held-out runs at the target scale to check the predictions against
    (default with the bundled table: its bundled target-scale runs, when the target
    is theirs; :func:`held_out_truth`). ``verify``: also train the recommended mixture
    and the baseline at the target scale (:func:`train_at_target`, or ``verifier`` with
    its signature) and check the predictions against them too.
    """
    from bayesmix.data.io import check_output_folder
    from bayesmix.data.table import validate_runs
    from bayesmix.report.build import report_from_pipeline

    if live < 0:
        raise ValueError(f"live must be a non-negative number of rounds, got {live}")
    out = check_output_folder(out, files=OUTPUT_FILES)
    out.mkdir(parents=True, exist_ok=True)
    source = "given run table"
    if runs is None:
        runs, source = demo_table(seed=seed)
        truth = held_out_truth(settings) if truth is None else truth
    runs = validate_runs(runs)
    pipeline = settings.pipeline(progress=progress)
    log(f"bayesmix demo: {runs['run'].nunique()} runs ({source}), {runs['eval'].nunique()} eval domains; "
        f"predicting {pipeline.target_size:,} parameters at step {pipeline.target_step:,}")
    timings = {}
    campaign = open_campaign(out / "campaign", runs, pipeline, settings=settings, seed=seed,
                             runner=runner or live_runner(settings, out / "live-work", progress))
    result, suggestions, landscape = run_rounds(campaign, live, settings, log, timings)
    budget = None
    if settings.budget and settings.mode == "draws":
        t0 = time.perf_counter()
        budget = result.error_budget(seed=seed)
        timings["error budget"] = time.perf_counter() - t0
        log(f"  error budget in {timings['error budget']:.0f} s: {budget.recommendation}")
    note = (f"The next {settings.q} mixtures to run, chosen by batch log expected improvement (qLogEI) over the "
            "predicted target-scale loss.")
    report = report_from_pipeline(
        result, baseline=baseline, runs=campaign.runs, n_random=settings.n_random, suggestions=suggestions,
        acquisition=landscape, suggestions_note=note, seed=seed, budget=budget, truth=truth,
        settings={"data": source, "live rounds": live,
                  "wall time": ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())})
    if verify:
        verify_recommended(report, result, truth, baseline=baseline, settings=settings, workdir=out / "verify-work",
                           progress=progress, verifier=verifier, seed=seed, log=log)
    return write_outputs(out, report, suggestions, campaign.runs, log)
