"""Exact posteriors of curves that are linear given one exponent: quadrature, no Markov chain.

Many curve laws are linear in their coefficients once an exponent is fixed. For one curve
with n observations,

    y ~ Normal(X(alpha) beta, sigma^2 I),     X(alpha): (n, p)
    beta ~ Normal(m, diag(s^2)),   log alpha ~ Normal(mu_a, tau_a),   sigma ~ HalfNormal(h)

Given (alpha, sigma) the coefficients are a Gaussian linear model, so p(y | alpha, sigma)
and beta | y, alpha, sigma are closed forms (:func:`log_evidence`, :func:`conditional_draw`,
from one SVD of the whitened design per exponent, :func:`whitened_svd`),
so the posterior of (log alpha, log sigma) is known up to a constant on a 2-D grid and the
joint posterior is exact up to the grid's resolution. :func:`grid_posterior` evaluates it on
a coarse grid spanning the prior, then on ``REFINEMENTS`` fine grids, each over the box that
holds the last grid's mass (:func:`refine_box`); :func:`draw` samples a cell, a point uniformly within it
and beta from its conditional Gaussian.

A grid belongs to a *group* of K curves that share (alpha, sigma), each with its own
coefficients beta_k (e.g. the size law's curves of one eval domain, one exponent and one noise
sd per domain): given (alpha, sigma) the curves are independent, so the group's log evidence is
the sum of theirs, sum_k log p(y_k | alpha, sigma). A lone curve is a group of one (K = 1); a
curve slot whose observations are all masked adds exactly 0 (padding to a common K). Every
function is vmapped over groups: arrays carry a leading group axis G, then the curve axis K.

Checks (:func:`grid_checks`), the analogue of R-hat for a sampler: the share of the coarse
posterior on the grid's outer cells (the range was too narrow) and the posterior sd along
each axis in cells of the last fine grid (the resolution was too coarse: drawing uniformly
within a cell adds width^2 / 12 to the variance, 1% at three cells per sd).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

COARSE = (96, 64)  # (log alpha, log sigma) cells of the grid spanning the prior
FINE = (96, 72)  # cells of the grid over the box holding the posterior
KEEP_LOG = 12.0  # the fine box holds every cell within exp(-KEEP_LOG) of the largest (mass outside: < 1e-5 of it per cell)
EDGE_MASS_MAX = 1e-3  # largest posterior share on the coarse grid's outer cells
RESOLUTION_MIN = 3.0  # fewest fine cells per posterior sd along each axis
REFINEMENTS = 2  # fine grids after the coarse one, each over the box holding the last one's mass


@dataclasses.dataclass(frozen=True)
class Grid:
    """Per group a regular grid: ``lo``/``hi`` (G, 2) bounds of (log alpha, log sigma) and the
    cell counts ``shape``; ``log_weight`` (G, A, S) the normalised log posterior of every cell
    (cell centres at lo + (k + 1/2) (hi - lo) / shape); ``log_evidence`` (G,) the log of the
    unnormalised posterior's integral over the box, log p(y) when the box holds the mass (the
    midpoint rule: log sum_cells exp(log_post) + log cell area)."""

    lo: np.ndarray
    hi: np.ndarray
    log_weight: np.ndarray
    log_evidence: np.ndarray | None = None  # (G,) log of the posterior's integral over the box (the marginal likelihood)

    @property
    def shape(self) -> tuple[int, int]:
        return self.log_weight.shape[1:]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres (G, A) of log alpha and (G, S) of log sigma."""
        (na, ns), width = self.shape, (self.hi - self.lo)
        a = self.lo[:, :1] + (np.arange(na) + 0.5) * width[:, :1] / na
        s = self.lo[:, 1:] + (np.arange(ns) + 0.5) * width[:, 1:] / ns
        return a, s


def whitened_svd(X, y, w, m, s):
    """The pieces of the Gaussian linear model of one curve that do not depend on sigma:
    X (n, p), y (n,), w (n,) 1 for an observation and 0 for padding, m and s (p,) the prior.

    With beta = m + diag(s) gamma and r0 = w (y - X m), the whitened design w X diag(s) =
    U diag(d) V' (thin SVD; stable where x^-alpha and 1 are near collinear, unlike X'X).
    Returns d (p,), e = U' r0 (p,), the squared residual outside the span ``rperp2``, V (p, p)
    and the number of observations."""
    Xw = X * (w[:, None] * s[None, :])
    r0 = w * (y - X @ m)
    if Xw.shape[0] < Xw.shape[1]:  # fewer rows than coefficients: zero rows give the prior's directions
        extra = Xw.shape[1] - Xw.shape[0]
        Xw, r0 = jnp.concatenate([Xw, jnp.zeros((extra, Xw.shape[1]), Xw.dtype)]), jnp.concatenate([r0, jnp.zeros(extra)])
    U, d, Vt = jnp.linalg.svd(Xw, full_matrices=False)
    e = U.T @ r0
    rperp2 = jnp.sum((r0 - U @ e) ** 2)
    return {"d": d, "e": e, "rperp2": rperp2, "V": Vt.T, "n": jnp.sum(w)}


def log_evidence(terms: dict, sigma):
    """log p(y | alpha, sigma) from :func:`whitened_svd`'s ``terms`` (module docstring): in the
    rotated coordinates the p directions are independent, so

        log p = -1/2 [n log 2 pi + (n - p) log sigma^2 + sum_k log(sigma^2 + d_k^2)
                      + rperp2 / sigma^2 + sum_k e_k^2 / (sigma^2 + d_k^2)]"""
    d2, e, p, var = terms["d"] ** 2, terms["e"], terms["d"].shape[-1], sigma**2
    return -0.5 * (terms["n"] * jnp.log(2 * jnp.pi) + (terms["n"] - p) * jnp.log(var)
                   + jnp.sum(jnp.log(var + d2)) + terms["rperp2"] / var + jnp.sum(e**2 / (var + d2)))


def conditional_draw(terms: dict, sigma, m, s, z):
    """beta | y, alpha, sigma from standard normals ``z`` (p,): in the rotated coordinates
    delta_k ~ N(d_k e_k / (sigma^2 + d_k^2), sigma^2 / (sigma^2 + d_k^2)), beta = m + s V delta."""
    d, e, var = terms["d"], terms["e"], sigma**2
    delta = d * e / (var + d**2) + jnp.sqrt(var / (var + d**2)) * z
    return m + s * (terms["V"] @ delta)


def _log_prior(log_alpha, log_sigma, alpha_mu, alpha_tau, sigma_scale):
    """log p(log alpha) + log p(log sigma): Normal on log alpha; HalfNormal(sigma_scale) on sigma
    with the Jacobian sigma of the log."""
    la = -0.5 * ((log_alpha - alpha_mu) / alpha_tau) ** 2 - jnp.log(alpha_tau)
    sigma = jnp.exp(log_sigma)
    ls = -0.5 * (sigma / sigma_scale) ** 2 - jnp.log(sigma_scale) + log_sigma
    return la + ls


def _group_log_post(basis, x, y, mask, m, s, alpha_mu, alpha_tau, sigma_scale, log_alpha, log_sigma):
    """Unnormalised log posterior (A, S) of one group of K curves on the cell centres ``log_alpha``
    (A,) and ``log_sigma`` (S,): x (K, n, ...), y and mask (K, n), m and s (K, p); the prior's
    alpha_mu, alpha_tau, sigma_scale scalars. ``basis(x, alpha)`` -> X (n, p); masked rows are left out."""
    w = mask.astype(y.dtype)

    def at_alpha(la):
        terms = jax.vmap(lambda *c: whitened_svd(basis(c[0], jnp.exp(la)), *c[1:]))(x, y, w, m, s)
        return jax.vmap(lambda ls: jnp.sum(jax.vmap(log_evidence, in_axes=(0, None))(terms, jnp.exp(ls))))(log_sigma)

    log_ev = jax.vmap(at_alpha)(log_alpha)
    return log_ev + _log_prior(log_alpha[:, None], log_sigma[None, :], alpha_mu, alpha_tau, sigma_scale)


@functools.lru_cache(maxsize=None)
def _compiled_log_post(basis):
    """The jitted log posterior of a batch of groups for one ``basis`` (compiled once per shape)."""
    def one(c):
        return _group_log_post(basis, c["x"], c["y"], c["mask"], c["m"], c["s"], c["alpha_mu"], c["alpha_tau"],
                               c["sigma_scale"], c["la"], c["ls"])

    return jax.jit(lambda args: jax.lax.map(one, args, batch_size=64))


def evaluate(basis, curves: dict, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int]) -> Grid:
    """The grid posterior of every group on its box ``lo``/``hi`` (G, 2). ``curves``: ``x``, ``y``,
    ``mask`` (G, K, n); ``m``, ``s`` (G, K, p) the coefficients' prior; ``alpha_mu``, ``alpha_tau``,
    ``sigma_scale`` (G,)."""
    grid = Grid(np.asarray(lo, float), np.asarray(hi, float), np.zeros((len(lo),) + tuple(shape)))
    la, ls = grid.centres()
    args = {k: jnp.asarray(v) for k, v in curves.items()} | {"la": jnp.asarray(la), "ls": jnp.asarray(ls)}
    log_post = np.asarray(_compiled_log_post(basis)(args))
    log_post = np.where(np.isfinite(log_post), log_post, -np.inf)
    top = log_post.max(axis=(1, 2))
    log_norm = top + np.log(np.exp(log_post - top[:, None, None]).sum(axis=(1, 2)))  # log sum over cells
    cell = np.log(np.prod((grid.hi - grid.lo) / np.array(shape), axis=1))
    return dataclasses.replace(grid, log_weight=log_post - log_norm[:, None, None], log_evidence=log_norm + cell)


def refine_box(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per group the box (lo, hi) of the cells within exp(-KEEP_LOG) of the largest, widened by
    one cell on each side: (G, 2) each."""
    la, ls = grid.centres()
    keep = grid.log_weight >= grid.log_weight.max(axis=(1, 2), keepdims=True) - KEEP_LOG
    out = []
    for axis, centres in ((2, la), (1, ls)):
        any_kept = keep.any(axis=axis)  # (G, cells of this axis)
        step = (grid.hi - grid.lo)[:, 2 - axis] / grid.shape[2 - axis]
        first = np.argmax(any_kept, axis=1)
        last = any_kept.shape[1] - 1 - np.argmax(any_kept[:, ::-1], axis=1)
        rows = np.arange(len(centres))
        out.append((centres[rows, first] - 1.5 * step, centres[rows, last] + 1.5 * step))
    (a_lo, a_hi), (s_lo, s_hi) = out
    return np.stack([a_lo, s_lo], axis=1), np.stack([a_hi, s_hi], axis=1)


def grid_posterior(basis, curves: dict, lo: np.ndarray, hi: np.ndarray) -> tuple[Grid, Grid]:
    """The coarse grid on ``lo``/``hi`` (G, 2) and the last of ``REFINEMENTS`` fine grids, each
    over the box holding the previous grid's mass."""
    coarse = fine = evaluate(basis, curves, lo, hi, COARSE)
    for _ in range(REFINEMENTS):
        fine = evaluate(basis, curves, *refine_box(fine), FINE)
    return coarse, fine


def edge_mass(grid: Grid) -> np.ndarray:
    """Posterior share (G,) on the outer ring of cells."""
    w = np.exp(grid.log_weight)
    inner = w[:, 1:-1, 1:-1].sum(axis=(1, 2))
    return np.clip(1.0 - inner, 0.0, 1.0)


def resolution(grid: Grid) -> np.ndarray:
    """Posterior sd along each axis in cells, the smaller of the two (G,)."""
    w = np.exp(grid.log_weight)
    (la, ls), width = grid.centres(), (grid.hi - grid.lo) / np.array(grid.shape)
    out = []
    for marginal, centres in ((w.sum(axis=2), la), (w.sum(axis=1), ls)):
        mean = (marginal * centres).sum(axis=1, keepdims=True)
        out.append(np.sqrt((marginal * (centres - mean) ** 2).sum(axis=1)))
    return np.minimum(out[0] / width[:, 0], out[1] / width[:, 1])


def grid_checks(coarse: Grid, fine: Grid) -> dict[str, np.ndarray]:
    """Per group: ``edge_mass`` of the coarse grid, ``resolution`` of the fine one, ``ok`` when
    both pass (``EDGE_MASS_MAX``, ``RESOLUTION_MIN``)."""
    edge, cells = edge_mass(coarse), resolution(fine)
    return {"edge_mass": edge, "resolution": cells, "ok": (edge <= EDGE_MASS_MAX) & (cells >= RESOLUTION_MIN)}


@functools.lru_cache(maxsize=None)
def _compiled_draw(basis):
    """The jitted conditional draws of beta, (draws, G, K, p), for one ``basis``."""
    def one(x, y, mask, m, s, la, ls, zz):
        terms = whitened_svd(basis(x, jnp.exp(la)), y, mask.astype(y.dtype), m, s)
        return conditional_draw(terms, jnp.exp(ls), m, s, zz)

    per_curve = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None, None, 0))  # the K curves of a group, one (alpha, sigma)
    per_draw = jax.vmap(per_curve, in_axes=(None, None, None, None, None, 0, 0, 0))

    def per_group(args):
        c, la, ls, z = args
        return per_draw(c["x"], c["y"], c["mask"], c["m"], c["s"], la, ls, z)

    def all_groups(c, la, ls, z):  # la, ls (draws, G), z (draws, G, K, p): mapped over groups in batches
        out = jax.lax.map(per_group, (c, la.T, ls.T, jnp.swapaxes(z, 0, 1)), batch_size=16)
        return jnp.swapaxes(out, 0, 1)

    return jax.jit(all_groups)


def draw(basis, curves: dict, grid: Grid, n_draws: int, seed: int) -> dict[str, np.ndarray]:
    """``n_draws`` joint posterior draws per group: ``alpha``, ``sigma`` (n_draws, G) and ``beta``
    (n_draws, G, K, p). A cell is drawn by its weight, a point uniformly within it, and every
    curve's beta from its conditional Gaussian (:func:`conditional_draw`)."""
    rng = np.random.default_rng(seed)
    G, (na, ns) = grid.log_weight.shape[0], grid.shape
    w = np.exp(grid.log_weight.reshape(G, -1))
    u = rng.random((n_draws, G))
    cells = np.stack([np.minimum(np.searchsorted(np.cumsum(w[c]) / w[c].sum(), u[:, c]), na * ns - 1)
                      for c in range(G)], axis=1)  # (n_draws, G)
    width = (grid.hi - grid.lo) / np.array([na, ns])
    point = grid.lo + (np.stack([cells // ns, cells % ns], axis=-1) + rng.random((n_draws, G, 2))) * width
    z = rng.standard_normal((n_draws,) + curves["m"].shape)

    args = {k: jnp.asarray(v) for k, v in curves.items()}
    beta = np.asarray(_compiled_draw(basis)(args, jnp.asarray(point[..., 0]), jnp.asarray(point[..., 1]),
                                            jnp.asarray(z)))
    return {"alpha": np.exp(point[..., 0]), "sigma": np.exp(point[..., 1]), "beta": beta}


__all__ = ["COARSE", "EDGE_MASS_MAX", "FINE", "REFINEMENTS", "RESOLUTION_MIN", "Grid", "conditional_draw", "draw",
           "edge_mass", "evaluate", "grid_checks", "grid_posterior", "log_evidence", "refine_box", "resolution",
           "whitened_svd"]
