"""Effective samples per second on the flat model's posterior at the paper's scale
(D = 500, N = 1,000): the slice kernel in each direction mode, Pyro's NUTS and, when the
optional ``numpyro`` is installed, NumPyro's NUTS. One table; each row says how it was got.

ESS is ArviZ's bulk ESS (Vehtari et al. 2021) per coordinate of ``w`` and ``b``; the minimum
and the median over coordinates are divided by the wall time of the whole run (warm-up
included). Pyro's NUTS is too slow for a full run here: it runs a few warm-up steps and draws,
and its rate is extrapolated from seconds per kept draw and ESS per kept draw (said so in the
table). Run: ``python bench/slice_vs_nuts.py [--chains 4 --draws 250 --warmup 200]``.
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from bayes_spheres.data import load_spheres
from bayes_spheres.inference import mcmc
from bayes_spheres.models import Flat


def ess_over_coordinates(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bulk ESS of every coordinate of draws ``w`` [chain, draw, D] and ``b`` [chain, draw]."""
    x = np.concatenate([w, b[..., None]], axis=-1)
    return np.asarray(az.ess(az.convert_to_dataset({"x": x}), method="bulk")["x"].values)


def slice_row(data, model, directions: str, args) -> dict:
    start = time.perf_counter()
    post = mcmc.fit(
        model, data, members=args.chains * args.draws, seed=args.seed, directions=directions,
        num_chains=args.chains, warmup=args.warmup, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    ess = ess_over_coordinates(post.samples["w"].numpy(), post.samples["b"].numpy())
    info = post.info["mcmc"]
    how = (
        f"{args.chains} chains x ({args.warmup} warm-up + {args.draws}) sweeps, vectorised, "
        f"{info['path']} path, {info['scale_moves']} scale moves/sweep, "
        f"{info['evaluations_per_update']:.1f} evals/update, "
        f"{info['seconds_per_sweep']:.2f} s/sweep"
    )
    return dict(method=f"slice ({directions})", seconds=seconds, ess=ess, how=how,
                rhat=post.info["convergence"]["rhat_max"])  # fmt: skip


def pyro_nuts_row(data, model, args) -> dict:
    pyro.set_rng_seed(args.seed)
    marks: list[float] = []

    def hook(kernel, samples, stage, i):
        marks.append(time.perf_counter())

    mcmc_run = MCMC(NUTS(model), num_samples=args.nuts_draws, warmup_steps=args.nuts_warmup,
                    num_chains=1, disable_progbar=True, hook_fn=hook)  # fmt: skip
    t0 = time.perf_counter()
    mcmc_run.run(data.phi_train, data.y_train)
    total = time.perf_counter() - t0
    sampling = marks[-1] - marks[args.nuts_warmup - 1] if len(marks) > args.nuts_warmup else total
    per_draw = sampling / args.nuts_draws
    samples = mcmc_run.get_samples(group_by_chain=True)
    ess = ess_over_coordinates(samples["w"].numpy(), samples["b"].numpy())
    # rate = (ESS per kept draw) / (seconds per kept draw); warm-up excluded, which flatters it
    rate_scale = 1.0 / (per_draw * args.nuts_draws)
    how = (
        f"1 chain, {args.nuts_warmup} warm-up + {args.nuts_draws} draws ({total:.0f} s in all, "
        f"{per_draw:.2f} s per draw after warm-up); ESS of so few draws is rough; "
        "rate extrapolated, warm-up excluded"
    )
    return dict(method="Pyro NUTS", seconds=1.0 / rate_scale, ess=ess, how=how, rhat=float("nan"))


def numpyro_nuts_row(data, args) -> dict | None:
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as ndist
        from numpyro.infer import MCMC as NMCMC
        from numpyro.infer import NUTS as NNUTS
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    phi, y = jnp.asarray(data.phi_train.numpy()), jnp.asarray(data.y_train.numpy())
    flat = Flat()

    def model():
        w = numpyro.sample("w", ndist.Normal(jnp.zeros(phi.shape[1]), flat.sigma).to_event(1))
        b = numpyro.sample("b", ndist.Normal(0.0, flat.bias_scale))
        numpyro.sample("y", ndist.Bernoulli(logits=phi @ w + b), obs=y)

    start = time.perf_counter()
    run = NMCMC(NNUTS(model), num_warmup=args.warmup, num_samples=args.draws,
                num_chains=args.chains, chain_method="vectorized", progress_bar=False)  # fmt: skip
    run.run(jax.random.PRNGKey(args.seed))
    seconds = time.perf_counter() - start
    s = run.get_samples(group_by_chain=True)
    ess = ess_over_coordinates(np.asarray(s["w"]), np.asarray(s["b"]))
    how = f"{args.chains} chains vectorised, {args.warmup} warm-up + {args.draws} draws, float64"
    return dict(method="NumPyro NUTS", seconds=seconds, ess=ess, how=how, rhat=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--nuts-warmup", type=int, default=15)
    parser.add_argument("--nuts-draws", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=500, help="500: the paper's scale")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--modes", default="factor,coordinate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    data = load_spheres(
        args.dim, args.n_train, 10, 1.0, 1.3, seed=0, dtype=torch.float64, device="cpu"
    )
    model = Flat()
    rows = [slice_row(data, model, mode, args) for mode in args.modes.split(",")]
    rows.append(pyro_nuts_row(data, model, args))
    numpyro_row = numpyro_nuts_row(data, args)
    print(f"{'method':<20} {'min ESS/s':>10} {'median ESS/s':>13} {'seconds':>8} {'R-hat max':>9}")
    for r in rows + ([numpyro_row] if numpyro_row else []):
        print(
            f"{r['method']:<20} {r['ess'].min() / r['seconds']:>10.3f} "
            f"{np.median(r['ess']) / r['seconds']:>13.3f} {r['seconds']:>8.1f} {r['rhat']:>9.3f}"
            f"   {r['how']}"
        )
    print("Pyro NUTS's rate is extrapolated from its few steps (see its row), not a full run.")
    if numpyro_row is None:
        print("NumPyro NUTS         skipped: numpyro is not installed (optional bench extra)")


if __name__ == "__main__":
    main()
