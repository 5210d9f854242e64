"""Simulated run tables from known laws, for tests, benchmarks and tutorials.

Every function takes a seed and returns a tidy run table (see ``bayesmix.data``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.laws.mixtures import MIX_PREFIX


def dirichlet_mixtures(n: int, domains: list[str], *, seed: int, concentration: float = 1.0) -> pd.DataFrame:
    """``n`` mixtures drawn from a symmetric Dirichlet: columns ``mix.<domain>``."""
    rng = np.random.default_rng(seed)
    r = rng.dirichlet(np.full(len(domains), concentration), size=n)
    return pd.DataFrame(r, columns=[MIX_PREFIX + d for d in domains])


def m4_losses(r: np.ndarray, c: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``c_e + exp(b_e + t_e . r)`` for mixtures r (n, M): (n, E)."""
    return c[None, :] + np.exp(b[None, :] + r @ t.T)


def simulate_mixing(
    mixtures: pd.DataFrame,
    *,
    c: np.ndarray,
    b: np.ndarray,
    t: np.ndarray,
    evals: list[str],
    noise: float,
    seed: int,
    size: int = 1_000_000,
    step: int = 1000,
) -> pd.DataFrame:
    """Losses of M4 with Gaussian noise (sd ``noise``) at one (size, step)."""
    rng = np.random.default_rng(seed)
    r = mixtures.to_numpy(float)
    loss = m4_losses(r, np.asarray(c), np.asarray(b), np.asarray(t))
    loss = loss + noise * rng.standard_normal(loss.shape)
    rows = []
    for i in range(r.shape[0]):
        for e, name in enumerate(evals):
            rows.append({"run": f"r{i:03d}", "size": size, "step": step, "eval": name, "loss": loss[i, e],
                         **mixtures.iloc[i].to_dict()})
    return pd.DataFrame(rows)


def simulate_curves(
    *,
    runs: list[str],
    steps: np.ndarray,
    E: np.ndarray,
    A: np.ndarray,
    alpha: np.ndarray,
    noise: float,
    seed: int,
    size: int = 1_000_000,
    eval_name: str = "val",
    mixture: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Step-law curves ``E_k + A_k S^-alpha_k`` for each run k, Gaussian noise."""
    rng = np.random.default_rng(seed)
    mixture = mixture or {MIX_PREFIX + "a": 1.0}
    rows = []
    for k, run in enumerate(runs):
        loss = E[k] + A[k] * np.power(steps.astype(float), -alpha[k]) + noise * rng.standard_normal(steps.size)
        rows += [{"run": run, "size": size, "step": int(s), "eval": eval_name, "loss": float(v), **mixture}
                 for s, v in zip(steps, loss)]
    return pd.DataFrame(rows)
