"""NUTS over many datasets at once: one ``jax.vmap`` over (dataset, chain) lanes.

The nested pipeline refits a law once per posterior draw of the stage before
it. Those D fits share the model and differ only in their data, so they run as
one compiled computation:

    potential_d = potential_fn_gen(batch_d)            (numpyro, dynamic_args=True)
    state_dc    = init_kernel(z0 + jitter_dc, num_warmup, model_args=(batch_d,))
    state_dc    = sample_kernel^(num_warmup + num_samples)(state_dc)   (lax.scan)

vmapped over chains c (inner) and datasets d (outer). Every lane adapts its own
step size and diagonal mass matrix. Under ``vmap`` a NUTS iteration costs as
much as the deepest tree among the lanes, so keep the lanes alike (same model,
similar data) and ``max_tree_depth`` moderate.

Each lane is checked on its own: split R-hat over its chains (worst scalar
parameter) and its divergent transitions; :class:`LaneSamples` reports the
fraction of datasets that fail either check. With a few short chains per lane
that per-lane R-hat is noisy: the worst of 100 quantities, from two chains of
100 *independent* draws, is about 1.03 on average and often above 1.05. So the
lanes are also checked together: the *pooled* split R-hat
(:func:`pooled_split_rhat`) averages the within- and between-chain variances
over lanes before taking their ratio, which catches a warm-up too short for
the lanes as a whole with the usual threshold 1.01.

Warm start. Adapting a dense mass matrix takes a long warm-up (on the
pipeline's size law, 300 iterations leave NUTS at ~165 leapfrog steps per
iteration; 1000 bring it to ~30). The D lanes share the model and differ only
in their data, so one long *anchor* fit (:attr:`LaneSamples.adaptation`: its
step size, inverse mass matrix and last positions) can stand in for D long
warm-ups: with a :class:`WarmStart` every lane starts from the anchor's chains'
last positions, step size and mass matrix, and re-estimates both in its own
(short) warm-up (``SamplerConfig.adapt_warm_mass``; False keeps the anchor's
mass matrix). The lanes' posteriors differ (their data do), so the anchor's
matrix fits them only roughly: on the bundled demo's mixing law, lanes that keep it
take 89 leapfrog steps per iteration and reach a pooled R-hat of 1.017 with 300
draws per chain; lanes that re-estimate it take 61 steps and reach 1.007.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_median, init_to_value
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model
from tqdm.auto import tqdm

from bayesmix.inference.nuts import SamplerConfig
from bayesmix.inference.progress import progress_enabled

RHAT_MAX = 1.05  # per-lane threshold: few, short chains make 1.01 unattainable
RHAT_POOLED_MAX = 1.01  # threshold of the R-hat pooled over lanes (Vehtari et al. 2021)
_COMPILED: dict = {}  # cache_key -> jitted sampler (see LaneSampler)
PROGRESS_EVERY = 10  # iterations between the compiled run's progress reports
_BARS: list = []  # progress bars of the runs in flight (innermost last), fed by the compiled runs' callback


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What a lane inherits from an anchor fit: ``step_size`` (scalar), the
    ``inverse_mass_matrix`` ((n,) diagonal or (n, n) dense) and ``positions``
    (chains, n): flat unconstrained start values, one row per chain (reused
    cyclically when the lanes run more chains). ``n`` is the size of the lane
    model's flattened unconstrained parameters."""

    step_size: float
    inverse_mass_matrix: np.ndarray
    positions: np.ndarray

    def __post_init__(self):
        n = self.positions.shape[-1]
        if self.positions.ndim != 2 or self.inverse_mass_matrix.shape not in ((n,), (n, n)):
            raise ValueError(f"positions must be (chains, n) and the inverse mass matrix (n,) or (n, n); got "
                             f"{self.positions.shape} and {self.inverse_mass_matrix.shape}")
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be positive, got {self.step_size}")

    @property
    def dense(self) -> bool:
        return self.inverse_mass_matrix.ndim == 2


@dataclasses.dataclass(frozen=True)
class LaneSamples:
    """Draws of D independent fits.

    ``samples[name]`` has shape (D, chains, draws, ...) (constrained values and
    deterministic sites); ``diverging`` and ``num_steps`` (leapfrog steps per
    iteration) (D, chains, draws); ``rhat`` (D,) worst split R-hat per lane of
    the checked quantities (NaN with one chain); ``ok`` (D,) lanes that pass.
    ``rhat_pooled``: the worst R-hat pooled over lanes (:func:`pooled_split_rhat`).
    ``adaptation``: the end of warm-up of every chain, ``step_size`` (D, chains),
    ``inverse_mass_matrix`` (D, chains, n[, n]) and ``last`` (D, chains, n) flat
    unconstrained positions after the last draw (see :meth:`warm_start`).
    """

    samples: dict[str, np.ndarray]
    diverging: np.ndarray
    num_steps: np.ndarray
    rhat: np.ndarray | None = None
    ok: np.ndarray | None = None
    adaptation: dict | None = None
    rhat_pooled: float = float("nan")

    def warm_start(self, lane: int = 0) -> WarmStart:
        """A :class:`WarmStart` from lane ``lane``'s chains: step size, the median over
        chains; inverse mass matrix, the mean over chains; positions, each chain's last."""
        if self.adaptation is None:
            raise ValueError("these samples carry no adaptation state")
        a = self.adaptation
        return WarmStart(float(np.median(a["step_size"][lane])), a["inverse_mass_matrix"][lane].mean(axis=0),
                         a["last"][lane])

    def checked(self, quantities: Mapping[str, np.ndarray]) -> LaneSamples:
        """A copy whose R-hat is computed on ``quantities`` (name -> (D, chains, draws, ...)),
        e.g. the predictions a stage hands downstream rather than its raw parameters."""
        rhat = lane_rhat(quantities)
        ok = (self.diverging.sum(axis=(1, 2)) == 0) & (np.isnan(rhat) | (rhat <= RHAT_MAX))
        return dataclasses.replace(self, rhat=rhat, ok=ok, rhat_pooled=pooled_rhat(quantities))

    @property
    def n_lanes(self) -> int:
        return int(self.diverging.shape[0])

    @property
    def fail_fraction(self) -> float:
        """Share of lanes with R-hat above the threshold or any divergence."""
        return float(1.0 - self.ok.mean())

    def pooled(self, names=None, *, max_draws: int | None = None) -> dict[str, np.ndarray]:
        """Draws with lanes, chains and draws flattened: (D * chains * draws', ...), lane-major.

        ``max_draws``: thin every chain to every k-th draw, k = ceil(D * chains * draws / max_draws),
        so that at most about ``max_draws`` remain and every lane keeps as many (None: all)."""
        names = self.samples if names is None else names
        every = 1 if max_draws is None else thinning(self.diverging.size, max_draws)
        return {n: self.samples[n][:, :, ::every].reshape((-1,) + self.samples[n].shape[3:]) for n in names}

    def summary(self) -> dict:
        """JSON-able lane diagnostics."""
        return {
            "lanes": self.n_lanes,
            "fail_fraction": self.fail_fraction,
            "rhat_median": float(np.nanmedian(self.rhat)) if np.isfinite(self.rhat).any() else float("nan"),
            "rhat_max": float(np.nanmax(self.rhat)) if np.isfinite(self.rhat).any() else float("nan"),
            "rhat_pooled": float(self.rhat_pooled),
            "divergences": int(self.diverging.sum()),
            "lanes_with_divergences": int((self.diverging.sum(axis=(1, 2)) > 0).sum()),
            "mean_leapfrog_steps": float(self.num_steps.mean()),
        }


def lane_variance_split(pred: np.ndarray, lane: np.ndarray) -> np.ndarray:
    """Law of total variance over lanes: (2, P) = (mean within-lane variance, variance of the
    lane means) of draws ``pred`` (n, P) whose lane is ``lane`` (n,), lanes of equal size.
    The two rows sum to ``pred.var(axis=0)`` (ddof 0)."""
    lanes, index = np.unique(lane, return_inverse=True)
    counts = np.bincount(index)
    if counts.min() != counts.max():
        raise ValueError(f"lanes must hold equally many draws, got {counts.min()} to {counts.max()}")
    by_lane = pred[np.argsort(index, kind="stable")].reshape(lanes.size, counts[0], *pred.shape[1:])
    return np.stack([by_lane.var(axis=1).mean(axis=0), by_lane.mean(axis=1).var(axis=0)])


def thinning(n_draws: int, max_draws: int) -> int:
    """The thinning step k = ceil(n_draws / max_draws) (1 when nothing needs thinning)."""
    if int(max_draws) < 1:
        raise ValueError(f"max_draws must be a positive number of draws, got {max_draws}")
    return max(1, -(-int(n_draws) // int(max_draws)))


def split_variances(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-sequence variance W and var+ = (n - 1)/n W + B/n of split chains.

    x: (D, C, S, K) -> two (D, K) arrays. Each chain is halved, giving 2C
    sequences of n = S // 2 draws; W is their mean variance and B/n the variance
    of their means (Gelman et al., BDA3 eq. 11.4).
    """
    n = x.shape[2] // 2
    halves = np.concatenate([x[:, :, :n], x[:, :, -n:]], axis=1)  # (D, 2C, n, K)
    within = halves.var(axis=2, ddof=1).mean(axis=1)
    between_n = halves.mean(axis=2).var(axis=1, ddof=1)
    return within, (n - 1) / n * within + between_n


def _rhat_ratio(within: np.ndarray, var_plus: np.ndarray) -> np.ndarray:
    """sqrt(var+ / W); 1 for constant draws, inf when only the sequence means vary."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(within > 0, np.sqrt(var_plus / within), np.where(var_plus > 0, np.inf, 1.0))


def split_rhat(x: np.ndarray) -> np.ndarray:
    """Split R-hat over axis 1 (chains), axis 2 (draws): x (D, C, S, K) -> (D, K).

    R = sqrt(var+ / W) (see :func:`split_variances`).
    """
    return _rhat_ratio(*split_variances(x))


def pooled_split_rhat(x: np.ndarray) -> np.ndarray:
    """Split R-hat pooled over lanes: x (D, C, S, K) -> (K,).

    Every lane d has its own target, so chains are compared only within their
    lane: with W_dk and var+_dk of lane d (:func:`split_variances`),
    R_k = sqrt(mean_d var+_dk / mean_d W_dk). With D lanes the between-chain
    term has D (2C - 1) degrees of freedom instead of 2C - 1.
    """
    within, var_plus = split_variances(x)
    return _rhat_ratio(within.mean(axis=0), var_plus.mean(axis=0))


def _scalars(samples: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Every scalar of every variable as columns, (D, C, S, K); None when R-hat is
    not computable (one chain, or fewer than 4 draws)."""
    stacked = np.concatenate([v.reshape(v.shape[:3] + (-1,)) for v in samples.values()], axis=-1)
    return None if stacked.shape[1] < 2 or stacked.shape[2] < 4 else stacked


def lane_rhat(samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """Worst split R-hat over every scalar of every variable: (D,) (NaN with one chain)."""
    stacked = _scalars(samples)
    if stacked is None:
        return np.full(next(iter(samples.values())).shape[0], np.nan)
    return np.max(split_rhat(stacked), axis=-1)


def pooled_rhat(samples: Mapping[str, np.ndarray]) -> float:
    """Worst pooled split R-hat over every scalar of every variable (NaN with one chain)."""
    stacked = _scalars(samples)
    return float("nan") if stacked is None else float(np.max(pooled_split_rhat(stacked)))


def _report_iteration(i) -> None:
    """Host callback of a compiled run: iteration ``i`` (0-based) of every lane is done."""
    if _BARS:
        bar = _BARS[-1]
        bar.update(int(i) + 1 - bar.n)


@contextlib.contextmanager
def iteration_bar(total: int, desc: str, show: bool | None) -> Iterator[None]:
    """A progress bar of a compiled run's ``total`` iterations (warm-up and draws, every lane
    at once), with rate and time left; drawn only when :func:`bayesmix.inference.progress.progress_enabled`."""
    if not progress_enabled(show):
        yield
        return
    bar = tqdm(total=total, desc=desc, unit="it", leave=False)
    _BARS.append(bar)
    try:
        yield
    finally:
        _BARS.remove(bar)
        bar.close()


def _jitter(z: dict, key, scale: float) -> dict:
    leaves, tree = jax.tree_util.tree_flatten(z)
    keys = jax.random.split(key, len(leaves))
    moved = [leaf + scale * jax.random.uniform(k, jnp.shape(leaf), minval=-1.0, maxval=1.0)
             for leaf, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, moved)


class LaneSampler:
    """NUTS for one model over batches of datasets; compiled once per batch shape.

    ``model(batch_d)`` is a numpyro model of one dataset and ``example`` one
    dataset (a dict of arrays) fixing the shapes. ``init_values`` are
    constrained start values (e.g. from a point fit), shared by every lane and
    jittered by ``config.jitter`` in unconstrained space per (lane, chain).
    ``keep`` limits the returned sites (default: every latent and deterministic
    site). Build and call inside ``jax.enable_x64(True)`` for float64.

    ``cache_key``: a hashable name for the model's structure. When the model
    reads every array from its batch (nothing captured but static settings),
    samplers with the same key, config and example shapes share one compiled
    program across instances, so refitting the same-shaped problem (another
    campaign, the error budget's refits) skips tracing and compilation.
    """

    def __init__(self, model: Callable, example: Mapping[str, np.ndarray], *, config: SamplerConfig = SamplerConfig.for_lanes(),
                 init_values: Mapping[str, np.ndarray] | None = None, keep: tuple[str, ...] | None = None,
                 seed: int = 0, cache_key=None):
        self.config = config
        example = {k: jnp.asarray(v) for k, v in example.items()}
        strategy = (init_to_value(values={k: jnp.asarray(v) for k, v in init_values.items()})
                    if init_values else init_to_median)
        info = initialize_model(jax.random.PRNGKey(seed), model, model_args=(example,),
                                init_strategy=strategy, dynamic_args=True)
        self.z0 = info.param_info.z
        key = None if cache_key is None else (
            cache_key, config, keep, jax.config.jax_enable_x64,
            tuple(sorted((k, v.shape, str(v.dtype)) for k, v in example.items())))
        if key is not None and key in _COMPILED:
            self._run = _COMPILED[key]
        else:
            self._run = _compiled_sampler(info.potential_fn, info.postprocess_fn, config, keep)
            if key is not None:
                _COMPILED[key] = self._run

    def __call__(self, batch: Mapping[str, np.ndarray], *, seed: int,
                 warm_start: WarmStart | None = None, progress: bool | None = False,
                 desc: str = "NUTS") -> LaneSamples:
        """Sample every dataset of ``batch`` (arrays with a leading dataset axis D).

        With ``warm_start`` every lane starts from its positions, step size and mass
        matrix (see the module docstring).
        ``progress``: a bar of the iterations done (``None``: when interactive), named ``desc``."""
        if seed is None:
            raise ValueError("a seed is required")
        flat0 = jax.flatten_util.ravel_pytree(self.z0)[0]
        if warm_start is not None:
            if warm_start.positions.shape[1] != flat0.size:
                raise ValueError(f"the warm start has {warm_start.positions.shape[1]} coordinates, the model "
                                 f"{flat0.size}")
            if warm_start.dense != self.config.dense_mass:
                raise ValueError("the warm start's mass matrix must be dense exactly when config.dense_mass is")
        batch = {k: jnp.asarray(v) for k, v in batch.items()}
        sizes = {int(v.shape[0]) for v in batch.values()}
        if len(sizes) != 1:
            raise ValueError(f"every batch array needs the same leading (dataset) axis, got sizes {sorted(sizes)}")
        n_lanes, n_chains = sizes.pop(), self.config.num_chains
        keys = jax.random.split(jax.random.PRNGKey(seed), n_lanes * n_chains)
        keys = keys.reshape((n_lanes, n_chains) + keys.shape[1:])
        start = None
        if warm_start is not None:
            rows = np.arange(n_chains) % warm_start.positions.shape[0]
            start = (jnp.asarray(warm_start.positions[rows]), jnp.asarray(warm_start.step_size, flat0.dtype),
                     jnp.asarray(warm_start.inverse_mass_matrix, flat0.dtype))
        total = self.config.num_warmup + self.config.num_samples
        with iteration_bar(total, f"{desc}: {n_lanes} lane(s) x {n_chains} chain(s)", progress):
            samples, diverging, num_steps, adapt = self._run(batch, keys, self.z0, start)
            samples = {k: np.asarray(v) for k, v in samples.items()}
            adaptation = {k: np.asarray(v) for k, v in adapt.items()}
        return LaneSamples(samples, np.asarray(diverging), np.asarray(num_steps),
                           adaptation=adaptation).checked(samples)


def sample_lanes(
    model: Callable,
    batch: Mapping[str, np.ndarray],
    *,
    seed: int,
    config: SamplerConfig = SamplerConfig.for_lanes(),
    init_values: Mapping[str, np.ndarray] | None = None,
    keep: tuple[str, ...] | None = None,
) -> LaneSamples:
    """Run NUTS on every dataset of ``batch`` in one vmapped computation.

    One-shot form of :class:`LaneSampler` (built on the first dataset).
    """
    example = {k: np.asarray(v)[0] for k, v in batch.items()}
    sampler = LaneSampler(model, example, config=config, init_values=init_values, keep=keep, seed=seed)
    return sampler(batch, seed=seed + 1)


def _compiled_sampler(potential_fn_gen, postprocess_fn_gen, config: SamplerConfig, keep):
    """jit(vmap_datasets(vmap_chains(one chain))) for one model.

    ``start`` is None (start at z0 jittered, adapt step size and mass matrix) or
    ``(positions (chains, n), step_size, inverse_mass_matrix)`` (see WarmStart).
    """
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def one_chain(data, key, z0, start):
        k_jitter, k_run = jax.random.split(key)
        if start is None:
            z = _jitter(z0, k_jitter, config.jitter)
            adapt = {}
        else:
            position, step_size, inverse_mass_matrix = start
            z = jax.flatten_util.ravel_pytree(z0)[1](position)  # the anchor's chains already differ
            adapt = {"step_size": step_size, "inverse_mass_matrix": inverse_mass_matrix,
                     "adapt_mass_matrix": config.adapt_warm_mass}
        state = init_kernel(z, config.num_warmup, target_accept_prob=config.target_accept_prob,
                            max_tree_depth=config.max_tree_depth, dense_mass=config.dense_mass,
                            model_args=(data,), rng_key=k_run, **adapt)

        n_warmup = config.num_warmup
        flat0, unravel = jax.flatten_util.ravel_pytree(state.z)
        buffer = jnp.zeros((config.num_samples, flat0.size), flat0.dtype)
        flags = jnp.zeros(config.num_samples, bool)
        steps = jnp.zeros(config.num_samples, jnp.result_type(int))

        def step(carry, i):
            state, buffer, flags, steps = carry
            state = sample_kernel(state, model_args=(data,))
            slot = jnp.clip(i - n_warmup, 0, config.num_samples - 1)
            keep_it = i >= n_warmup
            flat = jax.flatten_util.ravel_pytree(state.z)[0]
            buffer = buffer.at[slot].set(jnp.where(keep_it, flat, buffer[slot]))
            flags = flags.at[slot].set(jnp.where(keep_it, state.diverging, flags[slot]))
            steps = steps.at[slot].set(jnp.where(keep_it, state.num_steps, steps[slot]))
            done = (i + 1) % PROGRESS_EVERY == 0
            jax.lax.cond(done | (i + 1 == n_warmup + config.num_samples),
                         lambda: jax.debug.callback(_report_iteration, i), lambda: None)
            return (state, buffer, flags, steps), None

        (state, buffer, diverging, num_steps), _ = jax.lax.scan(step, (state, buffer, flags, steps),
                                                                jnp.arange(n_warmup + config.num_samples))
        zs = jax.vmap(unravel)(buffer)
        values = jax.vmap(postprocess_fn_gen(data))(zs)
        if keep is not None:
            values = {k: values[k] for k in keep}
        adapted = {"step_size": state.adapt_state.step_size,
                   "inverse_mass_matrix": state.adapt_state.inverse_mass_matrix,
                   "last": jax.flatten_util.ravel_pytree(state.z)[0]}
        return values, diverging, num_steps, adapted

    def run(batch, keys, z0, start):
        n_lanes, n_chains = keys.shape[:2]
        data = {k: jnp.repeat(v, n_chains, axis=0) for k, v in batch.items()}
        keys = keys.reshape((n_lanes * n_chains,) + keys.shape[2:])
        if start is None:
            out = jax.vmap(one_chain, in_axes=(0, 0, None, None))(data, keys, z0, None)
        else:
            position, step_size, imm = start
            position = jnp.tile(position, (n_lanes, 1))  # (lanes * chains, n): chain c of every lane
            out = jax.vmap(one_chain, in_axes=(0, 0, None, (0, None, None)))(data, keys, z0,
                                                                            (position, step_size, imm))
        return jax.tree_util.tree_map(lambda a: a.reshape((n_lanes, n_chains) + a.shape[1:]), out)

    return jax.jit(run)
