"""Milliseconds per SVI step at the paper's scale: Pyro's ``AutoMultivariateNormal`` (the
project's first SVI path), our guide on Pyro's engine, and the closed-form engine (the default
engine), for SVI and Hier. SVI.

Each configuration is one ``svi.fit`` run of ``--warmup + --steps`` steps (the paper's SGD
with momentum, minibatches of 100, the per-datum loss); ``svi.fit`` times the steps after
its first 50 (the jit compiles at step 0), wall clock and process CPU time. The CPU time is
the steadier number on a shared machine; the load average is printed beside it. "before"
is the project's first default: ``AutoMultivariateNormal``, Pyro's validation on, torch's threads as
they are (2 here); "1 thread" is ``svi.fit``'s ``threads=1`` default. The
last column is the 50,000 steps of one fit; the ratio is to the named baseline, Pyro's
engine with our guide and the jit (the default before the closed form).

    python bench/svi.py [--steps 300] [--warmup 50] [--dim 500] [--n-train 1000]
                        [--models flat,hier] [--threads N]
"""

from __future__ import annotations

import argparse
import os

import pyro
import torch

from bayes_spheres.data import load_spheres
from bayes_spheres.inference import svi
from bayes_spheres.models import Flat, Hierarchical
from bayes_spheres.progress import switch_bars

PAPER_STEPS = 50_000

# (label, model key, svi.fit settings, baseline?); "before" is the project's first default
HIER = {"guide": "direction_scale"}
PYRO = {"engine": "pyro"}
CONFIGS = [
    ("SVI, before: AutoMultivariateNormal, jit, valid. on, threads as is", "flat",
     {**PYRO, "pyro_mvn": True, "validate": True, "threads": None}, False),
    ("SVI, Pyro engine: fast guide, jit, valid. off, 1 thread", "flat", PYRO, True),
    ("SVI, Pyro engine: fast guide, eager, valid. off, 1 thread", "flat",
     {**PYRO, "jit": False}, False),
    ("SVI, now (default): closed-form gradients, 1 thread", "flat", {}, False),
    ("Hier. SVI, before: AutoMVN, eager, valid. on, threads as is", "hier",
     {**HIER, **PYRO, "pyro_mvn": True, "jit": False, "validate": True, "threads": None}, False),
    ("Hier. SVI, Pyro engine: fast guide, jit, 1 thread", "hier", {**HIER, **PYRO}, True),
    ("Hier. SVI, now (default): closed-form gradients, 1 thread", "hier", HIER, False),
]  # fmt: skip


def make_model(key: str):
    return Flat() if key == "flat" else Hierarchical(centered=False, learn_prior=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--dim", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--models", default="flat,hier")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args()
    switch_bars(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    svi.STEPS_BEFORE_TIMING = args.warmup
    data = load_spheres(args.dim, args.n_train, 10)
    wanted = set(args.models.split(","))

    print(
        f"D = {args.dim}, N = {args.n_train}, torch threads as is: {torch.get_num_threads()}, "
        f"{args.steps} timed steps after {args.warmup}; load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(f"{'configuration':<64} {'ms/step':>8} {'cpu ms':>8} {'50k steps':>10} {'vs base':>8}")
    baseline: dict[str, float] = {}
    for label, key, settings, is_baseline in CONFIGS:
        if key not in wanted:
            continue
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        post = svi.fit(
            make_model(key),
            data,
            members=10,
            num_steps=args.warmup + args.steps,
            **settings,
        )
        info = post.info["svi"]
        minutes = info["step_ms"] * PAPER_STEPS / 6e4
        if is_baseline:
            baseline[key] = info["step_cpu_ms"]
        ratio = baseline[key] / info["step_cpu_ms"] if key in baseline else float("nan")
        print(
            f"{label:<64} {info['step_ms']:>8.2f} {info['step_cpu_ms']:>8.2f} "
            f"{minutes:>7.1f} min {ratio:>7.2f}x  (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
