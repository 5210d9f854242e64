"""Simulated run tables from known laws, for tests, benchmarks and tutorials.

Every function takes a seed and returns a tidy run table (see ``bayesmix.data.table``).
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


class NestedLaw:
    """A joint law in mixture, model size and step under which every stage of the
    nested pipeline holds exactly:

        L_e(r, N, S) = c_e + exp(t_e . r) * (k_E,e + k_B,e (N/N0)^-beta_e + k_A,e (S/S0)^-alpha_e)

    At fixed (r, N) it is a step law in S, at fixed (r, S) a size law in N, and at
    fixed (N, S) the mixing law M4 ``c_e + exp(b_e + t_e . r)`` with
    ``b_e = log(k_E,e + k_B,e (N/N0)^-beta_e + k_A,e (S/S0)^-alpha_e)``.
    Arrays: c, kE, kB, kA, alpha, beta (E,), t (E, M).
    """

    def __init__(self, *, domains, evals, c, t, kE, kB, kA, alpha, beta, N0=1e6, S0=1e3, weights=None):
        self.domains, self.evals = list(domains), list(evals)
        self.c, self.t = np.asarray(c, float), np.asarray(t, float)
        self.kE, self.kB, self.kA = (np.asarray(v, float) for v in (kE, kB, kA))
        self.alpha, self.beta = np.asarray(alpha, float), np.asarray(beta, float)
        self.N0, self.S0 = float(N0), float(S0)
        w = np.full(len(self.evals), 1.0 / len(self.evals)) if weights is None else np.asarray(weights, float)
        self.weights = w

    def scale_term(self, size, step) -> np.ndarray:
        """``k_E + k_B (N/N0)^-beta + k_A (S/S0)^-alpha`` for broadcastable size, step: (..., E)."""
        size = np.asarray(size, float)[..., None]
        step = np.asarray(step, float)[..., None]
        return self.kE + self.kB * (size / self.N0) ** -self.beta + self.kA * (step / self.S0) ** -self.alpha

    def loss(self, r, size, step) -> np.ndarray:
        """Noise-free per-eval loss for mixtures r (n, M) at one (size, step): (n, E)."""
        r = np.atleast_2d(np.asarray(r, float))
        return self.c + np.exp(r @ self.t.T) * self.scale_term(size, step)

    def overall(self, r, size, step) -> np.ndarray:
        """Weighted overall loss ``sum_e w_e L_e``: (n,)."""
        return self.loss(r, size, step) @ self.weights

    def m4(self, size, step) -> dict[str, np.ndarray]:
        """Parameters (c, b, t) of the exact M4 law at (size, step)."""
        return {"c": self.c.copy(), "b": np.log(self.scale_term(size, step)), "t": self.t.copy()}

    @classmethod
    def random(cls, domains, evals, *, seed: int, interaction: float = 1.0):
        """Parameters drawn in the range of published fits (losses of about 2.5 to 4.5 nats).

        t_e: zero-sum, sd ``interaction``; c_e ~ U(1.5, 2.5); k_E ~ U(0.3, 0.6);
        k_B ~ U(0.6, 1.2), beta ~ U(0.2, 0.4) at N0 = 1e6; k_A ~ U(0.5, 1.0),
        alpha ~ U(0.25, 0.5) at S0 = 1e3.
        """
        rng = np.random.default_rng(seed)
        E, M = len(evals), len(domains)
        t = interaction * rng.standard_normal((E, M))
        t -= t.mean(axis=1, keepdims=True)
        return cls(domains=domains, evals=evals, c=rng.uniform(1.5, 2.5, E), t=t, kE=rng.uniform(0.3, 0.6, E),
                   kB=rng.uniform(0.6, 1.2, E), kA=rng.uniform(0.5, 1.0, E), alpha=rng.uniform(0.25, 0.5, E),
                   beta=rng.uniform(0.2, 0.4, E))


def simulate_campaign(
    law: NestedLaw,
    mixtures: pd.DataFrame,
    *,
    sizes,
    steps,
    seed: int,
    noise: float = 0.01,
    run_noise: float = 0.005,
) -> pd.DataFrame:
    """Proxy runs of every (mixture, size) with checkpoints at ``steps``, from ``law``.

    ``mixtures`` has ``mix.<domain>`` columns in ``law.domains`` order. Loss =
    law + a per-(run, eval) offset (sd ``run_noise``, constant over a run's
    checkpoints: seed-to-seed variation) + checkpoint noise (sd ``noise``).
    Runs are labelled ``m<k>_n<j>`` (mixture k, size index j).
    """
    rng = np.random.default_rng(seed)
    r = mixtures[[MIX_PREFIX + d for d in law.domains]].to_numpy(float)
    sizes = np.asarray(sizes, float)
    steps = np.asarray(steps)
    K, J, T, E = r.shape[0], sizes.size, steps.size, len(law.evals)
    scale = law.scale_term(sizes[None, :, None], steps[None, None, :].astype(float))  # (1, J, T, E)
    mean = law.c + np.exp(r @ law.t.T)[:, None, None, :] * scale  # (K, J, T, E)
    offset = run_noise * rng.standard_normal((K, J, 1, E))
    loss = mean + offset + noise * rng.standard_normal((K, J, T, E))
    k, j, s, e = (a.ravel() for a in np.meshgrid(np.arange(K), np.arange(J), np.arange(T), np.arange(E),
                                                  indexing="ij"))
    table = pd.DataFrame({
        "run": [f"m{a}_n{b}" for a, b in zip(k, j)],
        "size": sizes[j].astype(np.int64),
        "step": steps[s].astype(np.int64),
        "eval": np.asarray(law.evals)[e],
        "loss": loss.ravel(),
    })
    for m, d in enumerate(law.domains):
        table[MIX_PREFIX + d] = r[k, m]
    return table


def annealing_losses(schedule, steps: np.ndarray, *, floor: float, amplitude: float, exponent: float,
                     anneal: float) -> np.ndarray:
    """``floor + amplitude S1^-exponent - anneal S2`` at ``steps`` of ``schedule``
    (:class:`bayesmix.data.schedule.Schedule`; areas in steps at the peak rate / 1000)."""
    s1, s2 = schedule.areas(np.asarray(steps))
    return floor + amplitude * np.power(s1 / 1000.0, -exponent) - anneal * s2 / 1000.0


def simulate_annealing_runs(runs: dict[str, tuple], *, floor: float = 1.5, amplitude: float = 0.8,
                            exponent: float = 0.5, anneal: float = 0.4, noise: float = 0.003,
                            checkpoints: int = 10, first: int = 30, seed: int) -> pd.DataFrame:
    """Run table of one mixture, size and eval domain whose runs follow the schedule-aware
    step law (:func:`annealing_losses`) with Gaussian noise (sd ``noise``).

    ``runs``: name -> (schedule, stopping step); checkpoints log-spaced from ``first``.
    The rows carry the schedule columns and ``lr`` (:func:`bayesmix.data.schedule.with_schedule`)."""
    from bayesmix.data.schedule import with_schedule

    rng = np.random.default_rng(seed)
    parts = []
    for name, (schedule, stop) in runs.items():
        steps = np.unique(np.round(np.geomspace(first, stop, checkpoints)).astype(int))
        loss = annealing_losses(schedule, steps, floor=floor, amplitude=amplitude, exponent=exponent, anneal=anneal)
        rows = pd.DataFrame({"run": name, "size": 1_000_000, "step": steps, "eval": "web",
                             "loss": loss + noise * rng.standard_normal(steps.size), MIX_PREFIX + "web": 1.0})
        parts.append(with_schedule(rows, schedule))
    return pd.concat(parts, ignore_index=True)
