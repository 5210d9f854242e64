"""Learning-rate schedule and checkpoint steps.

The schedule is planned for ``plan_steps`` updates and a run may stop before
(the paper plans 100k steps and stops at 30k): linear warm-up to the peak over
``warmup`` steps, then cosine decay to ``min_ratio`` of the peak at
``plan_steps``. Checkpoints (where validation losses are measured) are
log-spaced up to the stopping step.
"""

from __future__ import annotations

import numpy as np

from bayesmix.data.schedule import Schedule


def lr_at(step: int, *, peak: float, warmup: int, plan_steps: int, min_ratio: float = 0.1) -> float:
    """Learning rate of update number ``step`` (1-based) of the trainer's cosine schedule
    (:class:`bayesmix.data.schedule.Schedule`)."""
    return float(cosine_schedule(peak=peak, warmup=warmup, plan_steps=plan_steps, min_ratio=min_ratio).lr(step))


def cosine_schedule(*, peak: float, warmup: int, plan_steps: int, min_ratio: float = 0.1) -> Schedule:
    """The trainer's schedule: warm-up, then cosine decay to ``min_ratio`` of ``peak`` at ``plan_steps``."""
    return Schedule("cosine", peak_lr=float(peak), warmup=int(warmup), final_ratio=float(min_ratio),
                    plan_steps=int(plan_steps))


def default_warmup(plan_steps: int) -> int:
    """2% of the planned steps, at least 1."""
    return max(1, round(0.02 * plan_steps))


def checkpoint_steps(steps: int, n: int = 10, first: int | None = None) -> list[int]:
    """Up to ``n`` log-spaced steps from ``first`` (default ``steps // 32``, at least 1) to ``steps``.

    Rounding can merge neighbours, so short runs may get fewer than ``n``;
    the stopping step is always included.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if n < 1:
        raise ValueError(f"the number of checkpoints must be at least 1, got {n}")
    first = max(1, steps // 32) if first is None else first
    if not 1 <= first <= steps:
        raise ValueError(f"the first checkpoint must lie in [1, steps={steps}], got {first}")
    if n == 1 or first == steps:
        return [steps]
    grid = np.unique(np.round(np.geomspace(first, steps, n)).astype(int))
    return sorted(set(grid.tolist()) | {steps})
