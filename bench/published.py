"""Effective samples per second on published benchmark posteriors (Inference Gym targets,
:mod:`bayes_spheres.benchmarks`): ``MCMC(Slice(model))`` at the kernel's defaults against
Pyro's NUTS, NumPyro's NUTS and nutpie, every row with the same chains, warm-up and draws.

Per target, rows:

- ``MCMC(Slice(model))``: the call a user writes, nothing but the model given; the path the
  kernel took (``diagnostics()["path"]``) and its leapfrog steps per update in "how";
- ``VectorizedMCMC(Slice(model))``: the same kernel with every chain in one batch
  (``bayes_spheres/kernels/vectorized.py``): one update of all chains costs about one
  chain's where the model broadcasts (how ``inference=mcmc`` runs it);
- Pyro NUTS: ``MCMC(NUTS(model))`` at Pyro's defaults;
- Pyro NUTS, compiled: ``NUTS(model, jit_compile=True)``, the option a Pyro user turns on
  for speed (the slice kernel compiles Pyro's potential by default for one chain, so this
  row says how much of its lead is the compilation's);
- NumPyro NUTS: the model written again in NumPyro (``bench/published_numpyro.py``),
  chains one after another, float64, JIT compilation included;
- nutpie: the model written in PyMC (``bench/published_pymc.py``), compiled by
  ``nutpie.compile_pymc_model`` (numba) and sampled by nutpie's NUTS, compilation included.

ESS is ArviZ's bulk ESS of every coordinate of every quantity the gym reports (the targets'
``quantities``); min ESS/s divides the smallest by the wall time of the whole run (set-up,
warm-up, compilation). R-hat is the largest rank-normalised split R-hat. "max |z|" is the
largest ``|mean - ref| / sqrt(MCSE^2 + se_ref^2)`` against the gym's Stan reference: each row
shows that it sampled the published posterior. The Pyro rows run on one torch thread, float64.
Before sampling, NumPyro's and nutpie's log densities are checked against Pyro's at two points
of the unconstrained space: the difference between the points must agree (same posterior up
to the normalising constant, in the same coordinates).

The verdict per target: Slice / Pyro NUTS in min ESS/s and whether the goal, at least 2x Pyro
NUTS, is met; Slice / NumPyro and Slice / nutpie say how far it is from them. NumPyro, PyMC
and nutpie are optional (``pip install -e '.[bench]'``): a missing package skips its row.

Run (every target, 4 chains x (500 + 1000): long; best on an idle machine)::

    python bench/published.py [--targets eight_schools,radon_minnesota] [--chains 4]
        [--warmup 500] [--draws 1000] [--skip pyro-nuts,nutpie] [--seed 0]

``--results rows.jsonl`` makes a long run resumable: each row is appended to the file as it
is measured, and a later run with the same budget and seed reads the rows it finds there
instead of measuring them again (every row's figures come from one machine's run either
way; the file says when and at which commit each was measured: delete a method's rows
after changing it, for they are found by target, method, budget and seed). The summary is
printed from the file's rows and the new ones together (``bench/result_rows.py``).

``--quick`` (2 chains x (100 + 100), eight schools non-centred and German credit logistic
unless ``--targets`` says otherwise) is a smoke test of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import re
import time
import warnings
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_median
from pyro.infer.mcmc.util import initialize_model
from result_rows import store_row, stored_rows
from slice_vs_nuts import CHECK_RTOL, kernel_effort, row, same_posterior, version

from bayes_spheres.benchmarks import TARGETS, Target, load
from bayes_spheres.kernels import Slice, VectorizedMCMC

SLICE = "MCMC(Slice(model))"
VECTORIZED = "VectorizedMCMC(Slice(model))"
GOAL_RATIO = 2.0  # min ESS/s of MCMC(Slice(model)) over Pyro NUTS's
BASELINES = ("slice", "slice-vectorized", "pyro-nuts", "pyro-nuts-jit", "numpyro", "nutpie")
QUICK_TARGETS = ("eight_schools_noncentered", "german_credit_logistic")
PAPER = dict(chains=4, warmup=500, draws=1000)
QUICK = dict(chains=2, warmup=100, draws=100)

Point = dict[str, np.ndarray]


def coordinates(target: Target, samples: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """The gym's quantities of ``samples`` as one array [chain, draw, P] (reference order) and
    the largest ``|mean - ref| / sqrt(MCSE^2 + se_ref^2)`` over its coordinates."""
    import arviz as az

    quantities = target.quantities(samples)
    parts, worst = [], 0.0
    for name, ref in target.reference.items():
        x = np.asarray(quantities[name], dtype=np.float64)
        x = x.reshape(*x.shape[:2], -1)
        ess = np.asarray(az.ess(az.convert_to_dataset({"x": x}), method="bulk")["x"].values)
        mcse = x.std((0, 1)) / np.sqrt(ess)
        z = np.abs(x.mean((0, 1)) - ref.mean.ravel()) / np.hypot(mcse, ref.mean_se.ravel())
        worst = max(worst, float(np.nanmax(z)))
        parts.append(x)
    return np.concatenate(parts, -1), worst


def budget(args) -> str:
    return f"{args.chains} chains x ({args.warmup} warm-up + {args.draws})"


def pyro_row(target: Target, args, nuts: bool, vectorized: bool = False, jit: bool = False) -> dict:
    if nuts:
        kernel = NUTS(target.model, jit_compile=jit, ignore_jit_warnings=jit)
    else:
        kernel = Slice(target.model)
    runner = VectorizedMCMC if vectorized else MCMC
    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # on 2 cores Pyro draws the chains one after another and says so at every run
        warnings.filterwarnings("ignore", message="num_chains=.* more than available_cpu")
        mcmc = runner(kernel, num_samples=args.draws, warmup_steps=args.warmup,
                      num_chains=args.chains, disable_progbar=True)  # fmt: skip
        mcmc.run()
    seconds = time.perf_counter() - start
    samples = {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    x, z = coordinates(target, samples)
    if nuts:
        options = "jit_compile=True" if jit else "at Pyro's defaults"
        how = f"NUTS(model) {options}, {budget(args)}, 1 torch thread"
        return row("Pyro NUTS, compiled" if jit else "Pyro NUTS", seconds, x, how) | {"z": z}
    per_key = mcmc.diagnostics()  # {key: {"chain c": value}} under either runner
    chains = [f"chain {c}" for c in range(args.chains)]
    per_chain = [
        {k: v[c] for k, v in per_key.items() if isinstance(v, dict) and c in v} for c in chains
    ]
    diagnostics = per_chain[0]
    how = (
        f"{budget(args)}, {diagnostics.get('path')} path{kernel_effort(per_chain)}, 1 torch thread"
    )
    method = VECTORIZED if vectorized else SLICE
    return row(method, seconds, x, how) | {"z": z, "path": diagnostics.get("path")}


def pyro_reference(
    target: Target, seed: int
) -> tuple[Callable[[Point, float], float], list[tuple[Point, float]]]:
    """``-potential`` of the Pyro model over unconstrained values, and two points: the prior
    median's image and a random step from it (as ``(point, 0.0)``, the shape of
    ``slice_vs_nuts.same_posterior``'s points)."""
    pyro.set_rng_seed(seed)
    params, potential_fn, _, _ = initialize_model(target.model, init_strategy=init_to_median)
    first = {k: v.detach().numpy().copy() for k, v in params.items()}
    rng = np.random.default_rng(seed)
    second = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in first.items()}

    def log_density(point: Point, _: float = 0.0) -> float:
        values = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in point.items()}
        return -float(potential_fn(values))

    return log_density, [(first, 0.0), (second, 0.0)]


def numpyro_row(target: Target, args, reference, points) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array: float64 as the Pyro rows
    import jax.numpy as jnp
    import published_numpyro
    from numpyro.infer import MCMC as NMCMC
    from numpyro.infer import NUTS as NNUTS
    from numpyro.infer.util import potential_energy

    model = published_numpyro.model(target.name)

    def log_density(point: Point, _: float = 0.0) -> float:
        params = {k: jnp.asarray(v) for k, v in point.items()}
        return -float(potential_energy(model, (), {}, params))

    check = same_posterior("NumPyro", log_density, reference, points)
    mcmc = NMCMC(
        NNUTS(model),
        num_warmup=args.warmup,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    seconds = time.perf_counter() - start
    x, z = coordinates(target, {k: np.asarray(v) for k, v in samples.items()})
    how = (
        f"NUTS(model) at NumPyro's defaults, {budget(args)}, chains one after another, "
        "float64, JIT compile included"
    )
    return row("NumPyro NUTS", seconds, x, how) | {"z": z, "check": check}


def nutpie_row(target: Target, args, reference, points) -> dict:
    import nutpie
    import published_pymc

    start = time.perf_counter()
    pymc_model = published_pymc.model(target.name)
    compiled = nutpie.compile_pymc_model(pymc_model)
    compile_seconds = time.perf_counter() - start
    # nutpie's log density takes PyMC's value variables (unconstrained), raveled in order
    initial = pymc_model.initial_point()
    layout = [(v.name, np.shape(initial[v.name])) for v in pymc_model.value_vars]
    assert sum(int(np.prod(shape)) for _, shape in layout) == compiled.n_dim
    pyro_names = {v: k for k, v in published_pymc.RAW_NAMES.items()}

    def site(value_name: str) -> str:  # PyMC's "<name>_<transform>__" -> the Pyro site
        m = re.fullmatch(r"(.+)_(log|interval|logodds)__", value_name)
        name = m.group(1) if m else value_name
        return pyro_names.get(name, name)

    def log_density(point: Point, _: float = 0.0) -> float:
        flat = np.concatenate([np.ravel(point[site(name)]) for name, _ in layout])
        return float(compiled.logp_func(flat)[0])

    check = same_posterior("nutpie (PyMC model)", log_density, reference, points)
    start = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        chains=args.chains,
        tune=args.warmup,
        draws=args.draws,
        cores=args.nutpie_cores,
        seed=args.seed,
        progress_bar=False,
    )
    sample_seconds = time.perf_counter() - start
    samples = {k: trace.posterior[k].values for k in trace.posterior.data_vars}
    x, z = coordinates(target, samples)
    how = (
        f"nutpie.sample at its defaults, {budget(args)}, cores={args.nutpie_cores}; PyMC "
        f"model + numba compile {compile_seconds:.1f} s included, sampling {sample_seconds:.1f} s"
    )
    return row("nutpie NUTS", compile_seconds + sample_seconds, x, how) | {
        "z": z,
        "check": check,
    }


def run_target(target: Target, args, stored: dict[tuple, dict]) -> list[dict]:
    rows, notes = [], []

    def measure(baseline: str, make: Callable[[], dict]) -> None:
        key = (target.name, baseline, budget(args), args.seed)
        if key in stored:
            rows.append(stored[key] | {"ess": np.asarray(stored[key]["ess"])})
            when, commit = stored[key]["measured"], stored[key].get("commit", "?")
            notes.append(f"{baseline}: read from {args.results} (measured {when} at {commit})")
            return
        r = make()
        if args.results:
            store_row(args.results, r, target=target.name, baseline=baseline,
                      budget=budget(args), seed=args.seed)  # fmt: skip
        rows.append(r)

    pyro_rows = (
        ("slice", dict(nuts=False)),
        ("slice-vectorized", dict(nuts=False, vectorized=True)),
        ("pyro-nuts", dict(nuts=True)),
        ("pyro-nuts-jit", dict(nuts=True, jit=True)),
    )
    for baseline, options in pyro_rows:
        if baseline not in args.skip:
            measure(baseline, lambda options=options: pyro_row(target, args, **options))
    reference = functools.cache(lambda: pyro_reference(target, args.seed))
    for key, needs, make in (
        ("numpyro", ("numpyro", "jax"), numpyro_row),
        ("nutpie", ("nutpie", "pymc"), nutpie_row),
    ):
        if key in args.skip:
            continue
        missing = [p for p in needs if importlib.util.find_spec(p) is None]
        if missing:
            notes.append(
                f"{key}: skipped, {' and '.join(missing)} not installed "
                "(optional: pip install -e '.[bench]')"
            )
            continue
        measure(key, lambda make=make: make(target, args, *reference()))
    print_target(target, rows, notes)
    return rows


def print_target(target: Target, rows: list[dict], notes: list[str]) -> None:
    print(
        f"\n== {target.name} ({target.gym}, {target.dim}-D)"
        + (f": {target.notes}" if target.notes else "")
    )
    width = max([len(r["method"]) for r in rows] + [len("method")])
    print(
        f"{'method':<{width}} {'min ESS/s':>10} {'median ESS/s':>13} {'seconds':>9} "
        f"{'R-hat max':>9} {'max |z|':>8}  how"
    )
    for r in rows:
        rhat = "-" if np.isnan(r["rhat"]) else f"{r['rhat']:.3f}"
        print(
            f"{r['method']:<{width}} {r['min_rate']:>10.3f} {r['median_rate']:>13.3f} "
            f"{r['seconds']:>9.1f} {rhat:>9} {r['z']:>8.2f}  {r['how']}"
        )
    for line in notes + [r["check"] for r in rows if "check" in r]:
        print(f"  {line}")
    for line in verdict(rows):
        print(line)


def ratio(rows: list[dict], method: str, ours: str = SLICE) -> float | None:
    ours = next((r for r in rows if r["method"] == ours), None)
    base = next((r for r in rows if r["method"] == method), None)
    return None if ours is None or base is None else ours["min_rate"] / base["min_rate"]


def verdict(rows: list[dict]) -> list[str]:
    """Slice / Pyro NUTS and the goal; the distance to NumPyro and nutpie."""
    nuts = ratio(rows, "Pyro NUTS")
    if nuts is None:
        return [f"{SLICE} / Pyro NUTS: not judged (a row was skipped)"]
    met = "met" if nuts >= GOAL_RATIO else "not met"
    lines = [f"{SLICE} / Pyro NUTS = {nuts:.3g}x in min ESS/s: goal >= {GOAL_RATIO:g}x {met}"]
    for method in ("Pyro NUTS, compiled", "NumPyro NUTS", "nutpie NUTS"):
        r = ratio(rows, method)
        if r is not None:
            lines.append(f"{SLICE} / {method} = {r:.3g}x in min ESS/s")
    batched = ratio(rows, "Pyro NUTS", VECTORIZED)
    if batched is not None:
        lines.append(f"{VECTORIZED} / Pyro NUTS = {batched:.3g}x in min ESS/s")
    return lines


def print_summary(results: dict[str, tuple[int, list[dict]]]) -> None:
    methods = (SLICE, "Pyro NUTS", "NumPyro NUTS", "nutpie NUTS", VECTORIZED,
               "Pyro NUTS, compiled")  # fmt: skip
    print("\nsummary: min ESS/s (max |z| against the reference), ratios of min ESS/s")
    print(
        f"{'target':<30} {'dim':>4} "
        + " ".join(f"{m:>20}" for m in methods)
        + f" {'Slice/NUTS':>10} {'2x goal':>7} {'Slice/NumPyro':>13} {'Slice/nutpie':>12}"
        + f" {'Vectorized/NUTS':>15} {'Slice/NUTS jit':>14}"
    )

    def times(v: float | None, width: int) -> str:
        return f"{'-' if v is None else f'{v:.3g}x':>{width}}"

    for name, (dim, rows) in results.items():
        cells = []
        for m in methods:
            r = next((r for r in rows if r["method"] == m), None)
            cells.append(f"{r['min_rate']:>12.3f} ({r['z']:>5.1f})" if r else f"{'-':>20}")
        nuts, numpyro, nutpie = (ratio(rows, m) for m in methods[1:4])
        batched = ratio(rows, "Pyro NUTS", VECTORIZED)
        compiled = ratio(rows, "Pyro NUTS, compiled")
        goal = "-" if nuts is None else ("met" if nuts >= GOAL_RATIO else "no")
        print(
            f"{name:<30} {dim:>4} " + " ".join(cells) + f" {times(nuts, 10)} {goal:>7} "
            f"{times(numpyro, 13)} {times(nutpie, 12)} {times(batched, 15)} "
            f"{times(compiled, 14)}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="", help=f"comma-separated: {','.join(TARGETS)}")
    parser.add_argument("--quick", action="store_true", help="smoke test: short runs")
    parser.add_argument("--seed", type=int, default=0)
    for name in ("chains", "warmup", "draws"):
        parser.add_argument(
            f"--{name}", type=int, help=f"every row's (default {PAPER[name]}, quick {QUICK[name]})"
        )
    parser.add_argument("--skip", default="", help=f"rows to leave out: {','.join(BASELINES)}")
    parser.add_argument("--nutpie-cores", type=int, default=2, help="nutpie chains at once")
    parser.add_argument(
        "--results", default="", help="a .jsonl file: rows are appended, and read back on a rerun"
    )
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else PAPER).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = [t for t in args.targets.split(",") if t] or list(
        QUICK_TARGETS if args.quick else TARGETS
    )
    if unknown := [t for t in names if t not in TARGETS]:
        parser.error(f"--targets {','.join(unknown)}: not one of {','.join(TARGETS)}")
    args.targets = names
    args.skip = {s for s in args.skip.split(",") if s}
    if unknown := args.skip - set(BASELINES):
        parser.error(f"--skip {','.join(sorted(unknown))}: not one of {','.join(BASELINES)}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # one chain's tensors are small; a second thread only waits
    packages = ("torch", "pyro-ppl", "numpyro", "jax", "pymc", "nutpie", "arviz", "inference-gym")
    print(
        f"published targets {','.join(args.targets)}; {budget(args)} for every row; seed "
        f"{args.seed}{' (--quick: a smoke test)' if args.quick else ''}; load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
        + ", ".join(f"{p} {version(p)}" for p in packages)
        + f"; same-posterior check rtol {CHECK_RTOL:g}",
        flush=True,
    )
    results, stored = {}, stored_rows(args.results)
    for name in args.targets:
        target = load(name)
        results[name] = (target.dim, run_target(target, args, stored))
    print_summary(results)


if __name__ == "__main__":
    main()
