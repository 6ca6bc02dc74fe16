"""Effective samples per second on the hierarchical model's posterior (``Hierarchical``:
``s ~ LogNormal(log 10, 1)``, ``w, b | s ~ N(0, s^2)``, Bernoulli-logit likelihood on the
squared features): ``MCMC(Slice(model))`` at the kernel's defaults, which takes the
conditional path (``bayes_spheres/kernels/conditional.py``: ``w, b`` given ``s`` on the flat
model's fast path, ``s`` by its own slice updates), against two named baselines on the same
posterior and the same chains, warm-up and draws:

- generic: ``MCMC(Slice(model, fast=False))``, Pyro's potential along Hamiltonian
  trajectories with an adapted diagonal mass matrix (the path hierarchical models took
  before the conditional one);
- Pyro NUTS: ``MCMC(NUTS(model))`` (``--skip nuts`` leaves it out).

For each row: wall time (set-up and warm-up included), R-hat max, and bulk ESS of ``s``
and the minimum over every coordinate (``s``, ``w``, ``b``) per second of wall time. The
last lines give the conditional path's min-ESS/s over each baseline's. One torch thread.

Run::

    python bench/hierarchical.py [--dim 100] [--n 1000] [--centered|--noncentered]

``--dim 500`` is the paper's scale (the generic row then takes about an hour: use
``--skip generic,nuts`` for the conditional row alone).
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
from bayes_spheres.kernels import Slice
from bayes_spheres.models import Hierarchical


def run(name: str, kernel, data, chains: int, warmup: int, draws: int) -> dict:
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                disable_progbar=True)  # fmt: skip
    mcmc.run(data.phi_train, data.y_train)
    wall = time.perf_counter() - start
    idata = az.from_dict(
        posterior={k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    )
    ess = az.ess(idata, var_names=["s", "w", "b"])
    ess_all = np.concatenate([np.atleast_1d(ess[v].values).ravel() for v in ("s", "w", "b")])
    rhat = az.rhat(idata, var_names=["s", "w", "b"])
    rhat_all = np.concatenate([np.atleast_1d(rhat[v].values).ravel() for v in ("s", "w", "b")])
    diagnostics = mcmc.diagnostics()
    path = diagnostics.get("path", {}).get("chain 0", "-")
    return {
        "row": name, "path": path, "wall_s": wall, "rhat_max": float(rhat_all.max()),
        "ess_s": float(ess["s"]), "ess_min": float(ess_all.min()),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000, help="training points")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=120)
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--noncentered", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated: generic, nuts")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    data = load_spheres(dim=args.dim, n_train=args.n, n_val=1, seed=0)
    model = Hierarchical(centered=not args.noncentered)
    skip = set(filter(None, args.skip.split(",")))
    rows = [("MCMC(Slice(model))", Slice(model))]
    if "generic" not in skip:
        rows.append(("generic: Slice(model, fast=False)", Slice(model, fast=False)))
    if "nuts" not in skip:
        rows.append(("Pyro NUTS", NUTS(model)))
    print(
        f"Hierarchical(centered={not args.noncentered}), D = {args.dim}, N = {args.n}, "
        f"{args.chains} chains x ({args.warmup} warm-up + {args.draws}) draws, 1 thread"
    )
    print(f"{'row':36} {'path':12} {'wall s':>8} {'R-hat':>7} {'ESS(s)/s':>9} {'min ESS/s':>9}")
    results = []
    for name, kernel in rows:
        r = run(name, kernel, data, args.chains, args.warmup, args.draws)
        results.append(r)
        print(
            f"{r['row']:36} {r['path']:12} {r['wall_s']:8.1f} {r['rhat_max']:7.3f} "
            f"{r['ess_s'] / r['wall_s']:9.3f} {r['ess_min'] / r['wall_s']:9.3f}",
            flush=True,
        )
    ours = results[0]["ess_min"] / results[0]["wall_s"]
    for r in results[1:]:
        ratio = ours / (r["ess_min"] / r["wall_s"])
        print(f"conditional path over {r['row']}: {ratio:.1f}x min ESS/s")


if __name__ == "__main__":
    main()
