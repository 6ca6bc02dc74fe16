"""How much code one update runs: the lines of the kernel's own package executed by one
``Slice`` update after warm-up, beside the lines of Pyro's ``pyro/infer/mcmc`` and
``pyro/ops`` executed by one update of Pyro's ``HMC`` (10 leapfrog steps) on the same
posterior (the flat model on the study's data), and again over all of ``pyro/`` (HMC runs
the model through Pyro's handlers at every step; the fast path does not run it), with the
functions they belong to (their whole source, docstrings included). Tracing by
``sys.settrace``, ``line`` events only; a line run many times counts once.

Run::

    python scripts/update_lines.py [--dim 500] [--n 1000]

At the paper's scale (D = 500, N = 1,000) ``Slice`` takes the fast path's ``gram`` form; at
small sizes the ``products`` form (``kernels/fast/fast_cost.py``).
"""

from __future__ import annotations

import argparse
import collections
import inspect
import os
import sys
from collections.abc import Callable

import pyro
import torch
from pyro.infer import HMC

import bayes_spheres
from bayes_spheres.data import load_spheres
from bayes_spheres.kernels import Slice
from bayes_spheres.models import Flat

PYRO_PARTS = tuple(
    os.path.join(os.path.dirname(pyro.__file__), part) for part in ("infer/mcmc", "ops")
)
OURS = (os.path.dirname(bayes_spheres.__file__),)


def traced(update: Callable[[], object], roots: tuple[str, ...]) -> tuple[dict, dict]:
    """Run ``update`` once; the executed lines per file and the code objects called, in
    files under ``roots``."""
    lines: dict[str, set[int]] = collections.defaultdict(set)
    calls: dict[tuple[str, int], object] = {}

    def tracer(frame, event, arg):  # sys.settrace's signature
        name = frame.f_code.co_filename
        if not name.startswith(roots):
            return None
        if event == "call" and not frame.f_code.co_name.startswith("<"):
            calls[(name, frame.f_code.co_firstlineno)] = frame.f_code
        if event == "line":  # not "call", whose line is the def's
            lines[name].add(frame.f_lineno)
        return tracer

    sys.settrace(tracer)
    try:
        update()
    finally:
        sys.settrace(None)
    return lines, calls


def report(label: str, lines: dict, calls: dict, roots: tuple[str, ...]) -> None:
    span = sum(len(inspect.getsourcelines(code)[0]) for code in calls.values())
    executed = sum(len(v) for v in lines.values())
    print(f"{label}: {executed} lines executed in {len(lines)} files; "
          f"{len(calls)} functions, {span} lines with their docstrings")  # fmt: skip
    per_file = collections.Counter({f: len(v) for f, v in lines.items()})
    for name, count in per_file.most_common():
        short = next(name[len(os.path.dirname(r)) + 1 :] for r in roots if name.startswith(r))
        print(f"    {count:4d}  {short}")


def hmc() -> HMC:
    """Pyro's HMC with 10 leapfrog steps an update (a fixed step size: adapting it would
    change the number of steps, ``trajectory_length / step_size``)."""
    return HMC(Flat(), step_size=1e-3, num_steps=10, adapt_step_size=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=500)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    data = load_spheres(dim=args.dim, n_train=args.n, n_val=1, seed=0)
    every_pyro = (os.path.dirname(pyro.__file__),)
    for label, make, roots in (
        ("Slice (ours)", lambda: Slice(Flat()), OURS),
        ("Pyro HMC, 10 steps (pyro/infer/mcmc, pyro/ops)", hmc, PYRO_PARTS),
        ("Pyro HMC, 10 steps (all of pyro/, the model's run included)", hmc, every_pyro),
    ):
        kernel = make()
        pyro.set_rng_seed(0)
        kernel.setup(20, data.phi_train, data.y_train)
        params = kernel.initial_params
        for _ in range(25):  # past warm-up (20 updates)
            params = kernel.sample(params)
        lines, calls = traced(lambda k=kernel, p=params: k.sample(p), roots)
        extra = f", path {kernel.diagnostics()['path']}" if isinstance(kernel, Slice) else ""
        report(label + extra, lines, calls, roots)


if __name__ == "__main__":
    main()
