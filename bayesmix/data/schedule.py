"""Learning-rate schedules of runs: the spec, the learning rate at any step, and its areas.

A run's schedule is planned for ``plan_steps`` updates (a run may stop before):
linear warm-up from 0 to ``peak_lr`` over ``warmup`` updates, then, by ``shape``,

    cosine:    lr(s) = low + (peak - low) (1 + cos(pi p)) / 2,   p = (s - warmup) / (plan_steps - warmup)
    linear:    lr(s) = peak - (peak - low) p
    wsd:       lr(s) = peak until plan_steps - decay_steps, then linear to low at plan_steps
    constant:  lr(s) = peak

with ``low = final_ratio * peak`` and p clipped to [0, 1] (the rate stays at
``low`` after ``plan_steps``). Steps are 1-based update numbers.

Its *areas* (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"),
in units of steps at the peak rate (lr normalised by ``peak_lr``):

    S1(s) = sum_{i <= s} lr_i / peak                          (forward area)
    m_i   = lam m_{i-1} + (lr_{i-1} - lr_i) / peak,  m_0 = 0   (annealing momentum, after warm-up)
    S2(s) = sum_{i <= s} m_i                                  (annealing area)

A run table carries a schedule as the per-run columns ``SCHEDULE_COLUMNS``
(constant within a run) and, optionally, the rate at each checkpoint in ``lr``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.signal import lfilter

SHAPES = ("cosine", "linear", "wsd", "constant")
LR_COLUMN = "lr"
SCHEDULE_PREFIX = "schedule."
SCHEDULE_FIELDS = ("shape", "peak_lr", "warmup", "final_ratio", "plan_steps", "decay_steps")
SCHEDULE_COLUMNS = tuple(SCHEDULE_PREFIX + f for f in SCHEDULE_FIELDS)
#: Momentum of the annealing area (Tissue et al. 2024 use 0.999 throughout).
ANNEAL_MOMENTUM = 0.999
LR_RTOL = 1e-3  # a checkpoint's ``lr`` must match its schedule spec this closely


class ScheduleError(ValueError):
    """A schedule spec or ``lr`` column that cannot be right."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One run's learning-rate schedule (see module docstring).

    ``decay_steps``: the length of the final decay of a ``wsd`` schedule (ignored
    by the other shapes; default 20% of ``plan_steps``)."""

    shape: str
    peak_lr: float
    warmup: int
    final_ratio: float
    plan_steps: int
    decay_steps: int | None = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ScheduleError(f"schedule shape must be one of {SHAPES}, got {self.shape!r}")
        if not (np.isfinite(self.peak_lr) and self.peak_lr > 0):
            raise ScheduleError(f"schedule peak_lr must be positive and finite, got {self.peak_lr}")
        if not (int(self.plan_steps) == self.plan_steps and self.plan_steps >= 1):
            raise ScheduleError(f"schedule plan_steps must be a positive integer, got {self.plan_steps}")
        if not (int(self.warmup) == self.warmup and 0 <= self.warmup < self.plan_steps):
            raise ScheduleError(f"schedule warmup must be an integer in [0, plan_steps={self.plan_steps}), "
                                f"got {self.warmup}")
        if not 0 <= self.final_ratio <= 1:
            raise ScheduleError(f"schedule final_ratio must lie in [0, 1], got {self.final_ratio}")
        if self.shape == "wsd" and self.decay_steps is not None and not (
                int(self.decay_steps) == self.decay_steps and 1 <= self.decay_steps <= self.plan_steps - self.warmup):
            raise ScheduleError(f"schedule decay_steps of a wsd schedule must be an integer in "
                                f"[1, plan_steps - warmup = {self.plan_steps - self.warmup}], got {self.decay_steps}")

    def lr(self, steps) -> np.ndarray:
        """Learning rate of update number ``steps`` (array of 1-based steps) -> same shape."""
        s = np.asarray(steps, dtype=float)
        peak, low = self.peak_lr, self.final_ratio * self.peak_lr
        warm = peak * s / max(1, self.warmup)
        if self.shape == "constant":
            after = np.full_like(s, peak)
        elif self.shape == "wsd":
            decay = self.decay_steps or max(1, round(0.2 * self.plan_steps))
            start = self.plan_steps - decay
            p = np.clip((s - start) / decay, 0.0, 1.0)
            after = peak - (peak - low) * p
        else:
            p = np.clip((s - self.warmup) / max(1, self.plan_steps - self.warmup), 0.0, 1.0)
            after = low + 0.5 * (peak - low) * (1 + np.cos(math.pi * p)) if self.shape == "cosine" \
                else peak - (peak - low) * p
        return np.where(s <= self.warmup, warm, after)

    def rate_share(self, steps) -> np.ndarray:
        """Learning rate at ``steps`` as a share of the peak: ``lr(steps) / peak_lr``, same shape."""
        return self.lr(steps) / self.peak_lr

    def areas(self, steps, momentum: float = ANNEAL_MOMENTUM) -> tuple[np.ndarray, np.ndarray]:
        """(S1, S2) at ``steps`` (1-D array of positive integers): the forward and annealing
        areas of the module docstring, in steps at the peak rate."""
        steps = np.asarray(steps)
        if steps.size == 0:
            return np.zeros(0), np.zeros(0)
        if np.any(steps < 1) or np.any(steps != np.round(steps)):
            raise ScheduleError(f"areas need positive integer steps, got {steps.tolist()[:8]}")
        grid = np.arange(1, int(steps.max()) + 1)
        rate = self.rate_share(grid)
        drop = np.diff(rate, prepend=rate[0]) * -1.0
        drop[grid <= self.warmup] = 0.0  # the warm-up's rise is not an anneal
        m = lfilter([1.0], [1.0, -momentum], drop)
        s1, s2 = np.cumsum(rate), np.cumsum(m)
        idx = steps.astype(int) - 1
        return s1[idx], s2[idx]

    def extended_to(self, plan_steps: int) -> Schedule:
        """The same schedule re-planned for ``plan_steps`` (warm-up and shape kept)."""
        return dataclasses.replace(self, plan_steps=int(plan_steps))

    def as_columns(self) -> dict:
        """The run-table columns of this spec (``SCHEDULE_COLUMNS``)."""
        values = dataclasses.asdict(self)
        values["decay_steps"] = np.nan if self.decay_steps is None else int(self.decay_steps)
        return {SCHEDULE_PREFIX + k: values[k] for k in SCHEDULE_FIELDS}


def _with_spec(runs: pd.DataFrame) -> pd.Series:
    """Per row: whether its run carries a schedule spec (``schedule.shape`` given)."""
    if SCHEDULE_PREFIX + "shape" not in runs.columns:
        return pd.Series(False, index=runs.index)
    shape = runs[SCHEDULE_PREFIX + "shape"]
    return shape.notna() & (shape.astype(str).str.strip() != "") & (shape.astype(str) != "nan")


def has_schedule(runs: pd.DataFrame) -> bool:
    """Whether every run of the table carries a schedule spec."""
    return bool(len(runs)) and bool(_with_spec(runs).all())


def _spec_from_row(row: Mapping) -> Schedule:
    decay = row.get(SCHEDULE_PREFIX + "decay_steps")
    decay = None if decay is None or (isinstance(decay, float) and not np.isfinite(decay)) else int(decay)
    return Schedule(shape=str(row[SCHEDULE_PREFIX + "shape"]).strip().lower(),
                    peak_lr=float(row[SCHEDULE_PREFIX + "peak_lr"]), warmup=int(row[SCHEDULE_PREFIX + "warmup"]),
                    final_ratio=float(row[SCHEDULE_PREFIX + "final_ratio"]),
                    plan_steps=int(row[SCHEDULE_PREFIX + "plan_steps"]), decay_steps=decay)


def run_schedules(runs: pd.DataFrame) -> dict[str, Schedule]:
    """The schedule of every run that has one, ``{run: Schedule}``."""
    first = runs[_with_spec(runs)].drop_duplicates("run")
    return {str(r["run"]): _spec_from_row(r) for r in first.to_dict(orient="records")}


def short_list(items, limit: int = 8) -> str:
    """``a, b, c ... (n in all)``: a short list for error messages."""
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def check_schedule(df: pd.DataFrame) -> pd.DataFrame:
    """Validate the optional schedule columns of a run table (see module docstring).

    The spec columns come all together (``schedule.decay_steps`` may be left out),
    constant within each run, with valid values; ``lr`` is positive and finite and,
    with a spec, agrees with it at each checkpoint (relative ``LR_RTOL``).
    Returns ``df`` with ``schedule.shape`` lower-cased. Raises :class:`ScheduleError`
    naming the runs and columns at fault.
    """
    present = [c for c in SCHEDULE_COLUMNS if c in df.columns]
    required = list(SCHEDULE_COLUMNS[:-1])
    out = df
    specced = _with_spec(df)
    if present:
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ScheduleError(f"a schedule spec needs the columns {required}; missing {missing}")
        varying = df.groupby("run", sort=False)[present].nunique(dropna=False) > 1
        if varying.to_numpy().any():
            cols = [c for c in present if varying[c].any()]
            raise ScheduleError(f"the schedule changes between rows of run(s) "
                                f"{short_list(varying.index[varying.any(axis=1)])} (column(s) {short_list(cols)})")
        partial = ~specced & df[required].notna().any(axis=1)
        if partial.any():
            raise ScheduleError(f"run(s) {short_list(df.loc[partial, 'run'].unique())} give part of a schedule spec "
                                f"but no schedule.shape")
        out = df.copy()
        out.loc[specced, SCHEDULE_PREFIX + "shape"] = (out.loc[specced, SCHEDULE_PREFIX + "shape"].astype(str)
                                                       .str.strip().str.lower())
        for row in out[specced].drop_duplicates("run").to_dict(orient="records"):
            try:
                _spec_from_row(row)
            except (ScheduleError, TypeError, ValueError) as err:
                raise ScheduleError(f"run {row['run']!r}: {err}") from None
    if LR_COLUMN in df.columns:
        lr = pd.to_numeric(out[LR_COLUMN], errors="coerce").to_numpy(float)
        bad = (~np.isfinite(lr) | (lr <= 0)) & out[LR_COLUMN].notna().to_numpy()
        if bad.any():
            raise ScheduleError(f"column 'lr' must hold positive finite learning rates; bad values in run(s) "
                                f"{short_list(out.loc[bad, 'run'].unique())}")
        if present and specced.any():
            specs = run_schedules(out)
            expected = np.array([specs[str(r)].lr(s) if str(r) in specs else v
                                 for r, s, v in zip(out["run"], out["step"], lr)], dtype=float)
            off = np.abs(lr - expected) > LR_RTOL * expected
            if off.any():
                raise ScheduleError(f"column 'lr' disagrees with the schedule spec in run(s) "
                                    f"{short_list(out.loc[off, 'run'].unique())} (e.g. step "
                                    f"{int(out.loc[off, 'step'].iloc[0])}: lr {lr[off][0]:.4g}, spec "
                                    f"{expected[off][0]:.4g})")
        out = out.copy() if out is df else out
        out[LR_COLUMN] = lr
    return out


def with_schedule(rows: pd.DataFrame, schedule: Schedule) -> pd.DataFrame:
    """``rows`` (of one run) with the spec columns and the ``lr`` at each row's step."""
    return rows.assign(**{LR_COLUMN: schedule.lr(rows["step"].to_numpy())}, **schedule.as_columns())
