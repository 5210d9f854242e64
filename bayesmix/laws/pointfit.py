"""Multi-start L-BFGS on a Huber loss: the paper's point fitter.

Every law fits independent *groups* (one loss curve, or one eval domain) whose
observations are padded to a common length. For group g with parameters
theta_g (a flat vector of unconstrained values) the objective is

    J(theta_g) = sum_i mask_gi * huber(mean(theta_g, x_gi) - y_gi; delta)

minimised from ``n_starts`` random starts per group with optax's L-BFGS (zoom
line search), all groups and starts in one ``jax.vmap``. The best start of each
group is kept. Shapes: x (G, n, ...), y (G, n), mask (G, n), theta (G, P).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

MeanFn = Callable[[jax.Array, jax.Array], jax.Array]
InitFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def huber_objective(mean_fn: MeanFn, delta: float) -> Callable:
    """Return ``J(theta, x, y, mask)``, the masked Huber loss of one group."""

    def objective(theta, x, y, mask):
        resid = mean_fn(theta, x) - y
        loss = optax.huber_loss(resid, jnp.zeros_like(resid), delta=delta)
        return jnp.sum(jnp.where(mask, loss, 0.0))

    return objective


def lbfgs_minimise(fun: Callable, theta0: jax.Array, *, max_iter: int, tol: float) -> jax.Array:
    """Minimise ``fun(theta)`` from ``theta0`` with optax L-BFGS; returns theta."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(theta, updates), state

    def keep_going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        return (count == 0) | ((count < max_iter) & (otu.tree_norm(grad) >= tol))

    theta, _ = jax.lax.while_loop(keep_going, step, (theta0, opt.init(theta0)))
    return theta


def multistart_fit(
    mean_fn: MeanFn,
    init_fn: InitFn,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    *,
    seed: int,
    n_starts: int = 16,
    delta: float = 1e-3,
    max_iter: int = 500,
    tol: float = 1e-9,
) -> tuple[jax.Array, jax.Array]:
    """Fit every group from ``n_starts`` starts; return (theta (G, P), objective (G,)).

    ``init_fn(key, x_g, y_g, mask_g) -> theta`` draws one start for one group.
    Non-finite end points count as failed starts.
    """
    n_groups = y.shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), n_groups * n_starts).reshape(
        n_groups, n_starts, -1
    )
    return _compiled_fit(mean_fn, init_fn, float(delta), int(max_iter), float(tol))(keys, x, y, mask)


@functools.lru_cache(maxsize=64)
def _compiled_fit(mean_fn: MeanFn, init_fn: InitFn, delta: float, max_iter: int, tol: float) -> Callable:
    """The jitted multi-start fit of all groups (cached: compiled once per law)."""
    objective = huber_objective(mean_fn, delta)

    def fit_group(keys_g, x_g, y_g, mask_g):
        def one_start(key):
            theta0 = init_fn(key, x_g, y_g, mask_g)
            theta = lbfgs_minimise(lambda t: objective(t, x_g, y_g, mask_g), theta0,
                                   max_iter=max_iter, tol=tol)
            value = objective(theta, x_g, y_g, mask_g)
            ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(theta))
            return theta, jnp.where(ok, value, jnp.inf)

        thetas, values = jax.vmap(one_start)(keys_g)
        best = jnp.argmin(values)
        return thetas[best], values[best]

    return jax.jit(jax.vmap(fit_group))
