"""Batched bootstrap (1,000 MAP fits as one problem) against a loop of single L-BFGS fits.

Prints, in one run at the paper's scale (D = 500, N = 1,000): the time of the batched fit,
the time of a few single fits (Pyro potential + torch.optim.LBFGS, as ``inference=map``),
extrapolated to 1,000, the speed-up, and the largest difference between the two answers.
Goal: at least 20x faster than the loop and under 60 s.

    python bench/bootstrap.py [--members 1000] [--loop 5] [--dim 500] [--n-train 1000]
"""

from __future__ import annotations

import argparse
import time

import pyro
import torch

from bayes_spheres.data import load_spheres
from bayes_spheres.inference import bootstrap
from bayes_spheres.inference.map import map_estimate
from bayes_spheres.models import Flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--loop", type=int, default=5, help="single fits to time")
    parser.add_argument("--dim", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=1000)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    data = load_spheres(args.dim, args.n_train, 10)
    model = Flat()
    pyro.set_rng_seed(0)

    start = time.perf_counter()
    post = bootstrap.fit(model, data, members=args.members, seed=0)
    batched = time.perf_counter() - start

    counts = bootstrap.resample_counts(args.n_train, args.members, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    diffs = []
    for k in range(args.loop):
        idx = torch.repeat_interleave(torch.arange(args.n_train), counts[k].long())
        latents, _ = map_estimate(model, data.phi_train[idx], data.y_train[idx])
        diffs.append(float((latents["w"] - post.ensemble.w[k]).abs().max()))
    per_fit = (time.perf_counter() - start) / args.loop
    loop = per_fit * args.members

    print(f"threads {torch.get_num_threads()}, D = {args.dim}, N = {args.n_train}")
    print(f"{'method':<40} {'seconds':>10}")
    print(f"{'batched L-BFGS, ' + str(args.members) + ' fits':<40} {batched:>10.1f}")
    print(
        f"{'loop of single L-BFGS fits (extrapolated)':<40} {loop:>10.1f}"
        f"   ({per_fit:.3f} s per fit, {args.loop} timed)"
    )
    print(
        f"speed-up {loop / batched:.1f}x; goal >= 20x and batched < 60 s: "
        f"{'met' if loop / batched >= 20 and batched < 60 else 'NOT met'}"
    )
    print(f"batched info: {post.info['bootstrap']}")
    print(f"max |w_batched - w_single| over the timed fits: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
