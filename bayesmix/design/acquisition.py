"""Acquisition functions from joint posterior draws of a loss to minimise.

The objective is the predicted loss ``f(r)``; its posterior is a set of joint
draws ``f_d(r_i)``, d = 1..D, shared across mixtures (same d = same world).
Improvement over the incumbent ``f*`` (the best posterior mean among mixtures
already run) is ``z_di = (f* - f_d(r_i)) / s`` in units of a scale ``s``.
Every acquisition is "higher is better" and takes draws of shape ``(D, ..., q)``
(the last axis the q mixtures of a batch) and returns shape ``(...)``.

* **qLogEI** (Ament et al. 2023, "Unexpected improvements to expected
  improvement", Monte-Carlo form):

      qLogEI = logmeanexp_d( fatmax_i( log fatplus_tau(z_di) ) ) + log s

  with ``fatplus_tau(z) = tau (softplus(z/tau) + 0.1 / (1 + (z/tau)^2))`` a
  smooth ReLU whose Cauchy tail keeps the log finite with a non-zero gradient
  where no draw improves (plain EI is exactly 0 there), and
  ``fatmax_tau(x) = max x + tau log sum_i 1 / (1 + ((x_i - max x)/tau)^2)`` a
  smooth max over the batch. With q = 1 it is LogEI; as tau -> 0 it tends to
  ``log E_d[max_i max(f* - f_di, 0)]``, the log of batch expected improvement.
* **LogEI, analytic** for a Gaussian predictive (mean m, sd s):
  ``log EI = log s + log h((f* - m)/s)``, ``h(u) = phi(u) + u Phi(u)``, with
  ``log h`` evaluated stably for u << 0 through ``erfcx`` and ``log1mexp``.
* **qPI**: ``logmeanexp_d log sigmoid(fatmax_i(z_di) / tau_pi)``, the smoothed
  log probability that some mixture of the batch improves.
* **qUCB** (lower confidence bound on the loss, BoTorch's MC form):
  ``mean_d max_i (-mu_i + sqrt(beta pi / 2) |f_di - mu_i|)``,
  ``mu_i = mean_d f_di``; with q = 1 this is ``-mu + sqrt(beta) sd`` for
  Gaussian draws.

Each batch acquisition is also an object carrying its own settings (:class:`qLogEI`,
:class:`qLogPI`, :class:`qUCB`; :func:`get_acquisition` by name), called on
``(draws, incumbent, scale)``.

Plain Monte-Carlo EI and PI (:func:`qei`, :func:`prob_improvement`) are
provided for comparison and tests. All functions are pure JAX (jit, grad, vmap).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import erfcx, logsumexp, ndtr

TAU_RELU = 1e-6  # smoothing of max(z, 0), in units of the scale s
TAU_MAX = 1e-2  # smoothing of the max over a batch (log scale)
TAU_PI = 1e-3  # smoothing of the improvement indicator, in units of s
FAT_ALPHA = 0.1  # weight of the Cauchy tail of fatplus (keeps it monotone and convex)
_LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_PI_DIV_2 = 0.5 * math.log(math.pi / 2)


# ---------------------------------------------------------------- stable pieces


def log1mexp(x):
    """``log(1 - exp(x))`` for x < 0 (Maechler 2012): ``log(-expm1(x))`` near 0, ``log1p(-exp(x))`` below -log 2."""
    x = jnp.asarray(x)
    near = x > -math.log(2.0)
    x_near = jnp.where(near, x, -1.0)
    x_far = jnp.where(near, -1.0, x)
    return jnp.where(near, jnp.log(-jnp.expm1(x_near)), jnp.log1p(-jnp.exp(x_far)))


def log_h(u):
    """``log(phi(u) + u Phi(u))`` for any u, stable where it underflows (u << 0).

    u > -1: the direct formula. u <= -1: ``log phi(u) + log1mexp(w)`` with
    ``w = log(|u| Phi(u) / phi(u)) = log(erfcx(-u / sqrt 2) |u|) + log sqrt(pi/2)``;
    below ``-1/sqrt(eps)`` the leading term ``log phi(u) - 2 log|u|``.
    """
    u = jnp.asarray(u)
    bound = -1.0
    u_up = jnp.where(u < bound, bound, u)
    log_up = jnp.log(jnp.exp(-0.5 * u_up**2 - _LOG_2PI_HALF) + u_up * ndtr(u_up))
    tiny = -1e6 if u.dtype == jnp.float64 else -1e3
    u_lo = jnp.where(u > bound, bound, u)
    u_eps = jnp.where(u_lo < tiny, tiny, u_lo)
    w = jnp.log(erfcx(-u_eps / math.sqrt(2.0)) * jnp.abs(u_eps)) + _LOG_SQRT_PI_DIV_2
    log_phi = -0.5 * u_lo**2 - _LOG_2PI_HALF
    log_lo = log_phi + jnp.where(u_lo > tiny, log1mexp(w), -2.0 * jnp.log(jnp.abs(u_lo)))
    return jnp.where(u > bound, log_up, log_lo)


def log_softplus(x):
    """``log(log(1 + exp(x)))`` accurate for very negative x (where it equals x)."""
    x = jnp.asarray(x)
    lower = -35.0 if x.dtype == jnp.float64 else -15.0
    safe = jnp.where(x > lower, x, lower)
    return jnp.where(x > lower, jnp.log(jax.nn.softplus(safe)), x)


def log_fatplus(x, tau: float = TAU_RELU):
    """``log fatplus_tau(x)``, ``fatplus_tau(x) = tau (softplus(x/tau) + 0.1 / (1 + (x/tau)^2))``.

    Tends to ``log max(x, 0)`` as tau -> 0 for x > 0; for x << 0 it is about
    ``log(0.1 tau) - 2 log|x/tau|``: finite, with gradient ``-2/x``."""
    s = jnp.asarray(x) / tau
    log_tail = math.log(FAT_ALPHA) - 2.0 * jnp.log(jnp.hypot(s, 1.0))
    return math.log(tau) + jnp.logaddexp(log_softplus(s), log_tail)


def fatmax(x, tau: float = TAU_MAX, axis: int = -1):
    """Smooth maximum with a fat tail: ``max x + tau log sum_i 1 / (1 + ((x_i - max x)/tau)^2)``
    (the exact max when the axis has one element)."""
    x = jnp.asarray(x)
    if x.shape[axis] == 1:
        return jnp.squeeze(x, axis=axis)
    top = jnp.max(x, axis=axis, keepdims=True)
    y = (x - top) / tau
    return jnp.squeeze(top, axis=axis) + tau * jnp.log(jnp.sum(1.0 / (1.0 + y**2), axis=axis))


def logmeanexp(x, axis: int = 0):
    """``log mean exp(x)`` along ``axis``."""
    x = jnp.asarray(x)
    return logsumexp(x, axis=axis) - math.log(x.shape[axis])


# ---------------------------------------------------------------- analytic (Gaussian)


def ei_gaussian(mean, sd, incumbent):
    """Plain expected improvement below ``incumbent`` of a Normal(mean, sd) loss:
    ``sd h((incumbent - mean)/sd)`` (underflows to 0 for improbable improvement)."""
    u = (incumbent - jnp.asarray(mean)) / sd
    return sd * (jnp.exp(-0.5 * u**2 - _LOG_2PI_HALF) + u * ndtr(u))


def log_ei_gaussian(mean, sd, incumbent):
    """``log EI`` of a Normal(mean, sd) loss below ``incumbent``: ``log sd + log_h((incumbent - mean)/sd)``."""
    u = (incumbent - jnp.asarray(mean)) / sd
    return jnp.log(sd) + log_h(u)


# ---------------------------------------------------------------- Monte Carlo


def _improvement(draws, incumbent, scale):
    return (incumbent - jnp.asarray(draws)) / scale


def qlog_ei(draws, incumbent, *, scale: float = 1.0, tau_relu: float = TAU_RELU, tau_max: float = TAU_MAX):
    """qLogEI of batches: draws (D, ..., q) -> (...). See the module docstring."""
    z = _improvement(draws, incumbent, scale)
    li = log_fatplus(z, tau_relu)
    return logmeanexp(fatmax(li, tau_max, axis=-1), axis=0) + jnp.log(scale)


def log_ei(draws, incumbent, *, scale: float = 1.0, tau_relu: float = TAU_RELU):
    """LogEI of single mixtures: draws (D, n) -> (n,) (qLogEI with q = 1)."""
    return qlog_ei(jnp.asarray(draws)[..., None], incumbent, scale=scale, tau_relu=tau_relu)


def qei(draws, incumbent):
    """Plain Monte-Carlo batch EI: ``mean_d max_i max(incumbent - f_di, 0)``: (D, ..., q) -> (...)."""
    gain = jnp.maximum(incumbent - jnp.asarray(draws), 0.0)
    return jnp.mean(jnp.max(gain, axis=-1), axis=0)


def ei(draws, incumbent):
    """Plain Monte-Carlo EI of single mixtures: (D, n) -> (n,)."""
    return qei(jnp.asarray(draws)[..., None], incumbent)


def qlog_pi(draws, incumbent, *, scale: float = 1.0, tau_pi: float = TAU_PI, tau_max: float = TAU_MAX):
    """Smoothed log probability that some mixture of the batch improves: (D, ..., q) -> (...)."""
    z = _improvement(draws, incumbent, scale)
    return logmeanexp(jax.nn.log_sigmoid(fatmax(z / tau_pi, tau_max / tau_pi, axis=-1)), axis=0)


def prob_improvement(draws, incumbent):
    """Plain Monte-Carlo P(min_i f_di < incumbent): (D, ..., q) -> (...)."""
    return jnp.mean(jnp.min(jnp.asarray(draws), axis=-1) < incumbent, axis=0)


def qucb(draws, *, beta: float = 2.0):
    """Monte-Carlo batch upper confidence bound of the improvement (lower bound of the loss):
    ``mean_d max_i (-mu_i + sqrt(beta pi / 2) |f_di - mu_i|)``: (D, ..., q) -> (...)."""
    draws = jnp.asarray(draws)
    mu = jnp.mean(draws, axis=0, keepdims=True)
    value = -mu + math.sqrt(beta * math.pi / 2) * jnp.abs(draws - mu)
    return jnp.mean(jnp.max(value, axis=-1), axis=0)


@dataclasses.dataclass(frozen=True)
class qLogEI:
    """Batch log expected improvement (:func:`qlog_ei`) with its smoothing settings."""

    tau_relu: float = TAU_RELU
    tau_max: float = TAU_MAX
    name: ClassVar[str] = "logei"

    def __call__(self, draws, incumbent, scale: float = 1.0):
        """draws (D, ..., q) -> (...)."""
        return qlog_ei(draws, incumbent, scale=scale, tau_relu=self.tau_relu, tau_max=self.tau_max)


@dataclasses.dataclass(frozen=True)
class qLogPI:
    """Smoothed log probability that the batch improves (:func:`qlog_pi`)."""

    tau_pi: float = TAU_PI
    tau_max: float = TAU_MAX
    name: ClassVar[str] = "pi"

    def __call__(self, draws, incumbent, scale: float = 1.0):
        return qlog_pi(draws, incumbent, scale=scale, tau_pi=self.tau_pi, tau_max=self.tau_max)


@dataclasses.dataclass(frozen=True)
class qUCB:
    """Batch upper confidence bound on the improvement, lower bound on the loss (:func:`qucb`)."""

    beta: float = 2.0
    name: ClassVar[str] = "ucb"

    def __call__(self, draws, incumbent, scale: float = 1.0):
        return qucb(draws, beta=self.beta)


Acquisition = qLogEI | qLogPI | qUCB
ACQUISITIONS = {cls.name: cls for cls in (qLogEI, qLogPI, qUCB)}


def get_acquisition(spec: str | Acquisition = "logei", **settings) -> Acquisition:
    """An acquisition object from its name (``"logei"``, ``"pi"``, ``"ucb"``) and settings, or
    the object itself (then no settings)."""
    if not isinstance(spec, str):
        if settings:
            raise ValueError(f"settings {sorted(settings)} go with an acquisition name, not an object")
        return spec
    if spec not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {spec!r}; choose one of {list(ACQUISITIONS)}")
    cls = ACQUISITIONS[spec]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"acquisition {spec!r} takes {sorted(known)}; unknown setting(s) {unknown}")
    return cls(**settings)


__all__ = ["ACQUISITIONS", "Acquisition", "TAU_MAX", "TAU_PI", "TAU_RELU", "ei", "ei_gaussian", "fatmax",
           "log1mexp", "log_ei", "log_ei_gaussian", "log_fatplus", "log_h", "log_softplus", "logmeanexp", "prob_improvement",
           "get_acquisition", "qLogEI", "qLogPI", "qUCB", "qei", "qlog_ei", "qlog_pi", "qucb"]
