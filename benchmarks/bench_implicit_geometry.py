"""Why NUTS mixes slowly on the implicit-aggregation law: the shipped model against
three re-parameterisations, on three datasets, in one run.

Datasets
* ``toy``: a known 3-latent-domain truth on 3 domains, 200 runs, noise 0.01
  (the recovery test's law, more runs).
* ``regmix``: RegMix Pile-CC, split ``--split`` (the laws benchmark's 80/20 split).
* ``twin``: the RegMix training mixtures with losses drawn from the implicit law
  itself (the shipped fit's last draw of chain 0, plus its own noise): the law is
  then exactly right, so what remains is the sampler's geometry.

Variants (all K = 30, initialised from the same multi-start point fit)
* ``shipped``: ``bayesmix.laws.implicit.implicit_model`` (t = tau * lambda_j * z).
* ``fixed_scale``: no scale hierarchy, t = 5 z.
* ``marginal_scales``: the per-domain scales integrated out: each domain's column
  of t (over the K latent domains) is multivariate Student-t (df 2, scale 2).
* ``shipped_dense``: the shipped model with a dense mass matrix.

Reported per (dataset, variant): worst and median R-hat of the fitted values,
their smallest bulk ESS, the share of trees cut at ``max_tree_depth``, mean
leapfrog steps, divergences, seconds, and the test MAE and 90% coverage (of the
truth's mean for toy and twin, of held-out losses for regmix).

    python benchmarks/bench_implicit_geometry.py --out .bench/implicit_geometry.json
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_value
from numpyro.infer.util import initialize_model, unconstrain_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DEFAULT_ANCHORS,
    coverage,
    markdown_table,
    regmix_eval_rows,
    split_runs,
    write_json,
)

from bayesmix.data.table import validate_runs
from bayesmix.inference.diagnostics import diagnose
from bayesmix.inference.nuts import SamplerConfig, posterior_draws, run_nuts
from bayesmix.laws import get_law
from bayesmix.laws.implicit import implicit_mean, implicit_model
from bayesmix.laws.priors import resolve_priors
from bayesmix.data.simulate import dirichlet_mixtures

LATENT = 30
FIXED_SCALE = 5.0
MARGINAL_DF, MARGINAL_SCALE = 2.0, 2.0


def fixed_interactions(n_latent, n_domains, priors):
    z = numpyro.sample("interaction_z", dist.Normal(0.0, 1.0).expand([n_latent, n_domains]).to_event(2))
    return FIXED_SCALE * z


def marginal_interactions(n_latent, n_domains, priors):
    column = dist.MultivariateStudentT(MARGINAL_DF, jnp.zeros(n_latent), MARGINAL_SCALE * jnp.eye(n_latent))
    return numpyro.sample("interaction_t", column.expand([n_domains]).to_event(1)).T


def variant_init(name: str, shipped_init: dict) -> dict:
    """The shipped law's initial values (from the point fit) carried over to a variant's sites."""
    init = dict(shipped_init)
    t = float(init.pop("interaction_tau")) * np.asarray(init.pop("interaction_z"))
    init.pop("domain_scale")
    if name == "fixed_scale":
        init["interaction_z"] = np.clip(t / FIXED_SCALE, -4.0, 4.0)
    else:
        init["interaction_t"] = t.T
    return init


VARIANTS = {
    "shipped": (implicit_model, False),
    "fixed_scale": (functools.partial(implicit_model, interactions=fixed_interactions), False),
    "marginal_scales": (functools.partial(implicit_model, interactions=marginal_interactions), False),
    "shipped_dense": (implicit_model, True),
}


def toy_truth(r: np.ndarray) -> np.ndarray:
    """Three latent domains on three training domains (the recovery test's law)."""
    s = np.array([0.45, 0.45, 0.1])
    b = np.array([0.0, 0.0, 0.5])
    t = np.array([[-4.0, 2.0, 2.0], [2.0, -4.0, 2.0], [1.0, 1.0, -2.0]])
    return 2.0 + (np.exp(b[None] + r @ t.T) @ s)


def toy_runs(n: int, seed: int):
    """(train table, test mixtures (n_test, 3), test truth) for the toy law."""
    domains = ["a", "b", "c"]
    mix = dirichlet_mixtures(n, domains, seed=seed)
    y = toy_truth(mix.to_numpy()) + 0.01 * np.random.default_rng(seed + 1).standard_normal(n)
    table = mix.rename(columns=lambda c: f"mix.{c}").assign(run=[f"r{i}" for i in range(n)], size=1000,
                                                           step=100, eval="val", loss=y)
    new = dirichlet_mixtures(100, domains, seed=seed + 2).to_numpy()
    return table, new, toy_truth(new)


def regmix_runs(anchors: Path, split: int):
    runs = regmix_eval_rows(anchors, "pile_cc")
    train_ids, test_ids = split_runs(sorted(runs["run"].unique()), seed=split)
    test = runs[runs["run"].isin(test_ids)].sort_values("run")
    mix_cols = [c for c in runs.columns if c.startswith("mix.")]
    return runs[runs["run"].isin(train_ids)], test[mix_cols].to_numpy(), test["loss"].to_numpy()


def sample(name, data, priors, init, y, config, seed):
    model, dense = VARIANTS[name]
    cfg = SamplerConfig(**{**config.to_dict(), "dense_mass": dense})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = run_nuts(model, {"data": data, "priors": priors, "y": jnp.asarray(y)}, seed=seed, config=cfg,
                         init_values=init if name.startswith("shipped") else variant_init(name, init))
    return idata, time.perf_counter() - start


def predictions(idata, x_test: np.ndarray) -> np.ndarray:
    """Law means (draws, points) at centred test mixtures."""
    p = posterior_draws(idata, ("level", "floor", "weight", "t"))
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(implicit_mean, in_axes=(None, 0, 0, 0, 0))(
            jnp.asarray(x_test), p["level"], p["floor"], p["weight"], p["t"]))


def row(dataset, name, idata, seconds, x_test, target, observed: bool, student_df: float):
    diag = diagnose(idata, var_names=["fitted"])
    rhat = az.rhat(idata.posterior, var_names=["fitted"])["fitted"].to_numpy()
    draws = predictions(idata, x_test)
    if observed:  # held-out losses: add the likelihood's Student-t noise
        sigma = idata.posterior["sigma"].stack(sample=("chain", "draw")).to_numpy()
        rng = np.random.default_rng(0)
        noise = rng.standard_t(student_df, draws.shape) if np.isfinite(student_df) else rng.standard_normal(draws.shape)
        draws = draws + sigma[:, None] * noise
    return {"dataset": dataset, "variant": name, "rhat_max": float(rhat.max()), "rhat_median": float(np.median(rhat)),
            "ess_bulk_min": diag.ess_bulk_min, "tree_depth_hits": diag.treedepth_saturation,
            "mean_steps": float(idata.sample_stats["n_steps"].mean()), "divergences": diag.divergences,
            "seconds": seconds, "mae": float(np.mean(np.abs(draws.mean(0) - target))),
            "cov90": coverage(draws, target, 0.9)}


def stiffest_directions(name, data, priors, y, idata, n_points: int = 8, top: int = 4) -> dict:
    """Conditioning of the posterior as NUTS sees it with the best diagonal metric.

    The Hessian H of the potential (unconstrained space) at ``n_points`` draws of
    chain 0, scaled by that chain's posterior sds: S H S. Its largest eigenvalue
    lambda sets NUTS' step (about 1 / sqrt(lambda)); the sites with the largest
    weights in its eigenvector name the stiff direction. Returns lambda's median,
    its max/min ratio over the draws, and the top sites of the median draw.
    """
    model, _ = VARIANTS[name]
    kwargs = {"data": data, "priors": priors, "y": jnp.asarray(y)}
    post = idata.posterior.isel(chain=0)
    with jax.enable_x64(True):
        init = {k: jnp.asarray(post[k].isel(draw=0).to_numpy()) for k in _sample_sites(model, kwargs)}
        _, potential, _, _ = initialize_model(jax.random.PRNGKey(0), model, model_kwargs=kwargs,
                                              init_strategy=init_to_value(values=init))
        draws = [unconstrain_fn(model, (), kwargs, {k: jnp.asarray(post[k].isel(draw=i).to_numpy()) for k in init})
                 for i in range(post.sizes["draw"])]
        flat = np.stack([np.asarray(ravel_pytree(d)[0]) for d in draws])
        _, unravel = ravel_pytree(draws[0])
        sd = flat.std(axis=0)
        hessian = jax.jit(jax.hessian(lambda f: potential(unravel(f))))
        picks = np.linspace(0, len(flat) - 1, n_points).astype(int)
        eig = []
        for i in picks:
            values, vectors = np.linalg.eigh(np.asarray(hessian(jnp.asarray(flat[i]))) * sd[:, None] * sd[None, :])
            eig.append((values[-1], vectors[:, -1]))
    labels = [f"{k}{list(idx) if idx else ''}" for k in sorted(draws[0]) for idx in np.ndindex(np.shape(draws[0][k]))]
    order = np.argsort([e for e, _ in eig])
    value, vector = eig[order[len(order) // 2]]
    sites = [labels[j] for j in np.argsort(-np.abs(vector))[:top]]
    return {"stiff_eig": float(value), "stiff_eig_ratio": float(eig[order[-1]][0] / eig[order[0]][0]),
            "stiff_sites": " ".join(sites)}


def _sample_sites(model, kwargs) -> list[str]:
    """The model's latent sample sites."""
    with jax.enable_x64(True):
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(**kwargs)
    return [k for k, v in tr.items() if v["type"] == "sample" and not v.get("is_observed", False)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="toy,regmix,twin")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--max-tree-depth", type=int, default=8)
    parser.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    parser.add_argument("--hessian", action="store_true",
                        help="on the toy, also report the stiffest direction of the posterior (scaled Hessian)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    datasets, variants = args.datasets.split(","), args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if "twin" in datasets and "shipped" not in variants:
        parser.error("the twin dataset is drawn from the shipped fit on regmix: keep the 'shipped' variant")
    config = SamplerConfig(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples,
                           max_tree_depth=args.max_tree_depth, progress_bar=False)
    law, priors = get_law("implicit"), resolve_priors("implicit", None)
    rows, twin_truth = [], None
    order = [d for d in ("toy", "regmix", "twin") if d in datasets or (d == "regmix" and "twin" in datasets)]
    for dataset in order:
        if dataset == "toy":
            train, x_new, target = toy_runs(200, seed=11)
        else:
            train, x_new, target = regmix_runs(args.anchors, args.split)
        prepared = law.prepare(validate_runs(train), latent=LATENT)
        with jax.enable_x64(True):
            point = law.point_fit(prepared, seed=args.split, n_starts=20)
            init = law.init_values(prepared, point, priors)
            data = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in prepared.arrays.items()}
        x_test = x_new - np.asarray(prepared.meta["r0"])
        y = np.asarray(prepared.y)
        if dataset == "twin":
            truth = twin_truth
            with jax.enable_x64(True):
                mean_train = np.asarray(implicit_mean(prepared.arrays["r_centered"], *truth[:4]))
                target = np.asarray(implicit_mean(x_test, *truth[:4]))
            y = mean_train + truth[4] * np.random.default_rng(5).standard_normal(len(mean_train))
        for name in variants:
            idata, seconds = sample(name, data, priors, init, y, config, seed=args.split)
            rows.append(row(dataset, name, idata, seconds, x_test, target, observed=dataset == "regmix",
                            student_df=priors["student_df"]))
            if args.hessian and dataset == "toy":
                rows[-1].update(stiffest_directions(name, data, priors, y, idata))
            print(markdown_table([rows[-1]], list(rows[-1])), flush=True)
            if dataset == "regmix" and name == "shipped":
                last = idata.posterior.isel(chain=0, draw=-1)
                twin_truth = tuple(last[v].to_numpy() for v in ("level", "floor", "weight", "t", "sigma"))
        if dataset == "regmix" and "regmix" not in datasets:
            rows = [r for r in rows if r["dataset"] != "regmix"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print("\n" + markdown_table(rows, columns))
    if args.out:
        write_json({"config": vars(args) | {"anchors": str(args.anchors), "out": str(args.out)}, "rows": rows},
                   args.out)


if __name__ == "__main__":
    main()
