"""Extrapolation discrepancy: how wrong a law's form is, learned from its own backtests.

A law's posterior knows the noise of the data it was fitted on, not that its form may be
wrong where it extrapolates. Each stage replays its own extrapolation inside the data
(:mod:`bayesmix.pipeline.backtest`): stage s predicts units i it did not see at distance x_i
(step: log step ratio; size: log size ratio; mix: total-variation distance to the nearest
other mixture) and misses by m_i (observed - predicted overall loss). The misses set a
systematic bias b_s and a discrepancy scale k_s, both per unit distance:

    m_i ~ N(b_s x_i, noise_i^2 + (k_s x_i)^2),   b_s ~ N(0, prior_scale_s),  k_s ~ HalfNormal(prior_scale_s)

``noise_i`` is the known part of miss i: the stage's in-sample residual sd of the overall
loss and the spread of the replayed prediction itself (a residual bootstrap of the replayed
fit), which the target's posterior already carries; only the excess is discrepancy. The posterior of (b_s, k_s) is computed on a grid (two
dimensions: exact up to the grid). Without backtests (too few sizes, say) it is the prior.

At the target, the overall loss of a mixture r carries

    delta_d(r) = sum_s b_s,d x_s(r) + s_d(r) g_d(r),
    s_d(r)^2 = (k_step,d x_step)^2 + (k_size,d x_size)^2 + (k_mix,d d(r))^2

plus, where r cuts domains below every tried share, a one-sided rise (below), with
(b_s,d, k_s,d) drawn from each posterior (so the tails are those of a scale mixture),
x_step = log(S* / earliest last step of the runs handed downstream), x_size = |log(N* /
nearest size)|, d(r) the distance of r to its nearest tried mixture, and g_d a
unit-variance Gaussian field over the simplex with correlation exp(-TV(r, r') / length)
(random Fourier features of the Laplace kernel in L1, normalised to unit variance at every
r; length = the trust radius of :mod:`bayesmix.decide.support`): nearby mixtures err together, far
ones independently, so P(r beats a tried baseline) widens with distance. The step and size
biases shift every mixture alike and cancel in comparisons.

With several eval domains, the overall loss's discrepancy is calibrated on the overall's
misses and each eval domain's on its own (``Discrepancy.evals``): the domains' errors partly
cancel in the weighted sum, so a domain alone can miss by more than its share of the overall's
miss, and its interval must say so. The per-domain discrepancies share the overall's field
(the same seed), so they move together; the weighted sum of the domains' intervals is then
not the overall's interval, which its own backtests calibrate.

**Faces: the rise no backtest measures.** A domain cut below every share any tried run gave
it (to zero, on a face of the simplex) is starved as no run was: its own eval loss can rise
towards that of a domain never trained on, and can even grow with training, which the
mixing law's smooth exponential form cannot see. The mixing stage's backtests leave out
mixtures towards the vertices and the interior, never towards a face no run reached, so
nothing in the data calibrates this. Its prior: removing a group S of the M domains can
double the loss of the |S| / M of the evaluation that is theirs, so every loss carries

    rise_d(r) = FACE_SHARE * level * u(r) * |h_d(r)|,   u(r) = removed_share(r, tried) in [0, 1]

(:func:`bayesmix.decide.support.removed_share`: 0 inside every range, |S| / M when a group
is cut to zero; for an eval domain named like a training domain, 1 when that domain is cut to
zero, since its own loss can double, 1/2 for a pair holding it, 0 while it keeps its data),
``level`` the loss's typical value and h_d a second unit field, independent of g_d:
half-normal, upward only (a starved domain gets worse, not better, than the law's smooth
extrapolation), zero inside the tried ranges.

A step or size stage that ran but could not be replayed (e.g. three model sizes: the
size law needs three to fit and a fourth to predict) *borrows* the other log-ratio stage's
spread: zero bias and k_d = sqrt(b_d^2 + k_d^2) of the lender's draws, i.e. the lender's
root-mean-square miss per unit log ratio. Only when neither has backtests does a stage keep
its prior.

Prior scales are shares of the typical overall loss per unit distance (``PRIOR_SHARE``):
3% per unit log ratio in steps or sizes (Ye et al. 2024's own 1B predictions missed by
0.06-0.11 nats at a log size ratio near 1, on losses near 2.5-3), 10% per unit of total
variation for the mixing law.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.decide.support import removed_share, support_distance, trust_radius
from bayesmix.laws.mixing import OVERALL

STAGES = ("step", "size", "mix")
FACE_SHARE = 1.0  # prior sd of the rise at a face, per unit removed share, as a share of the typical loss
PRIOR_SHARE = {"step": 0.03, "size": 0.03, "mix": 0.10}
LOG_RATIO_STAGES = ("step", "size")  # stages whose distance is a log ratio: one may lend the other its spread
DISTANCE = {"step": "log step ratio", "size": "log size ratio", "mix": "total-variation distance",
            "face": "share removed below every tried share"}
N_GRID = 512
N_FEATURES = 256
DEFAULT_LENGTH = 0.5  # correlation length (TV) of the field with fewer than two tried mixtures


def scale_posterior(miss: np.ndarray, distance: np.ndarray, noise, prior_scale: float,
                    n_grid: int = N_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid posterior of (bias, k) in ``m_i ~ N(bias x_i, noise_i^2 + (k x_i)^2)``, with
    ``bias ~ N(0, prior_scale)`` and ``k ~ HalfNormal(prior_scale)``.

    miss, distance: (n,) (n may be 0: the prior); noise: a scalar or (n,), the known part of
    each miss's sd. Returns (bias grid (B,), k grid (G,), weights (B, G) summing to 1).
    """
    miss, distance = np.asarray(miss, float), np.asarray(distance, float)
    noise = np.broadcast_to(np.asarray(noise, float), miss.shape)
    if prior_scale <= 0 or not np.isfinite(prior_scale):
        raise ValueError(f"prior_scale must be positive, got {prior_scale}")
    if miss.shape != distance.shape:
        raise ValueError(f"miss {miss.shape} and distance {distance.shape} differ in shape")
    reach = float(np.max(np.abs(miss) / np.maximum(distance, 1e-12))) if miss.size else 0.0
    top = max(6.0 * prior_scale, 3.0 * reach)
    bias, k = np.linspace(-top, top, n_grid + 1), np.linspace(0.0, top, n_grid)
    sd = np.maximum(np.sqrt(noise[None, :] ** 2 + (k[:, None] * distance[None, :]) ** 2), 1e-12)  # (G, n)
    log_lik = np.zeros((bias.size, k.size))
    for start in range(0, miss.size, 64):  # (B, G) accumulated over chunks of misses
        m, x, s = miss[start:start + 64], distance[start:start + 64], sd[:, start:start + 64]
        z = (m[None, None, :] - bias[:, None, None] * x[None, None, :]) / s[None, :, :]
        log_lik += (-0.5 * z**2 - np.log(s)[None, :, :]).sum(axis=-1)
    log_post = (log_lik + stats.norm.logpdf(bias, 0, prior_scale)[:, None]
                + stats.halfnorm.logpdf(k, 0, prior_scale)[None, :])
    w = np.exp(log_post - log_post.max())
    return bias, k, w / w.sum()


def tail_probability(miss: np.ndarray, distance: np.ndarray, noise, bias: np.ndarray, k: np.ndarray,
                     weights: np.ndarray) -> np.ndarray:
    """Two-sided predictive tail probability of each miss (n,) under the grid posterior:
    ``sum_bg w_bg 2 (1 - Phi(|m_i - b x_i| / sd_gi))``, ``sd_gi^2 = noise_i^2 + (k_g x_i)^2``."""
    miss, distance = np.asarray(miss, float), np.asarray(distance, float)
    noise = np.broadcast_to(np.asarray(noise, float), miss.shape)
    sd = np.maximum(np.sqrt(noise[None, :] ** 2 + (k[:, None] * distance[None, :]) ** 2), 1e-12)  # (G, n)
    out = np.zeros(miss.size)
    for b, row in zip(bias, weights):
        if row.sum() > 1e-12:
            out += row @ (2 * stats.norm.sf(np.abs(miss - b * distance)[None, :] / sd))
    return out


def point_grid(bias: float = 0.0, k: float = 0.0):
    """A grid posterior with all its mass at (bias, k)."""
    return np.array([bias]), np.array([k]), np.ones((1, 1))


@dataclasses.dataclass(frozen=True)
class Backtest:
    """One stage's replayed extrapolation: ``misses`` (unit, distance, predicted, observed,
    miss = observed - predicted, and optionally ``sd``: the spread of the replayed prediction
    itself, e.g. from a residual bootstrap of the replayed fit), the stage's in-sample
    ``noise`` sd, and the prior scale of the bias and of k. A miss's known sd is
    ``sqrt(noise^2 + sd_i^2)``: only what exceeds the fit's own uncertainty is discrepancy
    (the target's posterior already holds that uncertainty)."""

    stage: str
    misses: pd.DataFrame
    noise: float
    prior_scale: float

    @property
    def n(self) -> int:
        return len(self.misses)

    @property
    def known_sd(self) -> np.ndarray:
        """Each miss's sd without the discrepancy (n,): sqrt(noise^2 + sd_i^2)."""
        sd = self.misses["sd"].to_numpy(float) if "sd" in self.misses else np.zeros(self.n)
        return np.sqrt(self.noise**2 + sd**2)

    @functools.cached_property
    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid posterior of (bias, k) (:func:`scale_posterior`)."""
        m = self.misses
        return scale_posterior(m["miss"].to_numpy(float), m["distance"].to_numpy(float), self.known_sd,
                               self.prior_scale)

    def draws(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n joint draws (bias, k) from the grid posterior (jittered within a grid cell)."""
        bias, k, w = self.grid
        cell = rng.choice(w.size, size=n, p=w.ravel())
        b, g = np.unravel_index(cell, w.shape)
        db, dk = bias[1] - bias[0], k[1] - k[0]
        return (bias[b] + rng.uniform(-0.5, 0.5, n) * db,
                np.maximum(k[g] + rng.uniform(-0.5, 0.5, n) * dk, 0.0))

    def quantiles(self, name: str, q=(0.05, 0.5, 0.95)) -> np.ndarray:
        """Posterior quantiles of ``"bias"`` or ``"k"``."""
        bias, k, w = self.grid
        values, marginal = (bias, w.sum(axis=1)) if name == "bias" else (k, w.sum(axis=0))
        return np.interp(q, np.cumsum(marginal), values)

    def moments(self) -> tuple[float, float]:
        """(E[bias], E[bias^2] + E[k^2]): per unit distance, the discrepancy's mean and second moment."""
        bias, k, w = self.grid
        return float(bias @ w.sum(axis=1)), float(bias**2 @ w.sum(axis=1) + k**2 @ w.sum(axis=0))

    def coverage(self, prob: float = 0.9, *, discrepancy: bool = True) -> float:
        """Share of the backtest misses inside the central ``prob`` interval: with the
        discrepancy (its posterior), or with the stage's noise alone (``discrepancy=False``)."""
        if self.n == 0:
            return float("nan")
        m, x = self.misses["miss"].to_numpy(float), self.misses["distance"].to_numpy(float)
        grid = self.grid if discrepancy else point_grid()
        return float(np.mean(tail_probability(m, x, self.known_sd, *grid) >= 1 - prob))


def laplace_features(n_domains: int, length: float, n_features: int, rng: np.random.Generator):
    """Random Fourier features of ``exp(-TV(r, r') / length) = exp(-||r - r'||_1 / (2 length))``:
    frequencies (J, M) ~ Cauchy(0, 1 / (2 length)) per coordinate, phases (J,) ~ U(0, 2 pi)."""
    omega = stats.cauchy.rvs(scale=1.0 / (2.0 * length), size=(n_features, n_domains), random_state=rng)
    return omega, rng.uniform(0.0, 2 * np.pi, n_features)


def unit_field(r, omega, phase, coef, xp=jnp):
    """Unit-variance field at mixtures r (n, M) for every draw: coef (D, J) -> (D, n).

    g_d(r) = coef_d . phi(r) / ||phi(r)||, phi_j(r) = cos(omega_j . r + phase_j): for
    coef_d ~ N(0, I) exactly N(0, 1) at each r, correlated as the features' kernel.
    ``xp``: the array namespace (``jax.numpy`` to trace it, ``numpy`` to skip compilation)."""
    phi = xp.cos(r @ omega.T + phase)  # (n, J)
    phi = phi / xp.linalg.norm(phi, axis=-1, keepdims=True)
    return coef @ phi.T


@dataclasses.dataclass(frozen=True)
class Discrepancy:
    """The target-scale discrepancy of the overall loss (module docstring).

    ``backtests``: per stage (stages that did not run are absent); ``target_distance``:
    x_step and x_size at the target (0 for a skipped stage); ``tried`` (k, M): the mixtures
    the mixing law saw; ``length``: the field's correlation length (TV); ``evals``: per eval
    domain, the discrepancy calibrated on that domain's own backtest misses (empty with one
    eval domain, or for a discrepancy that is itself one domain's).
    """

    backtests: dict[str, Backtest]
    target_distance: dict[str, float]
    tried: np.ndarray
    length: float
    seed: int = 0
    lender: dict[str, str] = dataclasses.field(default_factory=dict)
    evals: dict[str, "Discrepancy"] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, backtests: dict[str, Backtest], target_distance: dict[str, float], tried: np.ndarray,
              *, seed: int) -> "Discrepancy":
        """The discrepancy of ``backtests`` (per stage that ran); a log-ratio stage without
        backtests borrows from the other when that one has some (module docstring)."""
        tried = np.asarray(tried, float)
        length = trust_radius(tried) if len(tried) >= 2 else DEFAULT_LENGTH
        lender = {}
        for name in LOG_RATIO_STAGES:
            other = next(o for o in LOG_RATIO_STAGES if o != name)
            if name in backtests and backtests[name].n == 0 and other in backtests and backtests[other].n > 0:
                lender[name] = other
        return cls(dict(backtests), dict(target_distance), tried, max(float(length), 1e-3), seed, lender)

    @property
    def level(self) -> float:
        """The loss's typical value, which set the mixing stage's prior scale (NaN without one)."""
        return self.backtests["mix"].prior_scale / PRIOR_SHARE["mix"] if "mix" in self.backtests else np.nan

    @property
    def face_scale(self) -> float:
        """Prior sd of the rise per unit removed share (module docstring): ``FACE_SHARE * level``;
        0 without a mixing stage or with fewer than two tried mixtures."""
        return FACE_SHARE * self.level if "mix" in self.backtests and len(self.tried) >= 2 else 0.0

    def stage_draws(self, n_draws: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(bias, k) draws (n_draws,) per stage (same seed: same numbers); a borrowing stage
        gets bias 0 and k = sqrt(b^2 + k^2) of fresh draws of its lender."""
        rng = np.random.default_rng(self.seed)
        out = {}
        for name in STAGES:
            if name not in self.backtests:
                continue
            if name in self.lender:
                b, k = self.backtests[self.lender[name]].draws(n_draws, rng)
                out[name] = (np.zeros(n_draws), np.sqrt(b**2 + k**2))
            else:
                out[name] = self.backtests[name].draws(n_draws, rng)
        return out

    def stage_moments(self, name: str) -> tuple[float, float]:
        """(mean, second moment) per unit distance of a stage's discrepancy (borrowed or own)."""
        if name in self.lender:
            return 0.0, self.backtests[self.lender[name]].moments()[1]
        return self.backtests[name].moments()

    def _parts(self, n_draws: int):
        """Per draw: the shared mean and variance (step and size), the mixing law's (bias, k)
        per unit distance, the fields' features, and the coefficients of g and of h; drawn once
        per ``n_draws`` (the same seed gives the same numbers) and kept, read-only."""
        cache = self.__dict__.setdefault("_parts_cache", {})
        if n_draws not in cache:
            parts = self._draw_parts(n_draws)
            for a in parts:
                a.flags.writeable = False
            cache[n_draws] = parts
        return cache[n_draws]

    def _draw_parts(self, n_draws: int):
        """What :meth:`_parts` keeps, drawn afresh."""
        draws = self.stage_draws(n_draws)
        shift, shared = np.zeros(n_draws), np.zeros(n_draws)
        for name in ("step", "size"):
            if name in draws:
                x = self.target_distance.get(name, 0.0)
                shift += draws[name][0] * x
                shared += (draws[name][1] * x) ** 2
        mix_bias, mix_k = draws.get("mix", (np.zeros(n_draws), np.zeros(n_draws)))
        rng = np.random.default_rng(self.seed + 1)
        omega, phase = laplace_features(self.tried.shape[1], self.length, N_FEATURES, rng)
        coef = rng.standard_normal((n_draws, N_FEATURES))
        face_coef = rng.standard_normal((n_draws, N_FEATURES))
        return shift, shared, mix_bias, mix_k, omega, phase, coef, face_coef

    def jax_fn(self, n_draws: int, idx: np.ndarray | None = None, own: int | None = None):
        """A JAX function ``delta(r (n, M)) -> (draws, n)`` for draws ``idx`` of ``n_draws``;
        ``own``: the training domain whose own evaluation this loss is (the face rise's weight)."""
        return self.delta_fn(n_draws, idx, own, jnp)

    def delta_fn(self, n_draws: int, idx: np.ndarray | None = None, own: int | None = None, xp=jnp):
        """``delta(r (n, M)) -> (draws, n)`` in the array namespace ``xp`` (see :meth:`jax_fn`):

            delta_d(r) = shift_d + b_d x(r) + sqrt(shared_d + (k_d x(r))^2) g_d(r) + c(r) |h_d(r)|

        x(r) the distance to the tried mixtures, g and h unit fields, c(r) the face rise's scale."""
        parts = self._parts(n_draws)
        per_draw = [a if idx is None else a[idx] for a in (*parts[:4], *parts[6:])]
        shift, shared, mix_bias, mix_k, coef, face_coef = (xp.asarray(a) for a in per_draw)
        omega, phase, tried = xp.asarray(parts[4]), xp.asarray(parts[5]), xp.asarray(self.tried)
        face_scale, tried_np = self.face_scale, self.tried

        def delta(r):
            d = support_distance(r, tried, xp)[None, :]  # (1, n)
            s = xp.sqrt(shared[:, None] + (mix_k[:, None] * d) ** 2)
            out = shift[:, None] + mix_bias[:, None] * d + s * unit_field(r, omega, phase, coef, xp)
            if face_scale > 0:
                rise = face_scale * removed_share(r, tried_np, xp, own)[None, :]
                out = out + rise * xp.abs(unit_field(r, omega, phase, face_coef, xp))
            return out

        return delta

    def draws(self, r: np.ndarray, n_draws: int, own: int | None = None) -> np.ndarray:
        """delta_d(r) for d < n_draws at mixtures r (n, M): (n_draws, n) (``own``: :meth:`jax_fn`), in numpy."""
        return self.delta_fn(n_draws, own=own, xp=np)(np.atleast_2d(np.asarray(r, float)))

    def moments(self, r: np.ndarray, own: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of delta(r) (n,) under the posteriors, the stages taken as independent:
        mean ``sum_s E[b_s] x_s``, variance ``sum_s (E[b_s^2] + E[k_s^2]) x_s^2 - mean^2`` per stage,
        plus the face rise's half-normal moments (mean c sqrt(2 / pi), variance c^2 (1 - 2 / pi),
        c = face_scale * removed_share(r))."""
        r = np.atleast_2d(np.asarray(r, float))
        d = support_distance(r, self.tried)
        mean, var = np.zeros_like(d), np.zeros_like(d)
        for name in self.backtests:
            x = d if name == "mix" else self.target_distance.get(name, 0.0)
            m1, m2 = self.stage_moments(name)
            mean, var = mean + m1 * x, var + (m2 - m1**2) * x**2
        if self.face_scale > 0:
            c = self.face_scale * removed_share(r, self.tried, own=own)
            mean, var = mean + c * np.sqrt(2 / np.pi), var + c**2 * (1 - 2 / np.pi)
        return mean, np.sqrt(var)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """One row per stage: backtests, the distances they covered, the largest miss, bias and
        k per unit distance (5/50/95%), the distance at the target (the mixing stage's depends on
        the mixture: NaN), the discrepancy's mean and sd there, and the backtests' coverage of
        ``prob`` intervals without and with the discrepancy; ``source``: "backtests", "prior", or
        the stage lending its spread. A last row ``face`` gives the prior sd of the one-sided
        rise per unit removed share (``k_median``), where nothing is replayed."""
        rows = []
        for name, bt in self.backtests.items():
            x = self.target_distance.get(name, np.nan)
            m1, m2 = self.stage_moments(name)
            source = self.lender.get(name, "backtests" if bt.n else "prior")
            rows.append({"stage": name, "distance": DISTANCE[name], "source": source, "backtests": bt.n,
                         "max_distance": float(bt.misses["distance"].max()) if bt.n else np.nan,
                         "mean_miss": float(bt.misses["miss"].mean()) if bt.n else np.nan,
                         "max_abs_miss": float(bt.misses["miss"].abs().max()) if bt.n else np.nan,
                         "bias_median": np.nan if name in self.lender else bt.quantiles("bias")[1],
                         **dict(zip(("k_lower", "k_median", "k_upper"),
                                    np.full(3, np.nan) if name in self.lender else bt.quantiles("k"))),
                         "target_distance": x, "target_mean": m1 * x, "target_sd": np.sqrt(m2 - m1**2) * x,
                         "coverage_without": bt.coverage(prob, discrepancy=False),
                         "coverage_with": bt.coverage(prob)})
        if self.face_scale > 0:
            rows.append({"stage": "face", "distance": DISTANCE["face"], "source": "prior", "backtests": 0,
                         "k_median": self.face_scale, "target_distance": np.nan})
        return pd.DataFrame(rows)

    def tables(self, prob: float = 0.9) -> pd.DataFrame:
        """:meth:`table` of the overall loss and of each eval domain's own discrepancy, with
        the loss in a first column ``eval``."""
        parts = [d.table(prob).assign(eval=name) for name, d in {OVERALL: self, **self.evals}.items()]
        return pd.concat(parts, ignore_index=True)[["eval", *parts[0].columns.drop("eval")]]


__all__ = ["Backtest", "Discrepancy", "FACE_SHARE", "PRIOR_SHARE", "point_grid", "scale_posterior", "tail_probability",
           "unit_field"]
