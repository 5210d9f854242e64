"""The paper's point-estimate chain and its residual bootstrap (the ``point`` mode).

Point chain (Ye et al. 2024, Algorithm 1): multi-start Huber fits of the step
law per curve, the size law per (mixture, eval) and M4 per eval, each fitted on
the previous stage's point predictions.

Intervals come from a residual bootstrap of the whole chain with B resamples,
all resamples of a stage in one stacked multi-start fit:

    y*_b    = fitted + e*_b         (e*_b: the stage's centred residuals, resampled within eval domain)
    stage 1: refit on y*_b                                  -> predictions p1_b at S*
    stage 2: refit on p1_b[inputs] + e*_b (stage-2 residuals) -> p2_b at N*
    stage 3: refit on p2_b[inputs] + e*_b (stage-3 residuals) -> M4 parameters theta_b

The B parameter sets play the role of posterior draws. The chain itself is
:func:`bayesmix.pipeline.chain.run_chain` with :class:`~bayesmix.pipeline.chain.PointEngine`.
"""

from __future__ import annotations


import numpy as np

from bayesmix.pipeline import stages as st


def bootstrap_stage(stage: st.Stage, y_point: np.ndarray, inputs_b: np.ndarray | None, *, n_boot: int,
                     seed: int, n_starts: int, boot_starts: int, rng: np.random.Generator):
    """Point fit on ``y_point`` and B refits on resampled data.

    ``inputs_b`` (B, n_obs): bootstrap replicates of the upstream predictions
    feeding this stage (``None`` for the first fitted stage: the data are fixed).
    Returns (point params, bootstrap params with leading B axis, residual sd per eval).
    """
    point = st.point_fit(stage, y_point, seed=seed, n_starts=n_starts)
    fitted = st.fitted_at_obs(stage, {k: np.asarray(v)[None] for k, v in point.items()})[0]
    resid = y_point - fitted
    groups = stage.data.arrays["eval"]
    base = fitted[None, :] if inputs_b is None else inputs_b
    ys = base + st.resample_residuals(resid, groups, n_boot, rng)
    boot = st.stacked_point_fit(stage, ys, seed=seed + 1, n_starts=boot_starts)
    sd = np.array([resid[groups == g].std(ddof=1) if (groups == g).sum() > 1 else 0.0
                   for g in range(int(groups.max()) + 1)])
    return point, boot, sd


__all__ = ["bootstrap_stage"]
