"""Interweaving on the generic path (``bayes_spheres/kernels/interweaving.py``) against the
trajectory alone: ``MCMC(Slice(model, interweave=...))`` on Inference Gym targets with centred
hierarchical sites, the same chains, warm-up, draws and seed for both rows.

Prints per target and row the CPU seconds, the leapfrog steps per update, the interweaving
step's evaluations per update, each reported quantity's least bulk ESS (ArviZ) and its largest
``|mean - ref| / sd_ref`` against the gym's reference, and the least ESS per CPU second with
the ratio on / off. One torch thread, float64.

    python bench/interweaving.py [--targets eight_schools,radon_minnesota] [--chains 1]
        [--warmup 300] [--draws 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import MCMC

from bayes_spheres.benchmarks import load
from bayes_spheres.kernels import Slice


def least_ess(x: np.ndarray) -> float:
    """The least bulk ESS over the coordinates of draws [chain, draw, ...]."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return min(float(az.ess(x[..., j])) for j in range(x.shape[2]))


def run(name: str, interweave: bool, chains: int, warmup: int, draws: int, seed: int) -> dict:
    target = load(name)
    pyro.set_rng_seed(seed)
    kernel = Slice(target.model, interweave=interweave)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="num_chains=.* more than available_cpu")
        warnings.filterwarnings("ignore", message="Shape validation failed")
        mcmc = MCMC(kernel, warmup_steps=warmup, num_samples=draws, num_chains=chains,
                    disable_progbar=True)  # fmt: skip
        start = time.process_time()
        mcmc.run()
        seconds = time.process_time() - start
    samples = {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    quantities = target.quantities(samples)
    ess = {k: least_ess(np.asarray(v)) for k, v in quantities.items()}
    off = {
        k: float(np.max(np.abs(np.asarray(v).mean((0, 1)) - ref.mean) / ref.sd))
        for k, v in quantities.items()
        for ref in [target.reference[k]]
    }
    info = kernel.diagnostics()
    return {
        "seconds": seconds,
        "steps": info.get("leapfrogs_per_update"),
        "evaluations": info.get("interweaving_evaluations_per_update", 0.0),
        "ess": ess,
        "off": off,
        "interweaving": info.get("interweaving"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="eight_schools,radon_minnesota")
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    for name in args.targets.split(","):
        rows = {}
        for interweave in (False, True):
            r = run(name, interweave, args.chains, args.warmup, args.draws, args.seed)
            rows[interweave] = r
            least = min(r["ess"], key=r["ess"].get)
            print(
                f"{name} interweave={interweave}: {r['seconds']:.1f} CPU s, "
                f"{r['steps']} steps/update, {r['evaluations']} interweaving evaluations/update, "
                f"least ESS {r['ess'][least]:.0f} ({least}), "
                f"max |mean - ref| / sd_ref {max(r['off'].values()):.3f}; {r['interweaving']}",
                flush=True,
            )
            print("   least ESS by quantity:", {k: round(v) for k, v in r["ess"].items()})
        per_second = {k: min(r["ess"].values()) / r["seconds"] for k, r in rows.items()}
        print(
            f"{name}: least ESS per CPU s {per_second[False]:.2f} off, {per_second[True]:.2f} "
            f"on: {per_second[True] / per_second[False]:.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
