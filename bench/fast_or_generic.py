"""The fast path against the generic one on the published targets the fast path takes: one
chain of ``MCMC(Slice(model))`` and of ``MCMC(Slice(model, fast=False))`` per seed, the
same warm-up and draws, one torch thread, float64; min bulk ESS over the gym's quantities
(``bench/published.py::coordinates``) per second of the whole run, and each path's
leapfrog steps per update.

Run::

    python bench/fast_or_generic.py [--targets german_credit_logistic,item_response_theory]
        [--seeds 0,1,2] [--warmup 500] [--draws 1000]

Used for docs/published-targets.md, "Fast or generic".
"""

from __future__ import annotations

import argparse
import time
import warnings

import arviz as az
import numpy as np
import pyro
import torch
from published import coordinates
from pyro.infer import MCMC

from bayes_spheres.benchmarks import TARGETS, load
from bayes_spheres.kernels import Slice


def one_chain(name: str, fast: bool, seed: int, warmup: int, draws: int) -> dict:
    target = load(name)
    pyro.set_rng_seed(seed)
    kernel = Slice(target.model, fast=fast)
    start = time.perf_counter()
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, disable_progbar=True)
    mcmc.run()
    seconds = time.perf_counter() - start
    samples = {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    x, worst_z = coordinates(target, samples)
    ess = np.asarray(az.ess(az.convert_to_dataset({"x": x}), method="bulk")["x"].values)
    info = kernel.diagnostics()
    return {
        "path": info["path"], "form": info.get("form", info.get("potential")),
        "seconds": seconds, "min_ess": float(ess.min()), "rate": float(ess.min()) / seconds,
        "steps": info.get("leapfrogs_per_update"), "z": worst_z,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="german_credit_logistic,item_response_theory")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    names = args.targets.split(",")
    if set(names) - set(TARGETS):
        parser.error(f"--targets {sorted(set(names) - set(TARGETS))}: known are {list(TARGETS)}")
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"one chain, {args.warmup} warm-up + {args.draws}, 1 torch thread, float64")
    print(f"{'target':26} {'seed':>4} {'path':8} {'form':9} {'s':>7} {'min ESS':>8} "
          f"{'min ESS/s':>9} {'steps/update':>12} {'max |z|':>7}")  # fmt: skip
    for name in names:
        for seed in (int(s) for s in args.seeds.split(",")):
            for fast in (True, False):
                r = one_chain(name, fast, seed, args.warmup, args.draws)
                print(f"{name:26} {seed:4d} {r['path']:8} {r['form']!s:9} "
                      f"{r['seconds']:7.1f} {r['min_ess']:8.0f} {r['rate']:9.2f} "
                      f"{r['steps']:12.1f} {r['z']:7.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
