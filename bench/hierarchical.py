"""Effective samples per second on the hierarchical model's posterior (``Hierarchical``:
``s ~ LogNormal(log 10, 1)``, ``w | s ~ N(0, s^2)``, ``b ~ N(0, 10^2)``, Bernoulli-logit
likelihood on the squared features). ``Slice(model)`` at the kernel's defaults takes the
conditional path (``bayes_spheres/kernels/conditional.py``: ``w, b`` given ``s`` on the flat
model's fast path, then ``s`` given ``z``, an orbit move of ``s`` with the bias, and ``s``
given ``w``); rows on the same posterior, chains, warm-up and draws:

- conditional: ``VectorizedMCMC(Slice(model))``, as the study's ``inference=mcmc`` runs it;
- conditional, every hyper step: the same with ``s | z`` and ``s | w`` at every update (by
  default each is dropped after warm-up where it moved ``s`` less than a tenth as far,
  squared, as the orbit move: ``kernels/gibbs.py``);
- conditional, no orbit move: without the orbit move of ``s`` (``kernels/scale_moves.py``),
  i.e. the path's moves before it (``s | z``, ``s | w``);
- generic: ``VectorizedMCMC(Slice(model, fast=False))``, Pyro's potential along Hamiltonian
  trajectories with an adapted diagonal mass matrix (the path hierarchical models took
  before the conditional one);
- Pyro NUTS: ``MCMC(NUTS(model))``.

For each row: wall and CPU time of this process (set-up and warm-up included), R-hat max,
bulk ESS of ``s``, and ESS of ``s`` and the minimum over every coordinate (``s``, ``w``,
``b``) per CPU second: on a machine shared with other work the CPU time is what the row cost
(the wall time also counts the others' turns). The last lines give the conditional row's
min-ESS per CPU second over each other row's. One torch thread.

Run::

    python bench/hierarchical.py [--dim 100] [--n 1000] [--noncentered] [--skip ...]

``--dim 500`` is the paper's scale (the generic row then takes about an hour: use
``--skip "generic;nuts"``; rows are separated by ``;``, since their names hold commas).

``--orbits RUN/posterior.nc`` instead measures, at two draws per chain of a fitted
hierarchical posterior (the study's data at its ``--dim`` and ``--n``), the conditional sd
of ``t`` along the orbits ``(log s + t, e^(-a t) z)`` for ``a`` in {0, 1/2, 1} (``s | z``,
between, ``s | w``) and along the orbit move's (``z_w`` fixed, ``b`` scaled by ``e^t``,
``kernels/scale_moves.py``), on a grid of ``t``, against the posterior sd of ``log s``.
"""

from __future__ import annotations

import argparse
import functools
import time
from unittest import mock

import arviz as az
import numpy as np
import pyro
import torch
import torch.nn.functional as F
from pyro.infer import MCMC, NUTS

from bayes_spheres.data import load_spheres
from bayes_spheres.kernels import Slice, VectorizedMCMC, paths
from bayes_spheres.kernels.gibbs import ConditionalSampler
from bayes_spheres.models import Hierarchical

SITES = ("s", "w", "b")
ROWS = {  # name -> (kernel factory, vectorised, ConditionalSampler's keywords)
    "conditional": (Slice, True, {}),
    "conditional, every hyper step": (Slice, True, {"keep_hyper_steps": True}),
    "conditional, no orbit move": (Slice, True, {"orbit_moves": False}),
    "generic": (functools.partial(Slice, fast=False), True, {}),
    "nuts": (NUTS, False, {}),
}


def run(row: str, model: Hierarchical, data, chains: int, warmup: int, draws: int) -> dict:
    make, vectorised, keywords = ROWS[row]
    pyro.set_rng_seed(0)
    start, cpu = time.perf_counter(), time.process_time()
    if vectorised:
        mcmc = VectorizedMCMC(make(model), draws, warmup, chains, disable_progbar=True)
    else:
        mcmc = MCMC(make(model), num_samples=draws, warmup_steps=warmup, num_chains=chains,
                    disable_progbar=True)  # fmt: skip
    sampler = functools.partial(ConditionalSampler, **keywords)
    with mock.patch.object(paths, "ConditionalSampler", sampler):
        mcmc.run(data.phi_train, data.y_train)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    samples = mcmc.get_samples(group_by_chain=True)
    if "w_decentered" in samples:  # the non-centred model: w = s z
        samples["w"] = samples["s"][..., None] * samples["w_decentered"]
    idata = az.from_dict(posterior={k: samples[k].numpy() for k in SITES})
    ess, rhat = az.ess(idata, var_names=list(SITES)), az.rhat(idata, var_names=list(SITES))

    def every(ds: object) -> np.ndarray:
        return np.concatenate([np.atleast_1d(ds[v].values).ravel() for v in SITES])

    diagnostics = mcmc.diagnostics()
    path = diagnostics.get("path", {}).get("chain 0", "-")
    return {
        "row": row, "path": path, "wall_s": wall, "cpu_s": cpu,
        "rhat_max": float(every(rhat).max()), "ess_s": float(ess["s"]),
        "ess_min": float(every(ess).min()),
        "hyper_steps": diagnostics.get("hyper_steps", {}).get("chain 0"),
    }  # fmt: skip


ORBITS = {  # name -> (a: exponent of z_w is -a, exponent of b)
    "a = 0 (s | z)": (0.0, 0.0),
    "a = 1/2": (0.5, 0.0),
    "a = 1 (s | w)": (1.0, 0.0),
    "orbit move: z_w fixed, b along": (0.0, 1.0),
}


def orbit_widths(path: str, data, model: Hierarchical) -> None:
    """The conditional sd of ``t`` along each of :data:`ORBITS` (module docstring)."""
    post = az.from_netcdf(path).posterior
    s, w, b = (torch.as_tensor(post[k].values) for k in ("s", "w", "b"))
    sign = 2.0 * data.y_train - 1.0
    dim, mean, sd = w.shape[-1], np.log(model.scale_median), model.scale_log_sd

    def log_density(u: torch.Tensor, z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        logits = (z * torch.exp(u)[:, None]) @ data.phi_train.T + bias[:, None]
        prior = -0.5 * ((u - mean) / sd) ** 2 - 0.5 * (z * z).sum(-1)
        prior = prior - 0.5 * (bias / model.bias_scale) ** 2
        return prior + F.logsigmoid(sign * logits).sum(-1)

    t = torch.linspace(-2.0, 2.0, 801)
    widths: dict[str, list[float]] = {name: [] for name in ORBITS}
    for chain in range(s.shape[0]):
        for draw in (s.shape[1] // 2, s.shape[1] - 1):
            u, z, bias = s[chain, draw].log(), w[chain, draw] / s[chain, draw], b[chain, draw]
            for name, (a, c_b) in ORBITS.items():
                moved = torch.exp(-a * t)[:, None] * z
                logp = log_density(u + t, moved, bias * torch.exp(c_b * t))
                p = torch.softmax(logp + (c_b - a * dim) * t, 0)  # the Jacobian
                centre = (p * t).sum()
                widths[name].append(float((p * (t - centre) ** 2).sum().sqrt()))
    print(f"posterior sd of log s: {float(s.log().std()):.3f} ({s.numel()} draws)")
    for name, values in widths.items():
        print(f"{name:32} conditional sd of t: median {np.median(values):.3f} "
              f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} draws)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000, help="training points")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=120)
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--noncentered", action="store_true")
    parser.add_argument("--skip", default="", help="rows separated by ';': " + "; ".join(ROWS))
    parser.add_argument("--orbits", metavar="POSTERIOR_NC", help="measure orbit widths")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    data = load_spheres(dim=args.dim, n_train=args.n, n_val=1, seed=0)
    model = Hierarchical(centered=not args.noncentered)
    if args.orbits:
        orbit_widths(args.orbits, data, model)
        return
    skip = {name.strip() for name in args.skip.split(";") if name.strip()}
    if skip - set(ROWS):
        parser.error(f"--skip {sorted(skip - set(ROWS))}: not rows; rows: {'; '.join(ROWS)}")
    rows = [name for name in ROWS if name not in skip]
    print(
        f"Hierarchical(centered={not args.noncentered}), D = {args.dim}, N = {args.n}, "
        f"{args.chains} chains x ({args.warmup} warm-up + {args.draws}) draws, 1 thread"
    )
    print(f"{'row':31} {'path':12} {'wall s':>7} {'CPU s':>7} {'R-hat':>6} {'ESS(s)':>6} "
          f"{'ESS(s)/CPU s':>12} {'min ESS/CPU s':>13}")  # fmt: skip
    run(rows[0], model, data, args.chains, 2, 4)  # untimed: imports and first compilations
    results = []
    for name in rows:
        r = run(name, model, data, args.chains, args.warmup, args.draws)
        results.append(r)
        print(
            f"{r['row']:31} {r['path']:12} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} "
            f"{r['rhat_max']:6.3f} {r['ess_s']:6.0f} {r['ess_s'] / r['cpu_s']:12.3f} "
            f"{r['ess_min'] / r['cpu_s']:13.3f}",
            flush=True,
        )
    for r in results:
        if r["hyper_steps"]:
            print(f"{r['row']}: s | z {r['hyper_steps']['given z']}; s | w "
                  f"{r['hyper_steps']['given G']}")  # fmt: skip
    ours = results[0]["ess_min"] / results[0]["cpu_s"]
    for r in results[1:]:
        ratio = ours / (r["ess_min"] / r["cpu_s"])
        print(f"{results[0]['row']} over {r['row']}: {ratio:.1f}x min ESS per CPU second")


if __name__ == "__main__":
    main()
