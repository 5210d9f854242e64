"""A closed experiment loop that survives crashes: suggest -> run -> refit -> repeat.

    campaign = Campaign.create("campaign/", runner=my_runner, bounds=bounds, runs=first_runs, q=4, seed=0)
    campaign.run(rounds=5)
    # ... the process dies; later:
    campaign = Campaign.resume("campaign/", runner=my_runner)
    campaign.run(rounds=5)            # continues where it stopped

A round is three phases, each saved before the next starts:

* ``fit``: ``fit_fn(runs, seed) -> fit`` (default: :func:`bayesmix.inference.fit.fit` of the
  mixing law with the saved ``fit_options``); a fit with ``save`` is written to
  ``fits/round_<k>.nc`` (a law fit) or the folder ``fits/round_<k>`` (a nested pipeline).
* ``suggest``: :func:`bayesmix.design.suggest.suggest_with_landscape` on the fit ->
  ``suggestions/round_<k>.csv`` and the acquisition landscape ``suggestions/round_<k>_landscape.csv``.
* ``run``: ``runner(suggestions) -> run-table rows`` for those mixtures, appended
  to ``runs.parquet``; the round counter advances.

With no runs yet the campaign opens with a ``design`` phase: ``n_initial``
space-filling mixtures (or pool mixtures) are run first. The runner is any
callable taking the suggestions frame (``mixture`` label + ``mix.*`` columns)
and returning run-table rows whose mixtures are the suggested ones:
:func:`proxy_runner` (the bundled proxy trainer), :func:`pool_runner` (reveal
rows of a finished table) or a user function. Without a runner the campaign
stops at the ``run`` phase until :meth:`Campaign.add_runs` is called with the
rows an external job produced.

The folder holds ``state.json`` (round, phase, seeds, settings, history),
``runs.parquet``, ``suggestions/``, ``fits/`` and, for pool campaigns,
``pool.parquet``: JSON, Parquet, CSV and netCDF, written atomically (temporary
file, then rename), never pickle. ``state.json`` is written last: a crash in
the middle of a phase repeats that phase on resume, and a run phase that was
interrupted after some rows were saved only runs the missing mixtures.
Functions (runner, custom ``fit_fn``) are code, not state: pass them again to
:meth:`Campaign.resume`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.design import candidates as cand
from bayesmix.data.table import read_table, validate_runs, write_runs, write_table
from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns
from bayesmix.data.io import atomic_write, jsonable
from bayesmix.decide.simplex import SimplexBounds

STATE_VERSION = 1
PHASES = ("design", "fit", "suggest", "run")
STATE_FILE = "state.json"
RUNS_FILE = "runs.parquet"
POOL_FILE = "pool.parquet"
MATCH_TOL = 1e-6  # total-variation distance under which a run's mixture is the suggested one
SEED_STRIDE = 7919  # round k uses seed + SEED_STRIDE * k

Runner = Callable[[pd.DataFrame], pd.DataFrame]
FitFn = Callable[[pd.DataFrame, int], object]


class CampaignError(RuntimeError):
    """The campaign cannot continue as asked (a runner returned the wrong rows, no runner, ...)."""


# ---------------------------------------------------------------- files


def _write_json(payload: dict, path: Path) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)


# ---------------------------------------------------------------- runners


def pool_runner(table: pd.DataFrame) -> Runner:
    """A runner that reveals the rows of already finished runs (pool-based campaigns, replays).

    ``table``: a run table. Each suggested mixture must equal (total variation
    < 1e-6) the mixture of at least one run in it; all rows of those runs are
    returned."""
    runs = validate_runs(table)
    cols = mix_columns(runs)
    per_run = runs.drop_duplicates("run")
    r_pool = per_run[cols].to_numpy(float)
    names = per_run["run"].to_numpy()

    def run(suggestions: pd.DataFrame) -> pd.DataFrame:
        r = suggestions[cols].to_numpy(float)
        dist = cand.tv_distance(r, r_pool)
        missing = np.flatnonzero(dist.min(axis=1) > MATCH_TOL)
        if missing.size:
            labels = suggestions["mixture"].astype(str).to_numpy()[missing].tolist()
            raise CampaignError(f"the pool has no run with the mixture of {labels}")
        chosen = {names[j] for i in range(len(r)) for j in np.flatnonzero(dist[i] <= MATCH_TOL)}
        return runs[runs["run"].isin(chosen)].reset_index(drop=True)

    return run


def proxy_runner(sizes, *, out=None, workdir=None, **settings) -> Runner:
    """A runner that trains proxy models (:func:`bayesmix.proxy.sweep`) on each suggested
    mixture at every size in ``sizes``; ``out``/``workdir``/``settings`` go to ``sweep``
    (give ``workdir`` so that an interrupted sweep resumes instead of restarting)."""

    def run(suggestions: pd.DataFrame) -> pd.DataFrame:
        from bayesmix.proxy import sweep

        cols = mix_columns(suggestions)
        mixtures = {str(row["mixture"]): {c[len(MIX_PREFIX):]: float(row[c]) for c in cols}
                    for _, row in suggestions.iterrows()}
        return sweep(mixtures, list(sizes), out=out, workdir=workdir, **settings)

    return run


def default_fit_fn(options: Mapping) -> FitFn:
    """``fit(runs, law=options["law"], seed=seed, sampler=options["sampler"], **options["law_options"])``."""
    from bayesmix.inference.fit import fit

    law = options.get("law", "mix")
    sampler = dict(options.get("sampler", {}))
    law_options = dict(options.get("law_options", {}))

    def fit_fn(runs: pd.DataFrame, seed: int):
        return fit(runs, law=law, seed=seed, sampler=sampler, **law_options)

    return fit_fn


# ---------------------------------------------------------------- the campaign


class Campaign:
    """A closed loop over one folder; build with :meth:`create` or :meth:`resume`."""

    def __init__(self, folder: Path, state: dict, *, runner: Runner | None, fit_fn: FitFn | None):
        self.folder = Path(folder)
        self.state = state
        self.runner = runner
        self.fit_fn = fit_fn or default_fit_fn(state["fit_options"])
        self.bounds = SimplexBounds.from_dict(state["bounds"])
        self._fit = None

    # ------------------------------------------------------------ construction

    @classmethod
    def create(cls, folder, *, runner: Runner | None, bounds: SimplexBounds | None = None,
               domains=None, runs: pd.DataFrame | None = None, n_initial: int = 8, q: int = 4, seed: int = 0,
               fit_fn: FitFn | None = None, fit_options: Mapping | None = None,
               suggest_options: Mapping | None = None, pool: pd.DataFrame | None = None,
               eval: str | None = None) -> Campaign:
        """Start a campaign in ``folder`` (which must not hold one already).

        ``bounds`` (or ``domains``: the whole simplex) fixes the domains. ``runs``:
        an initial run table (else ``n_initial`` space-filling mixtures are run
        first). ``fit_options``: ``{"law": "mix", "sampler": {...}, "law_options":
        {...}}`` for the default fit. ``suggest_options``: keyword arguments of
        :func:`bayesmix.design.suggest.suggest` (e.g. ``acquisition``, ``steps``).
        ``pool``: restrict every suggestion to these mixtures.
        """
        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            raise FileExistsError(f"{folder} already holds a campaign; use Campaign.resume")
        if bounds is None:
            if domains is None and runs is not None:
                domains = [c[len(MIX_PREFIX):] for c in mix_columns(runs)]
            if domains is None:
                raise ValueError("give bounds= or domains= (or initial runs)")
            bounds = SimplexBounds(domains)
        if not isinstance(q, (int, np.integer)) or q < 1:
            raise ValueError(f"q must be a positive integer, got {q!r}")
        if runs is None and (not isinstance(n_initial, (int, np.integer)) or n_initial < 1):
            raise ValueError(f"n_initial must be a positive integer when no runs are given, got {n_initial!r}")
        if suggest_options and {"q", "seed", "bounds", "pool", "tried", "prefix"} & set(suggest_options):
            raise ValueError("suggest_options may not set q, seed, bounds, pool, tried or prefix; they are campaign "
                             "settings")
        from bayesmix.design.suggest import suggest_settings

        suggest_settings(suggest_options or {})  # unknown option names fail here, before anything is written
        has_runs = runs is not None and len(runs) > 0
        if has_runs:  # every check before anything is written
            runs = validate_runs(runs)
            run_domains = [c[len(MIX_PREFIX):] for c in mix_columns(runs)]
            if run_domains != list(bounds.domains):
                raise ValueError(f"the runs have domains {run_domains}, the bounds {bounds.domains}")
        pool_frame = _pool_frame(pool, bounds.domains) if pool is not None else None
        folder.mkdir(parents=True, exist_ok=True)
        for sub in ("suggestions", "fits"):
            (folder / sub).mkdir(exist_ok=True)
        if has_runs:
            write_runs(runs, folder / RUNS_FILE)
        if pool_frame is not None:
            write_table(pool_frame, folder / POOL_FILE)
        state = {
            "version": STATE_VERSION, "round": 0, "phase": "fit" if has_runs else "design", "seed": int(seed),
            "q": int(q), "n_initial": int(n_initial), "bounds": bounds.to_dict(), "eval": eval,
            "fit_options": jsonable(dict(fit_options or {})),
            "suggest_options": jsonable(dict(suggest_options or {})),
            "custom_fit": fit_fn is not None, "pool": pool is not None, "history": [], "created": time.time(),
        }
        _write_json(state, folder / STATE_FILE)
        return cls(folder, state, runner=runner, fit_fn=fit_fn)

    @classmethod
    def resume(cls, folder, *, runner: Runner | None, fit_fn: FitFn | None = None) -> Campaign:
        """Reopen the campaign saved in ``folder`` at the phase where it stopped."""
        folder = Path(folder)
        path = folder / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no campaign in {folder} (no {STATE_FILE})")
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{path} has state version {state.get('version')}; this bayesmix reads {STATE_VERSION}")
        if state.get("custom_fit") and fit_fn is None:
            raise ValueError("this campaign was created with a custom fit_fn: pass it to resume")
        return cls(folder, state, runner=runner, fit_fn=fit_fn)

    # ------------------------------------------------------------ views

    @property
    def round(self) -> int:
        """Completed rounds (batches run)."""
        return int(self.state["round"])

    @property
    def phase(self) -> str:
        """The next phase: ``design``, ``fit``, ``suggest`` or ``run``."""
        return str(self.state["phase"])

    @property
    def domains(self) -> list[str]:
        return list(self.bounds.domains)

    @property
    def runs(self) -> pd.DataFrame:
        """The run table so far (empty before the first batch)."""
        path = self.folder / RUNS_FILE
        if not path.is_file():
            return pd.DataFrame(columns=["run", "size", "step", "eval", "loss", *(MIX_PREFIX + d for d in self.domains)])
        return validate_runs(read_table(path))

    @property
    def history(self) -> pd.DataFrame:
        """One row per completed round: seed, runs, incumbent, best observed loss, timings."""
        return pd.DataFrame(self.state["history"])

    def seed_of(self, k: int) -> int:
        return int(self.state["seed"]) + SEED_STRIDE * int(k)

    def suggestions(self, k: int | None = None) -> pd.DataFrame:
        """The mixtures proposed for round ``k`` (default: the current one)."""
        k = self.round if k is None else k
        return read_table(self._suggestion_path(k))

    def landscape(self, k: int | None = None) -> pd.DataFrame | None:
        """The acquisition of every candidate searched in round ``k`` (None for a design batch)."""
        k = self.round if k is None else k
        path = self._suggestion_path(k).with_name(f"round_{k:03d}_landscape.csv")
        return read_table(path) if path.is_file() else None

    def pool(self) -> pd.DataFrame | None:
        path = self.folder / POOL_FILE
        return read_table(path) if path.is_file() else None

    def latest_fit(self):
        """The fit of the current round (loaded from disk, or refitted when it could not be saved)."""
        if self._fit is None:
            self._fit = self._load_or_refit()
        return self._fit

    def _suggestion_path(self, k: int) -> Path:
        return self.folder / "suggestions" / f"round_{k:03d}.csv"

    def _fit_path(self, k: int, fit=None) -> Path:
        """Where round ``k``'s fit is saved: a netCDF file for a law fit, a folder for a pipeline."""
        pipeline = hasattr(fit, "stages") if fit is not None else self.state.get("fit_kind") == "pipeline"
        return self.folder / "fits" / (f"round_{k:03d}" if pipeline else f"round_{k:03d}.nc")

    # ------------------------------------------------------------ phases

    def _save_state(self, **changes) -> None:
        self.state.update(changes)
        _write_json(self.state, self.folder / STATE_FILE)

    def step(self) -> str:
        """Do the next phase, save, and return its name (``"waiting"`` when the run phase
        has no runner: call :meth:`add_runs`)."""
        phase = self.phase
        if phase == "design":
            self._design()
        elif phase == "fit":
            self._do_fit()
        elif phase == "suggest":
            self._suggest()
        elif phase == "run":
            if self.runner is None:
                return "waiting"
            self._run()
        else:
            raise CampaignError(f"unknown phase {phase!r} in {self.folder / STATE_FILE}")
        return phase

    def run(self, rounds: int) -> Campaign:
        """Advance until ``rounds`` rounds are complete (counting earlier ones) and their
        fit is done, so that :meth:`latest_fit` reflects every run."""
        while not (self.round >= rounds and self.phase in ("suggest", "run")):
            if self.step() == "waiting":
                raise CampaignError("the run phase needs a runner (or call add_runs with the new rows)")
        return self

    def _design(self) -> None:
        k = self.round
        n = int(self.state["n_initial"])
        pool = self.pool()
        if pool is not None:
            r_pool = pool[[MIX_PREFIX + d for d in self.domains]].to_numpy(float)
            inside = np.flatnonzero(self.bounds.is_feasible(r_pool, tol=MATCH_TOL))
            if inside.size == 0:
                raise CampaignError("no pool mixture lies within the bounds: nothing to run first")
            picks = inside[np.random.default_rng(self.seed_of(k)).choice(inside.size, size=min(n, inside.size),
                                                                          replace=False)]
            frame = pool.iloc[np.sort(picks)].reset_index(drop=True)
        else:
            r = cand.space_filling(self.bounds, n, seed=self.seed_of(k))
            frame = cand.mixtures_frame(r, self.domains, labels=[f"r{k}-init{i + 1}" for i in range(len(r))])
        write_table(frame, self._suggestion_path(k))
        self._save_state(phase="run", runs_before=self._run_ids())

    def _do_fit(self) -> None:
        k = self.round
        t0 = time.time()
        fit = self.fit_fn(self.runs, self.seed_of(k))
        saved = hasattr(fit, "save")
        if saved:
            fit.save(self._fit_path(k, fit))
        self._fit = fit
        self._save_state(phase="suggest", fit_saved=saved, fit_kind="pipeline" if hasattr(fit, "stages") else "law",
                         fit_seconds=round(time.time() - t0, 2))

    def _load_or_refit(self):
        k = self.round
        path = self._fit_path(k)
        if self.state.get("fit_saved") and path.exists() and not self.state.get("custom_fit"):
            from bayesmix.pipeline.store import load_result

            return load_result(path)
        return self.fit_fn(self.runs, self.seed_of(k))

    def _suggest(self) -> None:
        from bayesmix.design.suggest import suggest_settings, suggest_with_landscape

        k = self.round
        runs = self.runs
        pool = self.pool()
        options = dict(self.state["suggest_options"])
        if self.state.get("eval") and "eval" not in options:
            options["eval"] = self.state["eval"]
        if "domains" not in options:
            options["domains"] = self.domains
        table, landscape = suggest_with_landscape(self.latest_fit(), q=int(self.state["q"]), bounds=self.bounds,
                                                  seed=self.seed_of(k), pool=pool, tried=runs, prefix=f"r{k}-next",
                                                  **suggest_settings(options))
        write_table(landscape, self._suggestion_path(k).with_name(f"round_{k:03d}_landscape.csv"))
        write_table(table, self._suggestion_path(k))
        self._save_state(phase="run", last_incumbent=table.attrs.get("incumbent"),
                         last_incumbent_mixture=table.attrs.get("incumbent_mixture"), runs_before=self._run_ids())

    def _run(self) -> None:
        rows = self.runner(self._missing_suggestions())
        self.add_runs(rows)

    def _run_ids(self) -> list[str]:
        return sorted(self.runs["run"].astype(str).unique().tolist())

    def _missing_suggestions(self) -> pd.DataFrame:
        """Suggestions of this round whose mixture has no run from this round yet (all of them,
        unless a previous attempt saved some rows before stopping). Runs of earlier rounds do not
        count: a suggestion may repeat a mixture that was already run."""
        sugg = self.suggestions()
        runs = self.runs
        before = self.state.get("runs_before")
        if before is not None:
            runs = runs[~runs["run"].isin(before)]
        if runs.empty:
            return sugg
        cols = [MIX_PREFIX + d for d in self.domains]
        done = cand.tv_distance(sugg[cols].to_numpy(float), runs[cols].drop_duplicates().to_numpy(float))
        return sugg[done.min(axis=1) > MATCH_TOL].reset_index(drop=True)

    def add_runs(self, rows: pd.DataFrame) -> None:
        """Append the rows of this round's runs (from the runner or an external job) and,
        once every suggested mixture has runs, close the round."""
        if self.phase != "run":
            raise CampaignError(f"the campaign is in phase {self.phase!r}, not 'run': no runs are expected now")
        if rows is None or len(rows) == 0:
            raise CampaignError("the runner returned no rows")
        rows = validate_runs(rows)
        cols = [MIX_PREFIX + d for d in self.domains]
        if mix_columns(rows) != cols:
            raise CampaignError(f"new rows have mixture columns {mix_columns(rows)}, the campaign {cols}")
        runs = self.runs
        clash = sorted(set(rows["run"]) & set(runs["run"]))
        if clash:
            raise CampaignError(f"run id(s) {clash[:5]} are already in the campaign's run table")
        sugg = self.suggestions()
        r_new = rows.drop_duplicates("run")[cols].to_numpy(float)
        stray = cand.tv_distance(r_new, sugg[cols].to_numpy(float)).min(axis=1) > MATCH_TOL
        if stray.any():
            names = rows.drop_duplicates("run")["run"].to_numpy()[stray].tolist()
            raise CampaignError(f"run(s) {names[:5]} have mixtures that were not suggested this round")
        merged = pd.concat([runs, rows], ignore_index=True) if len(runs) else rows
        write_runs(merged, self.folder / RUNS_FILE)
        if len(self._missing_suggestions()):
            return  # partial batch saved; the round stays open
        self._close_round(merged)

    def _close_round(self, runs: pd.DataFrame) -> None:
        k = self.round
        entry = {"round": k + 1, "seed": self.seed_of(k), "mixtures": len(runs.drop_duplicates(mix_columns(runs))),
                 "runs": int(runs["run"].nunique()), "suggested": self.suggestions()["mixture"].astype(str).tolist(),
                 "incumbent": self.state.get("last_incumbent"),
                 "incumbent_mixture": self.state.get("last_incumbent_mixture"),
                 "fit_seconds": self.state.get("fit_seconds"), **self._best_observed(runs), "time": time.time()}
        history = list(self.state["history"]) + [jsonable(entry)]
        self._fit = None
        self._save_state(round=k + 1, phase="fit", history=history, last_incumbent=None, last_incumbent_mixture=None,
                         runs_before=None)

    def _best_observed(self, runs: pd.DataFrame) -> dict:
        """Lowest observed loss (of ``eval``, or the mean over evals) at each run's last step, at the
        largest size."""
        last = runs[runs["step"] == runs.groupby("run")["step"].transform("max")]
        last = last[last["size"] == last["size"].max()]
        ev = self.state.get("eval")
        if ev and ev in set(last["eval"]):
            per_run = last[last["eval"] == ev].groupby("run")["loss"].mean()
        else:
            per_run = last.groupby("run")["loss"].mean()
        return {"best_observed": float(per_run.min()), "best_run": str(per_run.idxmin())}


def _pool_frame(pool, domains) -> pd.DataFrame:
    """Distinct pool mixtures with labels (from a run table: the run names)."""
    if isinstance(pool, pd.DataFrame) and mix_columns(pool):
        cols = [MIX_PREFIX + d for d in domains]
        if mix_columns(pool) != cols:
            raise ValueError(f"the pool has mixture columns {mix_columns(pool)}, expected {cols}")
        label = "mixture" if "mixture" in pool else ("run" if "run" in pool else None)
        distinct = pool.drop_duplicates(cols).reset_index(drop=True)
        labels = distinct[label].astype(str).tolist() if label else [f"pool{i}" for i in range(len(distinct))]
        return cand.mixtures_frame(distinct[cols].to_numpy(float), domains, labels=labels)
    from bayesmix.laws.mixtures import as_mixture_matrix

    _, frame = as_mixture_matrix(pool, list(domains))
    return frame


__all__ = ["Campaign", "CampaignError", "FitFn", "Runner", "default_fit_fn", "pool_runner", "proxy_runner"]
