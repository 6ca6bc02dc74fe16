"""Effective samples per second on the flat model's posterior at the paper's scale
(D = 500, N = 1,000): the slice kernel in each direction mode, Pyro's NUTS and, when the
optional ``numpyro`` is installed (``pip install -e '.[bench]'``), NumPyro's NUTS. One table;
each row says how it was got; the last lines compare the default slice mode with the named
baselines (goal: at least 30x Pyro NUTS in minimum ESS per second, and ahead of NumPyro NUTS).

ESS is ArviZ's bulk ESS (Vehtari et al. 2021) per coordinate of ``w`` and ``b``; the minimum
and the median over coordinates are divided by the wall time of the whole run, warm-up
included, for every row. Pyro's NUTS runs one chain (``--nuts-warmup`` + ``--nuts-draws``
steps, adapted as Pyro adapts); its ESS from one short chain is rough, and said so.
Run: ``python bench/slice_vs_nuts.py [--modes hamiltonian,factor,coordinate]``.
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


# Each mode at its own settings: hamiltonian as measured in docs/mcmc.md's bench table (40
# full-length warm-up updates, thin 4; the config's later defaults adapt on 120 short ones and
# thin by 5), the univariate modes at the longest run that fits a few minutes (their earlier
# defaults).
MODE_SETTINGS = {
    "hamiltonian": dict(num_chains=8, warmup=40, thin=4, warmup_trajectory=None),
    "factor": dict(num_chains=8, warmup=100, thin=1),
    "coordinate": dict(num_chains=8, warmup=100, thin=1),
}


def slice_row(data, model, directions: str, args) -> dict:
    settings = MODE_SETTINGS[directions]
    chains, warmup, thin = settings["num_chains"], settings["warmup"], settings["thin"]
    start = time.perf_counter()
    post = mcmc.fit(
        model, data, members=chains * args.draws, seed=args.seed, directions=directions,
        progress=False, **settings,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    ess = ess_over_coordinates(post.samples["w"].numpy(), post.samples["b"].numpy())
    info = post.info["mcmc"]
    per = (
        f"{info['leapfrogs_per_update']:.0f} leapfrog steps/update"
        if directions == "hamiltonian"
        else f"{info['evaluations_per_update']:.1f} evals/update"
    )
    how = (
        f"{chains} chains x ({warmup} warm-up + {args.draws} x thin {thin}) updates, vectorised,"
        f" {info['path']} path, {info['scale_moves']} scale moves/update, {per}, "
        f"{info['seconds_per_sweep']:.2f} s/update"
    )
    return dict(method=f"slice ({directions})", seconds=seconds, ess=ess, how=how,
                rhat=post.info["convergence"]["rhat_max"])  # fmt: skip


def pyro_nuts_row(data, model, args) -> dict:
    pyro.set_rng_seed(args.seed)
    mcmc_run = MCMC(NUTS(model), num_samples=args.nuts_draws, warmup_steps=args.nuts_warmup,
                    num_chains=1, disable_progbar=True)  # fmt: skip
    t0 = time.perf_counter()
    mcmc_run.run(data.phi_train, data.y_train)
    seconds = time.perf_counter() - t0
    samples = mcmc_run.get_samples(group_by_chain=True)
    ess = ess_over_coordinates(samples["w"].numpy(), samples["b"].numpy())
    how = (
        f"1 chain, {args.nuts_warmup} warm-up + {args.nuts_draws} draws (Pyro's adaptation), "
        f"{seconds / (args.nuts_warmup + args.nuts_draws):.2f} s per step; ESS of one short "
        "chain is rough"
    )
    return dict(method="Pyro NUTS", seconds=seconds, ess=ess, how=how, rhat=float("nan"))


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
    run = NMCMC(NNUTS(model), num_warmup=args.numpyro_warmup, num_samples=args.numpyro_draws,
                num_chains=args.numpyro_chains, chain_method="sequential",
                progress_bar=False)  # fmt: skip
    run.run(jax.random.PRNGKey(args.seed))
    seconds = time.perf_counter() - start
    s = run.get_samples(group_by_chain=True)
    ess = ess_over_coordinates(np.asarray(s["w"]), np.asarray(s["b"]))
    rhat = float(np.nanmax(az.rhat(az.convert_to_dataset({"w": np.asarray(s["w"])}))["w"]))
    how = (
        f"{args.numpyro_chains} chains one after another, {args.numpyro_warmup} warm-up + "
        f"{args.numpyro_draws} draws each, float64, JIT compile included"
    )
    return dict(method="NumPyro NUTS", seconds=seconds, ess=ess, how=how, rhat=rhat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=125, help="kept draws per slice chain")
    parser.add_argument("--nuts-warmup", type=int, default=100)
    parser.add_argument("--nuts-draws", type=int, default=100)
    parser.add_argument("--numpyro-chains", type=int, default=4)
    parser.add_argument("--numpyro-warmup", type=int, default=300)
    parser.add_argument("--numpyro-draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=500, help="500: the paper's scale")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--modes", default="hamiltonian,factor,coordinate")
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
    if numpyro_row is None:
        print("NumPyro NUTS         skipped: numpyro is not installed (optional bench extra)")
    best = rows[0]
    rate = best["ess"].min() / best["seconds"]
    for base in rows[1:] + ([numpyro_row] if numpyro_row else []):
        ratio = rate / (base["ess"].min() / base["seconds"])
        print(f"{best['method']} / {base['method']}: {ratio:.1f}x in min ESS per second")


if __name__ == "__main__":
    main()
