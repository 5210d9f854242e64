"""Which mixtures to run next: batch acquisition over the bounded simplex.

    table = suggest(fit_result, q=4, bounds=SimplexBounds(domains, r_max={"code": 0.3}), seed=0)
    table = suggest(result, q=2, acquisition=qUCB(beta=3.0), search=Search(steps=0), eval="code")

The objective is a loss to minimise, seen through its joint posterior draws
``f_d(r)``. Anything that maps mixtures to such draws can drive the design
(:func:`objective_from`):

* a :class:`bayesmix.inference.fit.FitResult` of the mixing law (``law="mix"``): draws of
  the law's mean ``L(r) = floor + (level - floor) exp(t . (r - r0))`` (overall
  or one eval domain) from the posterior parameters, differentiable in r;
  other laws are evaluated through their ``mean_draws`` (candidates only, no
  gradient refinement);
* a :class:`bayesmix.pipeline.result.PipelineResult`: its target-scale ``loss_fn``;
* any function ``f(r (n, M)) -> (D, n)`` with ``domains=`` (and ``tried=``, the
  mixtures already run).

The incumbent ``f*`` is the best posterior mean among mixtures already run.
Batches are built greedily: point k maximises the batch acquisition of
(points 1..k-1 fixed, r) over joint draws, so later points account for what
earlier ones would already find. Each greedy step scores a candidate set
(the centre, RegMix Dirichlet draws, Algorithm 2 mixtures, perturbations of
the best tried mixtures, any given candidates; or only a given ``pool``),
refines the best ``n_starts`` by projected Adam on the acquisition
(:func:`bayesmix.decide.simplex.minimise_on_simplex`), and checks every result
against the bounds. The acquisition is an object carrying its own settings
(:mod:`bayesmix.design.acquisition`), the search settings one :class:`Search`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayesmix.design import acquisition as acq
from bayesmix.design import candidates as cand
from bayesmix.laws.mixtures import MIX_PREFIX, as_mixture_matrix, mix_columns
from bayesmix.decide.simplex import SimplexBounds, minimise_on_simplex

DrawsFn = Callable[[jax.Array], jax.Array]  # mixtures (n, M) -> joint draws (D, n)


@dataclasses.dataclass(frozen=True)
class Objective:
    """Draws of the loss to minimise at any mixtures.

    ``draws_fn(r (n, M)) -> (D, n)`` (JAX when ``differentiable``), the
    ``domains`` (M), the ``tried`` mixtures (``mixture`` label + ``mix.*``), the
    ``eval`` domain it predicts and where it came from (``source``).
    """

    draws_fn: DrawsFn
    domains: list[str]
    tried: pd.DataFrame
    differentiable: bool
    eval: str
    source: str

    @functools.cached_property
    def _compiled(self) -> Callable:
        return jax.jit(self.draws_fn) if self.differentiable else self.draws_fn

    def draws(self, r: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Draws (D, n) at mixtures r (n, M), evaluated in chunks (float64, compiled when JAX)."""
        r = np.atleast_2d(np.asarray(r, float))
        fn = self._compiled
        with jax.enable_x64(True):
            parts = [np.asarray(fn(jnp.asarray(r[i:i + chunk])), dtype=float)
                     for i in range(0, r.shape[0], chunk)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))

    def tried_matrix(self) -> np.ndarray:
        return self.tried[[MIX_PREFIX + d for d in self.domains]].to_numpy(float)


def _tried_frame(frame: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """Distinct mixtures of a run table (or mixture frame): ``mixture`` + ``mix.*``, labelled
    by run when one run per mixture, else ``m<k>``."""
    cols = [MIX_PREFIX + d for d in domains]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"tried mixtures lack column(s) {missing}")
    label_col = "mixture" if "mixture" in frame.columns else ("run" if "run" in frame.columns else None)
    distinct = frame.drop_duplicates(cols).reset_index(drop=True)
    labels = (distinct[label_col].astype(str).tolist() if label_col else
              [f"m{i}" for i in range(len(distinct))])
    return cand.mixtures_frame(distinct[cols].to_numpy(float), domains, labels=labels)


def _select_draws(n: int, max_draws: int, seed: int) -> np.ndarray:
    if n <= max_draws:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_draws, replace=False))


def _fit_objective(fit, eval: str | None, max_draws: int, seed: int) -> Objective:
    """Objective of a FitResult: the law's mean at any mixture, per posterior draw."""
    meta, coords = fit.data.meta, fit.data.coords
    if "domains" not in meta:
        raise ValueError(f"law {fit.law.name!r} does not predict at mixtures; suggest needs a mixing-law fit")
    domains = list(meta["domains"])
    evals = list(coords.get("eval", []))
    overall = "overall"
    eval = eval or (overall if len(evals) > 1 else (evals[0] if evals else overall))
    if eval != overall and eval not in evals:
        raise ValueError(f"unknown eval {eval!r}; the fit has {evals + ([overall] if len(evals) > 1 else [])}")
    obs = fit.data.obs_index
    if obs is None or obs.empty:
        obs = fit.idata.constant_data.to_dataframe().reset_index(drop=True) if "constant_data" in fit.idata else None
    if obs is None or obs.empty:
        raise ValueError("the fit carries no observed mixtures (constant_data); pass tried= explicitly")
    tried = _tried_frame(obs, domains)
    params = fit.posterior()
    idx = _select_draws(next(iter(params.values())).shape[0], max_draws, seed)
    if fit.law.name == "mix":
        from bayesmix.laws.mixing import m4_draws
        from bayesmix.laws.overall import weighted_overall

        with jax.enable_x64(True):
            level, floor, t = (jnp.asarray(np.asarray(params[k])[idx]) for k in ("level", "floor", "t"))
            r0 = jnp.asarray(meta["r0"])
            w = jnp.asarray(meta["weights"])
        pick = None if eval == overall else evals.index(eval)

        def f(r):
            per_eval = m4_draws(r - r0, level, floor, t)  # (D, n, E)
            return weighted_overall(per_eval, w, pick)

        return Objective(f, domains, tried, True, eval, "fit:mix")

    sub = {k: np.asarray(v)[idx] for k, v in params.items()}

    def f_np(r):
        frame = cand.mixtures_frame(np.asarray(r), domains)
        query = fit.law.query(fit.data, mixtures=frame)
        values = np.asarray(fit.law.mean_draws(sub, query, meta), float)
        pick = np.asarray(query.labels["eval"]) == eval
        return values[:, pick] if "eval" in query.labels else values

    return Objective(f_np, domains, tried, False, eval, f"fit:{fit.law.name}")


def objective_from(source, *, eval: str | None = None, max_draws: int = 512, seed: int = 0,
                   domains: Sequence[str] | None = None, tried=None) -> Objective:
    """An :class:`Objective` from a FitResult, a PipelineResult or a draws function.

    ``max_draws``: posterior draws kept (a seeded subset). ``tried`` (a run table
    or mixtures frame) overrides the mixtures read from the fit; a bare function
    needs ``domains`` and should get ``tried``.
    """
    if isinstance(source, Objective):
        obj = source
    elif hasattr(source, "loss_fn") and hasattr(source, "observed_mixtures"):
        obj = Objective(source.loss_fn(eval, max_draws=max_draws, seed=seed), list(source.domains),
                        _tried_frame(source.observed_mixtures(), list(source.domains)), True,
                        eval or "overall", "pipeline")
    elif hasattr(source, "law") and hasattr(source, "idata"):
        obj = _fit_objective(source, eval, max_draws, seed)
    elif callable(source):
        if domains is None:
            raise ValueError("a draws function needs domains= (the names of its M mixture columns)")
        domains = [str(d) for d in domains]
        empty = cand.mixtures_frame(np.zeros((0, len(domains))), domains)
        obj = Objective(source, domains, empty, _is_differentiable(source, len(domains)), eval or "loss",
                        "function")
    else:
        raise TypeError(f"cannot build an objective from {type(source).__name__}: pass a FitResult, a "
                        "PipelineResult or a function mapping mixtures (n, M) to draws (D, n)")
    if tried is not None:
        obj = dataclasses.replace(obj, tried=_tried_frame(_mixture_input(tried, obj.domains), obj.domains))
    return obj


def _mixture_input(mixtures, domains: list[str]) -> pd.DataFrame:
    """A run table or mixtures (frame with ``mix.*``/domain columns, dicts, array) as a frame with ``mix.*``."""
    if isinstance(mixtures, pd.DataFrame) and mix_columns(mixtures):
        return mixtures
    _, frame = as_mixture_matrix(mixtures, domains)
    return frame


def _is_differentiable(fn: DrawsFn, M: int) -> bool:
    try:  # trace only (no compilation, no evaluation)
        with jax.enable_x64(True):
            jax.eval_shape(jax.grad(lambda r: jnp.mean(fn(r[None, :]))), jnp.full(M, 1.0 / M))
        return True
    except Exception:  # noqa: BLE001  (any tracing failure means: not a JAX function)
        return False


# ---------------------------------------------------------------- candidates


def candidate_set(bounds: SimplexBounds, *, tried: np.ndarray, seed: int, n: int = 1024,
                  extra: np.ndarray | None = None, prior=None) -> tuple[np.ndarray, list[str]]:
    """Feasible starting mixtures (N, M) and where each came from.

    The centre; ``n/2`` RegMix Dirichlet draws; ``n/4`` Algorithm 2 mixtures
    (grid 0.05); ``n/4`` perturbations (sd 0.03 and 0.1) of the tried mixtures;
    ``extra`` given candidates (projected). Duplicates are dropped.
    """
    parts = [(bounds.centre()[None], "centre"),
             (cand.dirichlet(bounds, n // 2, seed=seed, prior=prior), "dirichlet"),
             (cand.algorithm2(bounds, n // 4, delta=0.05, seed=seed + 1), "algorithm2")]
    if tried is not None and len(tried):
        inside = bounds.project(tried)
        parts += [(cand.perturb(inside, bounds, n // 8, scale=0.03, seed=seed + 2), "perturbed"),
                  (cand.perturb(inside, bounds, n // 8, scale=0.1, seed=seed + 3), "perturbed")]
    if extra is not None and len(extra):
        parts.append((bounds.project(np.atleast_2d(extra)), "given"))
    r = np.concatenate([p for p, _ in parts])
    origin = [name for p, name in parts for _ in range(p.shape[0])]
    _, keep = np.unique(np.round(r, 10), axis=0, return_index=True)
    keep = np.sort(keep)
    return r[keep], [origin[i] for i in keep]


# ---------------------------------------------------------------- suggest


def incumbent_of(obj: Objective, tried_draws: np.ndarray) -> tuple[float, str]:
    """Best posterior mean among tried mixtures, and its label."""
    means = tried_draws.mean(axis=0)
    k = int(np.argmin(means))
    return float(means[k]), str(obj.tried["mixture"].iloc[k])


def improvement_scale(tried_draws: np.ndarray, cand_draws: np.ndarray) -> float:
    """Scale s of the improvement: the spread (sd) of posterior means over the tried
    mixtures, else the mean posterior sd of the candidates, else 1."""
    means = tried_draws.mean(axis=0) if tried_draws.size else np.zeros(0)
    if means.size > 1 and np.std(means) > 0:
        return float(np.std(means))
    sd = float(np.mean(cand_draws.std(axis=0))) if cand_draws.size else 0.0
    return sd if sd > 0 else 1.0


@functools.partial(jax.jit, static_argnames=("acquisition",))
def _scores(fixed, cands, incumbent, scale, *, acquisition: acq.Acquisition):
    """Batch acquisition of (fixed draws (D, k), candidate i) for every column i of cands (D, N): (N,).
    Compiled once per (shapes, acquisition and its settings); incumbent and scale are traced."""
    return jax.vmap(lambda fc: acquisition(jnp.concatenate([fixed, fc[:, None]], axis=1), incumbent, scale),
                    in_axes=1)(cands)


@functools.partial(jax.jit, static_argnames=("tau_relu",))
def _point_stats(draws, incumbent, scale, *, tau_relu):
    """LogEI, plain EI and P(improvement) of each mixture alone: draws (D, n) -> three (n,)."""
    return (acq.log_ei(draws, incumbent, scale=scale, tau_relu=tau_relu), acq.ei(draws, incumbent),
            acq.prob_improvement(draws[..., None], incumbent))


NEUTRAL_GAP = 1e6  # a padding column's loss: incumbent + NEUTRAL_GAP * scale, a mixture that never improves


def neutral_padding(fixed: np.ndarray, width: int, incumbent: float, scale: float) -> np.ndarray:
    """The batch's draws so far ``fixed`` (D, k) padded to (D, width) with columns of constant loss
    ``incumbent + NEUTRAL_GAP * scale``: to every acquisition here a mixture that never improves
    (qUCB exactly; qLogEI and qLogPI within 1e-8 through their smooth max), so that every pick
    of a batch has one shape and its refinement one compilation."""
    pad = np.full((fixed.shape[0], width - fixed.shape[1]), incumbent + NEUTRAL_GAP * scale)
    return np.concatenate([fixed, pad], axis=1)


def _negated_batch(acquisition: acq.Acquisition, draws_fn: DrawsFn) -> Callable:
    """``(r (M,), fixed (D, k), incumbent, scale) -> -acquisition(fixed draws + draws at r)``: the
    function refinement minimises, the same object for every pick of a batch."""

    def negative(r, fixed, incumbent, scale):
        return -acquisition(jnp.concatenate([fixed, draws_fn(r[None, :])], axis=1), incumbent, scale)

    return negative


@dataclasses.dataclass(frozen=True)
class Search:
    """Where :func:`suggest` looks for the next mixtures.

    ``n_candidates`` starting mixtures (:func:`candidate_set`; ``prior``: the mean of its
    Dirichlet part), the ``n_starts`` best refined by ``steps`` of projected Adam with step
    ``learning_rate`` (0 steps: none). Points of one batch are at least ``min_distance``
    apart (total variation), and outside a pool at least that far from every mixture already
    run (re-running a mixture only re-measures its noise).
    """

    n_candidates: int = 1024
    n_starts: int = 8
    steps: int = 150
    learning_rate: float = 0.02
    min_distance: float = 0.01
    prior: object = None


OBJECTIVE_OPTIONS = ("eval", "max_draws", "domains", "tried")


def suggest_settings(options: Mapping) -> dict:
    """Flat options (as a campaign's JSON or a command line gives them: ``steps``, ``eval``,
    ``acquisition``, ``beta``...) as :func:`suggest` keyword arguments (``search=Search(...)``,
    ``acquisition=`` an object); unknown names raise ValueError."""
    options = dict(options)
    search_fields = {f.name for f in dataclasses.fields(Search)}
    search = {k: options.pop(k) for k in list(options) if k in search_fields}
    out = {k: options.pop(k) for k in list(options) if k in OBJECTIVE_OPTIONS + ("prob", "prefix", "pool",
                                                                                  "candidates", "bounds")}
    name = options.pop("acquisition", "logei")
    out["acquisition"] = acq.get_acquisition(name, **options)  # the rest: the acquisition's own settings
    if search:
        out["search"] = Search(**search)
    return out


def _pool_candidates(pool, obj: Objective, bounds: SimplexBounds, tried_r: np.ndarray, q: int):
    """The untried pool mixtures within the bounds: (N, M), labels, origins."""
    pool_frame = _mixture_input(pool, obj.domains)
    r_c = pool_frame[[MIX_PREFIX + d for d in obj.domains]].to_numpy(float)
    r_c = r_c / r_c.sum(axis=1, keepdims=True)
    labels_c = (pool_frame["mixture"].astype(str).tolist() if "mixture" in pool_frame
                else [f"pool{i}" for i in range(len(r_c))])
    ok = bounds.is_feasible(r_c, tol=1e-6)
    if len(tried_r):
        ok &= cand.tv_distance(r_c, tried_r).min(axis=1) > 1e-9
    r_c, labels_c = r_c[ok], [lab for lab, k in zip(labels_c, ok) if k]
    if r_c.shape[0] < q:
        raise ValueError(f"the pool holds {r_c.shape[0]} untried mixtures within the bounds; q = {q}")
    return r_c, labels_c, ["pool"] * len(r_c)


@dataclasses.dataclass
class _Batch:
    """The greedy batch as it grows: chosen mixtures, their joint draws, per-pick records."""

    chosen_r: list
    chosen_f: np.ndarray
    rows: list


def _refined_pick(ctx: dict, batch: _Batch, scores: np.ndarray, k: int):
    """Gradient refinement of pick ``k`` from the best-scoring candidates; returns (r, value, start, moved)
    when it beats the best candidate and keeps its distance, else None."""
    r_c, origin, search = ctx["r_c"], ctx["origin"], ctx["search"]
    order = np.argsort(-scores)
    starts = r_c[order[:search.n_starts]][np.isfinite(scores[order[:search.n_starts]])]
    fixed = neutral_padding(batch.chosen_f, ctx["q"] - 1, ctx["incumbent"], ctx["scale"])
    r_opt, v_opt, info = minimise_on_simplex(ctx["negative"], ctx["bounds"], starts,
                                             args=(fixed, ctx["incumbent"], ctx["scale"]), steps=search.steps,
                                             learning_rate=search.learning_rate, seed=ctx["seed"] + k,
                                             warn_unmoved=False)
    tried_r = ctx["tried_r"]
    near = np.concatenate([np.stack(batch.chosen_r), tried_r]) if batch.chosen_r else tried_r
    far = not len(near) or cand.tv_distance(r_opt[None], near).min() >= search.min_distance
    if far and np.isfinite(v_opt):
        start = origin[order[int(np.argmin(np.abs(starts - info.start).sum(axis=1)))]]
        return r_opt, -v_opt, start, info.moved
    return None


def _greedy_batch(ctx: dict, refine: bool) -> tuple[_Batch, np.ndarray]:
    """Pick ``ctx["q"]`` mixtures one at a time, each maximising the batch acquisition given the
    earlier picks; returns the batch and every candidate's acquisition alone (the landscape)."""
    r_c, f_c, search, q = ctx["r_c"], ctx["f_c"], ctx["search"], ctx["q"]
    batch = _Batch([], np.zeros((f_c.shape[0], 0)), [])
    available = np.ones(r_c.shape[0], bool)
    if len(ctx["tried_r"]) and ctx["pool"] is None:
        available &= cand.tv_distance(r_c, ctx["tried_r"]).min(axis=1) >= search.min_distance
    alone = None
    for k in range(q):
        scores = np.asarray(_scores(jnp.asarray(batch.chosen_f), jnp.asarray(f_c), ctx["incumbent"], ctx["scale"],
                                    acquisition=ctx["acquisition"]), float)
        if k == 0:
            alone = np.where(available & np.isfinite(scores), scores, -np.inf)
        if batch.chosen_r:  # no near-duplicates within a batch
            available &= cand.tv_distance(r_c, batch.chosen_r[-1][None])[:, 0] >= search.min_distance
        scores = np.where(available & np.isfinite(scores), scores, -np.inf)
        if not np.isfinite(scores).any():
            raise ValueError("no candidate has a finite acquisition value")
        best = int(np.argmax(scores))
        r_k, value_k, start_k, refined = r_c[best], float(scores[best]), ctx["origin"][best], False
        label_k = ctx["labels_c"][best] if ctx["labels_c"] is not None else None
        if refine:
            better = _refined_pick(ctx, batch, scores, k)
            if better is not None and better[1] > value_k:
                r_k, value_k, start_k, refined = better
        ctx["bounds"].check(r_k)
        batch.chosen_r.append(r_k)
        batch.chosen_f = np.concatenate([batch.chosen_f, ctx["obj"].draws(r_k[None])], axis=1)
        available[best] = False
        batch.rows.append({"order": k + 1, "label": label_k, "acquisition": value_k, "start": start_k,
                           "refined": refined})
    return batch, alone


def _suggestion_table(ctx: dict, batch: _Batch, prob: float, prefix: str) -> pd.DataFrame:
    """One row per pick: mixture, ``mix.*``, the acquisition and the predictive summary."""
    obj, chosen_f, rows = ctx["obj"], batch.chosen_f, batch.rows
    r_s = np.stack(batch.chosen_r)
    tau_relu = getattr(ctx["acquisition"], "tau_relu", acq.TAU_RELU)
    with jax.enable_x64(True):
        log_ei_s, ei_s, pi_s = (np.asarray(a) for a in _point_stats(jnp.asarray(chosen_f), ctx["incumbent"],
                                                                      ctx["scale"], tau_relu=tau_relu))
    labels = [row["label"] or f"{prefix}{row['order']}" for row in rows]
    table = cand.mixtures_frame(r_s, obj.domains, labels=labels)
    alpha = (1 - prob) / 2
    mean = chosen_f.mean(axis=0)
    table["order"] = [row["order"] for row in rows]
    table["acquisition"] = [row["acquisition"] for row in rows]
    table["log_ei"] = log_ei_s
    table["expected_improvement"] = ei_s
    table["prob_improvement"] = pi_s
    table["mean"] = mean
    table["sd"] = chosen_f.std(axis=0, ddof=1) if chosen_f.shape[0] > 1 else 0.0
    table["lower"] = np.quantile(chosen_f, alpha, axis=0)
    table["upper"] = np.quantile(chosen_f, 1 - alpha, axis=0)
    table["gain"] = ctx["incumbent"] - mean
    tried_r = ctx["tried_r"]
    if len(tried_r):
        dist = cand.tv_distance(r_s, tried_r)
        table["nearest_tried"] = obj.tried["mixture"].to_numpy()[dist.argmin(axis=1)]
        table["distance_to_tried"] = dist.min(axis=1)
    else:
        table["nearest_tried"] = None
        table["distance_to_tried"] = np.nan
    table["start"] = [row["start"] for row in rows]
    table["refined"] = [row["refined"] for row in rows]
    return table


def suggest_with_landscape(source, q: int = 4, *, acquisition: str | acq.Acquisition = "logei",
                           bounds: SimplexBounds | None = None, pool=None, candidates=None,
                           search: Search = Search(), prob: float = 0.9, prefix: str = "next", seed: int = 0,
                           **objective) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The next ``q`` mixtures to run, chosen greedily by a batch acquisition, and the
    acquisition landscape they were chosen from.

    ``source``: FitResult, PipelineResult, draws function or :class:`Objective`;
    ``objective``: ``eval``, ``max_draws``, ``domains``, ``tried`` for
    :func:`objective_from`. ``acquisition``: an object (:class:`~bayesmix.design.acquisition.qLogEI`,
    ``qLogPI``, ``qUCB``, carrying its settings) or its name. ``bounds``: per-domain bounds
    (default: the whole simplex). ``pool``: restrict suggestions to these mixtures
    (pool-based design; no refinement; mixtures already tried are skipped).
    ``candidates``: extra starting mixtures. ``search``: candidates, refinement and
    distances (:class:`Search`).

    Returns one row per suggestion: ``mixture`` (``<prefix><k>``), ``mix.*``,
    ``order``, ``acquisition`` (the batch acquisition once the point is added),
    ``log_ei`` and ``expected_improvement`` (the point alone),
    ``prob_improvement``, predicted ``mean``, ``sd``, ``lower``, ``upper``
    (central ``prob`` interval), ``gain`` (incumbent - mean), ``nearest_tried``
    and ``distance_to_tried`` (total variation, the share of tokens that would
    move), ``start`` (where the search began) and ``refined`` (moved by the
    gradient step). ``attrs`` hold the incumbent and the settings.

    The landscape: one row per candidate searched (``mixture``, ``mix.*``, ``log_ei``:
    the acquisition of that candidate alone, as at the first pick, ``-inf`` where it was
    excluded; ``suggested``: whether it became a suggestion without refinement).
    """
    if not isinstance(q, (int, np.integer)) or q < 1:
        raise ValueError(f"q must be a positive integer, got {q!r}")
    acquisition = acq.get_acquisition(acquisition)
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    unknown = sorted(set(objective) - set(OBJECTIVE_OPTIONS))
    if unknown:
        raise TypeError(f"suggest() got unexpected option(s) {unknown}; objective options are "
                        f"{list(OBJECTIVE_OPTIONS)}, search settings go in search=Search(...)")
    obj = objective_from(source, seed=seed, **objective)
    bounds = bounds if bounds is not None else SimplexBounds(obj.domains)
    if list(bounds.domains) != list(obj.domains):
        raise ValueError(f"bounds are over domains {bounds.domains}, the objective over {obj.domains}")
    tried_r = obj.tried_matrix()
    if pool is not None:
        r_c, labels_c, origin = _pool_candidates(pool, obj, bounds, tried_r, q)
    else:
        extra = None if candidates is None else as_mixture_matrix(candidates, obj.domains)[0]
        r_c, origin = candidate_set(bounds, tried=tried_r, seed=seed, n=search.n_candidates, extra=extra,
                                    prior=search.prior)
        labels_c = None
    f_c = obj.draws(r_c)
    f_t = obj.draws(tried_r) if len(tried_r) else np.zeros((f_c.shape[0], 0))
    if len(tried_r):
        incumbent, inc_label = incumbent_of(obj, f_t)
    else:
        k = int(np.argmin(f_c.mean(axis=0)))
        incumbent, inc_label = float(f_c[:, k].mean()), "best candidate (nothing tried yet)"
    scale = improvement_scale(f_t, f_c)
    refine = pool is None and search.steps > 0 and obj.differentiable
    if pool is None and search.steps > 0 and not obj.differentiable:
        warnings.warn("the objective is not a JAX function: suggestions come from the candidate set without "
                      "gradient refinement", stacklevel=2)
    ctx = {"obj": obj, "bounds": bounds, "r_c": r_c, "f_c": f_c, "labels_c": labels_c, "origin": origin,
           "tried_r": tried_r, "pool": pool, "search": search, "acquisition": acquisition,
           "incumbent": incumbent, "scale": scale, "seed": seed, "q": q,
           "negative": _negated_batch(acquisition, obj.draws_fn)}
    with jax.enable_x64(True):
        batch, alone = _greedy_batch(ctx, refine)
    table = _suggestion_table(ctx, batch, prob, prefix)
    table.attrs.update({
        "acquisition": acquisition.name, "acquisition_settings": dataclasses.asdict(acquisition),
        "incumbent": incumbent, "incumbent_mixture": inc_label, "eval": obj.eval,
        "scale": scale, "n_draws": int(f_c.shape[0]), "n_candidates": int(r_c.shape[0]), "prob": prob,
        "bounds": bounds.to_dict(), "seed": seed, "source": obj.source, "pool": pool is not None,
        "refine_steps": search.steps if refine else 0, "min_distance": search.min_distance,
    })
    landscape = cand.mixtures_frame(r_c, obj.domains, labels=labels_c)
    landscape["log_ei"] = alone
    landscape["suggested"] = _picked(r_c, np.stack(batch.chosen_r))
    return table, landscape


def _picked(r_c: np.ndarray, r_s: np.ndarray) -> np.ndarray:
    """Whether each candidate (n, M) equals one of the suggestions (q, M): (n,) bool."""
    return (cand.tv_distance(r_c, r_s) < 1e-12).any(axis=1)


def suggest(source, q: int = 4, **options) -> pd.DataFrame:
    """The next ``q`` mixtures to run: the table of :func:`suggest_with_landscape` (same options)."""
    return suggest_with_landscape(source, q, **options)[0]


suggest.__signature__ = inspect.signature(suggest_with_landscape).replace(return_annotation=pd.DataFrame)

__all__ = ["DrawsFn", "OBJECTIVE_OPTIONS", "Objective", "Search", "candidate_set", "improvement_scale", "incumbent_of",
           "objective_from", "suggest", "suggest_settings", "suggest_with_landscape"]
