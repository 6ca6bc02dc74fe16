"""Effective samples per second on the flat model's posterior (``Flat``: ``w ~ N(0, 10^2 I)``,
``b ~ N(0, 10^2)``, Bernoulli-logit likelihood on the squared features) at the paper's scale,
D = 500 and N = 1,000 training points: ``MCMC(Slice(model))``, the call a user writes, at the
kernel's defaults, against three NUTS implementations on the same posterior.

Rows, in one table:

- ``MCMC(Slice(model))``: Pyro's ``MCMC`` over ``bayes_spheres.kernels.Slice`` with nothing
  but the model given (Pyro runs the chains in worker processes or one after another);
  optionally one more row per direction mode in ``--modes`` (``Slice(model, directions=...)``);
- ``VectorizedMCMC(Slice(model))``: the same kernel with every chain in one batch
  (``bayes_spheres/kernels/vectorized.py``);
- Pyro NUTS: ``MCMC(NUTS(model))``, a real but short run (one chain by default: it is slow);
- NumPyro NUTS: the same model written in NumPyro, chains one after another
  (``chain_method="sequential"``), float64, JIT compilation included;
- nutpie: the same model written in PyMC, compiled by ``nutpie.compile_pymc_model`` (numba)
  and sampled by nutpie's Rust NUTS, compilation included.

ESS is ArviZ's bulk ESS (Vehtari et al. 2021) of every coordinate of ``w`` and ``b`` (501 at
the paper's scale); the minimum and the median over coordinates are divided by the wall time
of the whole run (warm-up, compilation and set-up included) for every row. R-hat is ArviZ's
rank-normalised split R-hat, the maximum over the coordinates ("-" for a single chain).
The Pyro rows run on one torch thread: one chain works on small tensors, and a second thread
only spin-waits on the 2-core machine the study runs on. Before sampling, each baseline's
log density is checked against the Pyro model's: the difference of the log joint between two
random points must agree (so the posteriors are the same up to the normalising constant).

A second table runs the generic path, on models the fast path does not cover: Pyro's eight
schools example (non-centred) and a 100-D Gaussian with every correlation 0.9, each by
``MCMC(Slice(model))`` and ``MCMC(NUTS(model))`` at the same chains, warm-up and draws (and
the Gaussian once more with a dense mass matrix for both: ``Slice(model, mass="dense")``,
``NUTS(model, full_mass=True)``), and judges the goal there: at least Pyro NUTS's min ESS/s
(``--skip generic`` leaves it out).

NumPyro, PyMC and nutpie are optional (``pip install -e '.[bench]'``): a row whose package is
missing is skipped, and said so. The last lines compare each slice row (``MCMC(Slice(model))``,
``VectorizedMCMC(Slice(model))``) with every other row (ratio of minimum ESS per second) and
judge the goal for each: at least 30 min-ESS/s and at least 4x nutpie.

Run (paper scale; takes well over ten minutes, best on an otherwise idle machine)::

    python bench/slice_vs_nuts.py [--seed 0] [--modes factor,coordinate] [--skip pyro-nuts]

and ``python bench/slice_vs_nuts.py --quick`` (D = 50, N = 200, short runs) as a smoke test of
the script (about a minute with hamiltonian directions, a few with factor ones); its numbers
say nothing about the paper's scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import os
import time
import warnings
from collections.abc import Callable

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS

from bayes_spheres.data import SphereData, load_spheres
from bayes_spheres.kernels import Slice, VectorizedMCMC
from bayes_spheres.models import Flat

# Run lengths: the paper's scale, and --quick (a smoke test). An explicit flag wins over both.
PAPER = dict(
    dim=500, n_train=1000,
    slice_chains=8, slice_warmup=120, slice_draws=625,  # the study's MCMC rows (no thinning)
    nuts_warmup=100, nuts_draws=100,
    numpyro_chains=4, numpyro_warmup=300, numpyro_draws=500,
    nutpie_chains=4, nutpie_tune=300, nutpie_draws=500,
    generic_chains=4, generic_warmup=300, generic_draws=500,
)  # fmt: skip
QUICK = dict(
    dim=50, n_train=200,
    slice_chains=4, slice_warmup=100, slice_draws=100,
    nuts_warmup=30, nuts_draws=30,
    numpyro_chains=4, numpyro_warmup=100, numpyro_draws=100,
    nutpie_chains=4, nutpie_tune=100, nutpie_draws=100,
    generic_chains=2, generic_warmup=100, generic_draws=100,
)  # fmt: skip
BASELINES = ("slice", "slice-vectorized", "pyro-nuts", "numpyro", "nutpie", "generic")
SLICE = "MCMC(Slice(model))"
VECTORIZED = "VectorizedMCMC(Slice(model))"
GOAL_RATE, GOAL_RATIO = 30.0, 4.0
CHECK_RTOL = 1e-9  # relative agreement of log-density differences (float64 everywhere)

LogDensity = Callable[[np.ndarray, float], float]


# --- shared pieces ---------------------------------------------------------------------------


def coordinates(w: np.ndarray, b: np.ndarray, bias: bool) -> np.ndarray:
    """Draws ``w`` [chain, draw, D] and ``b`` [chain, draw] as one array [chain, draw, P]."""
    w = np.asarray(w, dtype=np.float64)
    return np.concatenate([w, np.asarray(b, dtype=np.float64)[..., None]], -1) if bias else w


def summarise(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Bulk ESS of every coordinate of ``x`` [chain, draw, P] and the largest R-hat (NaN for one
    chain)."""
    ds = az.convert_to_dataset({"x": x})
    ess = np.asarray(az.ess(ds, method="bulk")["x"].values)
    if x.shape[0] < 2:  # ArviZ's R-hat needs two chains
        return ess, float("nan")
    rhat = np.asarray(az.rhat(ds)["x"].values)
    return ess, float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan")


def row(method: str, seconds: float, x: np.ndarray, how: str) -> dict:
    ess, rhat = summarise(x)
    chains, draws = x.shape[:2]
    return dict(
        method=method,
        seconds=seconds,
        ess=ess,
        rhat=rhat,
        shape=f"{chains} x {draws}",
        how=how,
        min_rate=ess.min() / seconds,
        median_rate=np.median(ess) / seconds,
    )


def pyro_log_density(data: SphereData, flat: Flat) -> LogDensity:
    """The reference: log joint of the Pyro model ``flat`` at ``(w, b)``."""
    phi, y = data.phi_train, data.y_train

    def log_density(w: np.ndarray, b: float) -> float:
        values = {"w": torch.as_tensor(w, dtype=phi.dtype)}
        if flat.bias:
            values["b"] = torch.tensor(b, dtype=phi.dtype)
        tr = poutine.trace(poutine.condition(flat, data=values)).get_trace(phi, y)
        return float(tr.log_prob_sum())

    return log_density


def check_points(dim: int, seed: int) -> list[tuple[np.ndarray, float]]:
    """Two random points ``(w, b)``, at a scale where the likelihood matters."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(0.0, 0.3, dim), float(rng.normal(0.0, 1.0))) for _ in range(2)]


def same_posterior(
    name: str,
    log_density: LogDensity,
    reference: LogDensity,
    points: list[tuple[np.ndarray, float]],
) -> str:
    """Assert that ``log_density`` and ``reference`` differ by a constant; the line to print."""
    (w1, b1), (w2, b2) = points
    ref = reference(w1, b1) - reference(w2, b2)
    got = log_density(w1, b1) - log_density(w2, b2)
    gap = abs(got - ref)
    if not gap <= CHECK_RTOL * (1.0 + abs(ref)):
        raise AssertionError(
            f"{name} is not the Pyro model's posterior: log p(θ1) - log p(θ2) = {got!r} "
            f"against Pyro's {ref!r}"
        )
    return f"{name}: log p(θ1) - log p(θ2) = {got:.9f} (Pyro: {ref:.9f}, |gap| {gap:.1e})"


# --- rows --------------------------------------------------------------------------------------


EIGHT_SCHOOLS_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
EIGHT_SCHOOLS_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def eight_schools() -> None:
    """Pyro's examples/eight_schools model (non-centred), conditioned on its data."""
    eta = pyro.sample("eta", dist.Normal(torch.zeros(8), torch.ones(8)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))
    sigma, y = torch.tensor(EIGHT_SCHOOLS_SIGMA), torch.tensor(EIGHT_SCHOOLS_Y)
    pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def correlated_gaussian(dim: int = 100) -> Callable[[], None]:
    """``x ~ N(0, 0.1 I + 0.9 11')``: unit variances, every correlation 0.9 (condition number
    901)."""
    cov = 0.1 * torch.eye(dim) + 0.9 * torch.ones(dim, dim)

    def model() -> None:
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(dim), cov))

    return model


def generic_rows(args) -> list[dict]:
    """The generic path (models the fast path does not cover) against Pyro's NUTS at the
    same budget: both through ``MCMC(kernel(model))``, the same chains, warm-up and draws."""
    gaussian = correlated_gaussian()
    cases = [
        ("eight schools", Slice(eight_schools), NUTS(eight_schools)),
        ("100-D Gaussian, rho 0.9", Slice(gaussian), NUTS(gaussian)),
        ("100-D Gaussian, rho 0.9, dense mass", Slice(gaussian, mass="dense"),
         NUTS(gaussian, full_mass=True)),
    ]  # fmt: skip
    warmup, draws = args.generic_warmup, args.generic_draws
    rows = []
    for case, slice_kernel, nuts_kernel in cases:
        for name, kernel in ((SLICE, slice_kernel), ("Pyro NUTS", nuts_kernel)):
            pyro.set_rng_seed(args.seed)
            run = MCMC(kernel, num_samples=draws, warmup_steps=warmup,
                       num_chains=args.generic_chains, disable_progbar=True)  # fmt: skip
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="num_chains=.* more than available_cpu")
                run.run()
            seconds = time.perf_counter() - start
            samples = run.get_samples(group_by_chain=True)
            x = np.concatenate(
                [v.reshape(*v.shape[:2], -1).double().numpy() for v in samples.values()], -1
            )
            path = getattr(kernel, "path", "")
            potential = getattr(kernel, "potential", None)
            how = (
                f"{args.generic_chains} chains x ({warmup} warm-up + {draws})"
                + (f", {path} path" if path else "")
                + (f", potential {potential}" if potential else "")
            )
            rows.append(row(name, seconds, x, how) | {"case": case})
    return rows


def slice_row(
    data: SphereData, flat: Flat, args, directions: str | None = None, vectorized: bool = False
) -> dict:
    """``MCMC(Slice(model))`` as a user writes it (``vectorized``: every chain in one batch,
    ``VectorizedMCMC``); ``directions`` given only for --modes rows."""
    kernel = Slice(flat) if directions is None else Slice(flat, directions=directions)
    method = SLICE if directions is None else f"MCMC(Slice(model, directions={directions!r}))"
    method = VECTORIZED if vectorized else method
    runner = VectorizedMCMC if vectorized else MCMC
    # What the kernel was built with (its defaults, as they are now): read, not chosen here.
    config = ", ".join(
        f"{f.name}={getattr(kernel.settings, f.name)}"
        for f in dataclasses.fields(kernel.settings)
        if isinstance(getattr(kernel.settings, f.name), str | int | float)
    )
    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # On 2 cores Pyro keeps one for the main process and draws the chains one after
        # another (the "how" column says which it did); its warning says so at every run.
        warnings.filterwarnings("ignore", message="num_chains=.* more than available_cpu")
        run = runner(
            kernel,
            num_samples=args.slice_draws,
            warmup_steps=args.slice_warmup,
            num_chains=args.slice_chains,
            disable_progbar=True,
        )
        run.run(data.phi_train, data.y_train)
    seconds = time.perf_counter() - start
    s = run.get_samples(group_by_chain=True)
    x = coordinates(s["w"].numpy(), s["b"].numpy(), flat.bias)
    # Pyro's rule: worker processes where num_chains <= max(cpu_count - 1, 1)
    parallel = 1 < args.slice_chains <= max((os.cpu_count() or 1) - 1, 1)
    regime = "in parallel processes" if parallel else "one after another"
    regime = "in one batch" if vectorized else f"{regime} (Pyro's choice)"
    per_key = run.diagnostics()  # {key: {"chain c": value}} under either runner
    per = kernel_effort(
        [
            {k: v[c] for k, v in per_key.items() if isinstance(v, dict) and c in v}
            for c in (f"chain {c}" for c in range(args.slice_chains))
        ]
    )
    how = (
        f"{args.slice_chains} chains x ({args.slice_warmup} warm-up + {args.slice_draws}) "
        f"sweeps, chains {regime}, 1 torch thread, "
        f"{seconds / (args.slice_chains * (args.slice_warmup + args.slice_draws)):.3f} s/sweep"
        f"{per}; kernel: {config}"
    )
    return row(method, seconds, x, how)


def kernel_effort(diagnostics: list[dict]) -> str:
    """Work per update from the kernel's per-chain diagnostics, as far as it reports it."""
    for key, label in (
        ("leapfrogs_per_update", "leapfrog steps/update"),
        ("evaluations_per_update", "evals/update"),
    ):
        values = [float(d[key]) for d in diagnostics if key in d]
        if values:
            return f", {np.mean(values):.1f} {label}"
    return ""


def pyro_nuts_row(data: SphereData, flat: Flat, args) -> dict:
    pyro.set_rng_seed(args.seed)
    run = MCMC(
        NUTS(flat),
        num_samples=args.nuts_draws,
        warmup_steps=args.nuts_warmup,
        num_chains=1,
        disable_progbar=True,
    )
    start = time.perf_counter()
    run.run(data.phi_train, data.y_train)
    seconds = time.perf_counter() - start
    s = run.get_samples(group_by_chain=True)
    x = coordinates(s["w"].numpy(), s["b"].numpy(), flat.bias)
    how = (
        f"NUTS(model) at Pyro's defaults (diagonal mass matrix, step size adapted), 1 chain, "
        f"{args.nuts_warmup} warm-up + {args.nuts_draws} draws, 1 torch thread, "
        f"{seconds / (args.nuts_warmup + args.nuts_draws):.2f} s/step; the ESS of one short "
        "chain is rough"
    )
    return row("Pyro NUTS", seconds, x, how)


def numpyro_row(data: SphereData, flat: Flat, args, reference: LogDensity, points) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array: float64 as the Pyro rows
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.infer import MCMC as NMCMC
    from numpyro.infer import NUTS as NNUTS
    from numpyro.infer.util import log_density

    phi = jnp.asarray(data.phi_train.numpy())
    y = jnp.asarray(data.y_train.numpy())

    def model():
        w = numpyro.sample("w", ndist.Normal(jnp.zeros(phi.shape[1]), flat.sigma).to_event(1))
        b = numpyro.sample("b", ndist.Normal(0.0, flat.bias_scale)) if flat.bias else 0.0
        numpyro.sample("y", ndist.Bernoulli(logits=phi @ w + b).to_event(1), obs=y)

    def numpyro_log_density(w: np.ndarray, b: float) -> float:
        params = {"w": jnp.asarray(w), **({"b": jnp.asarray(b)} if flat.bias else {})}
        return float(log_density(model, (), {}, params)[0])

    check = same_posterior("NumPyro", numpyro_log_density, reference, points)
    run = NMCMC(
        NNUTS(model),
        num_warmup=args.numpyro_warmup,
        num_samples=args.numpyro_draws,
        num_chains=args.numpyro_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    run.run(jax.random.PRNGKey(args.seed))
    s = run.get_samples(group_by_chain=True)
    jax.block_until_ready(s)
    seconds = time.perf_counter() - start
    b = s["b"] if flat.bias else np.zeros(s["w"].shape[:2])
    x = coordinates(np.asarray(s["w"]), np.asarray(b), flat.bias)
    how = (
        f"NUTS(model) at NumPyro's defaults, {args.numpyro_chains} chains one after another, "
        f"{args.numpyro_warmup} warm-up + {args.numpyro_draws} draws each, float64, XLA's own "
        "threads, JIT compile included"
    )
    return {**row("NumPyro NUTS", seconds, x, how), "check": check}


def nutpie_row(data: SphereData, flat: Flat, args, reference: LogDensity, points) -> dict:
    import nutpie
    import pymc as pm

    phi = data.phi_train.numpy()
    y = data.y_train.numpy().astype(np.int64)
    start = time.perf_counter()
    with pm.Model() as model:
        w = pm.Normal("w", 0.0, flat.sigma, shape=phi.shape[1])
        b = pm.Normal("b", 0.0, flat.bias_scale) if flat.bias else 0.0
        pm.Bernoulli("y", logit_p=pm.math.dot(phi, w) + b, observed=y)
    compiled = nutpie.compile_pymc_model(model)
    compile_seconds = time.perf_counter() - start

    # The check evaluates the very function nutpie samples: its flat vector in its own order.
    names, slices, _ = compiled.shape_info

    def nutpie_log_density(w: np.ndarray, b: float) -> float:
        flat_x = np.zeros(compiled.n_dim)
        values = {"w": w, "b": np.asarray([b])}
        for name, where in zip(names, slices, strict=True):
            flat_x[where] = values[name]
        return float(compiled.logp_func(flat_x)[0])

    check = same_posterior("nutpie (PyMC model)", nutpie_log_density, reference, points)
    start = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        chains=args.nutpie_chains,
        tune=args.nutpie_tune,
        draws=args.nutpie_draws,
        cores=args.nutpie_cores,
        seed=args.seed,
        progress_bar=False,
    )
    sample_seconds = time.perf_counter() - start
    post = trace.posterior
    b_draws = post["b"].values if flat.bias else np.zeros(post["w"].shape[:2])
    x = coordinates(post["w"].values, b_draws, flat.bias)
    how = (
        f"nutpie.sample at its defaults (mass matrix from draws and gradients), "
        f"{args.nutpie_chains} chains, {args.nutpie_tune} tune + {args.nutpie_draws} draws, "
        f"cores={args.nutpie_cores}; PyMC model + numba compile {compile_seconds:.1f} s "
        f"included, sampling {sample_seconds:.1f} s"
    )
    return {**row("nutpie NUTS", compile_seconds + sample_seconds, x, how), "check": check}


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: D = 50, N = 200, short runs (about a minute)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every sampler")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the training set")
    parser.add_argument("--dim", type=int, help="D (500: the paper's)")
    parser.add_argument("--n-train", type=int, help="N (1,000: the paper's)")
    parser.add_argument(
        "--modes",
        default="",
        help="extra Slice(model, directions=...) rows, e.g. factor,coordinate "
        "(slow at the paper's scale: hundreds of potential calls a sweep)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"rows to leave out: {','.join(BASELINES)} (slice: {SLICE}; slice-vectorized: "
        f"{VECTORIZED}; --modes rows stay)",
    )
    for name, what in [
        ("slice-chains", "chains of every Slice row"),
        ("slice-warmup", "warm-up sweeps"),
        ("slice-draws", "kept sweeps per chain"),
        ("nuts-warmup", "Pyro NUTS warm-up steps (1 chain)"),
        ("nuts-draws", "Pyro NUTS draws"),
        ("numpyro-chains", "NumPyro chains"),
        ("numpyro-warmup", "NumPyro warm-up steps"),
        ("numpyro-draws", "NumPyro draws per chain"),
        ("nutpie-chains", "nutpie chains"),
        ("nutpie-tune", "nutpie tuning steps"),
        ("nutpie-draws", "nutpie draws per chain"),
        ("generic-chains", "chains of the generic-path rows"),
        ("generic-warmup", "warm-up of the generic-path rows"),
        ("generic-draws", "draws per chain of the generic-path rows"),
    ]:
        key = name.replace("-", "_")
        parser.add_argument(
            f"--{name}", type=int, help=f"{what} (paper {PAPER[key]}, quick {QUICK[key]})"
        )
    parser.add_argument("--nutpie-cores", type=int, default=2, help="nutpie chains at once")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else PAPER).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.skip = {s for s in args.skip.split(",") if s}
    if unknown := args.skip - set(BASELINES):
        parser.error(f"--skip {','.join(sorted(unknown))}: not one of {','.join(BASELINES)}")
    return args


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def main() -> None:
    args = parse_args()
    torch.set_default_dtype(torch.float64)
    # One torch thread for the Pyro rows: one chain's tensors are small (a [N, D] product at
    # most), and on 2 cores a second thread only spin-waits; NumPyro and nutpie run as they do.
    torch.set_num_threads(1)
    flat = Flat()
    data = load_spheres(
        args.dim, args.n_train, 10, 1.0, 1.3, seed=args.data_seed, dtype=torch.float64, device="cpu"
    )
    packages = ("torch", "pyro-ppl", "numpyro", "jax", "pymc", "nutpie", "arviz")
    print(
        f"flat model {flat!r}, D = {args.dim}, N = {args.n_train}, seed {args.seed}"
        f"{' (--quick: not the paper scale)' if args.quick else ''}; load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
        + ", ".join(f"{p} {version(p)}" for p in packages),
        flush=True,
    )

    reference = pyro_log_density(data, flat)
    points = check_points(args.dim, args.seed)
    rows, notes, checks = [], [], []
    if "slice" not in args.skip:
        rows.append(slice_row(data, flat, args))
    if "slice-vectorized" not in args.skip:
        rows.append(slice_row(data, flat, args, vectorized=True))
    for mode in (m for m in args.modes.split(",") if m):
        rows.append(slice_row(data, flat, args, directions=mode))
    if "pyro-nuts" not in args.skip:
        rows.append(pyro_nuts_row(data, flat, args))
    optional = [
        ("numpyro", "NumPyro NUTS", ("numpyro", "jax"), numpyro_row),
        ("nutpie", "nutpie NUTS", ("nutpie", "pymc"), nutpie_row),
    ]
    for key, label, needs, make in optional:
        if key in args.skip:
            continue
        missing = [p for p in needs if importlib.util.find_spec(p) is None]
        if missing:
            notes.append(
                f"{label}: skipped, {' and '.join(missing)} not installed "
                "(optional: pip install -e '.[bench]')"
            )
            continue
        r = make(data, flat, args, reference, points)
        checks.append(r["check"])
        rows.append(r)

    width = max([len(r["method"]) for r in rows] + [len("method")])
    print(
        f"\n{'method':<{width}} {'min ESS/s':>10} {'median ESS/s':>13} {'seconds':>9} "
        f"{'R-hat max':>9} {'chains x draws':>15}  how"
    )
    for r in rows:
        rhat = "-" if np.isnan(r["rhat"]) else f"{r['rhat']:.3f}"
        print(
            f"{r['method']:<{width}} {r['min_rate']:>10.3f} {r['median_rate']:>13.3f} "
            f"{r['seconds']:>9.1f} {rhat:>9} {r['shape']:>15}  {r['how']}"
        )
    for note in notes:
        print(note)
    print(f"\nsame posterior as the Pyro model (two random points, rtol {CHECK_RTOL:g}):")
    for check in checks or ["no baseline with its own model ran"]:
        print(f"  {check}")

    judge(rows, args)
    if "generic" not in args.skip:
        print_generic(generic_rows(args))


def print_generic(rows: list[dict]) -> None:
    """The generic-path table, and per case the ratio of min ESS/s, Slice over NUTS."""
    print("\ngeneric path (models without a logistic fast path), same budget per case:")
    width = max(len(f"{r['case']}: {r['method']}") for r in rows)
    for r in rows:
        rhat = "-" if np.isnan(r["rhat"]) else f"{r['rhat']:.3f}"
        label = f"{r['case']}: {r['method']}"
        print(
            f"{label:<{width}} {r['min_rate']:>10.3f} {r['median_rate']:>13.3f} "
            f"{r['seconds']:>9.1f} {rhat:>9} {r['shape']:>15}  {r['how']}"
        )
    for case in dict.fromkeys(r["case"] for r in rows):
        ours, nuts = (next(r for r in rows if r["case"] == case and r["method"] == m)
                      for m in (SLICE, "Pyro NUTS"))  # fmt: skip
        ratio = ours["min_rate"] / nuts["min_rate"]
        print(
            f"{case}: {SLICE} / Pyro NUTS = {ratio:.3g}x in min ESS/s "
            f"(goal >= 1: {'met' if ratio >= 1 else 'not met'})"
        )


def judge(rows: list[dict], args) -> None:
    """Ratios of each slice row (``MCMC(Slice(model))``, ``VectorizedMCMC(Slice(model))``) to
    every other flat-posterior row, and the goal for each."""
    nutpie = next((r for r in rows if r["method"] == "nutpie NUTS"), None)
    quick = " [--quick: not the paper scale]" if args.quick else ""
    for ours in (r for r in rows if r["method"] in (SLICE, VECTORIZED)):
        print()
        for base in (r for r in rows if r is not ours):
            print(
                f"{ours['method']} / {base['method']}: "
                f"{ours['min_rate'] / base['min_rate']:.3g}x in min ESS/s "
                f"({ours['median_rate'] / base['median_rate']:.3g}x in median ESS/s)"
            )
        goal = f"goal: {ours['method']} >= {GOAL_RATE:g} min-ESS/s and >= {GOAL_RATIO:g}x nutpie"
        rate = f"{ours['min_rate']:.2f} min-ESS/s"
        if nutpie is None:
            met = "met" if ours["min_rate"] >= GOAL_RATE else "not met"
            print(f"{goal}: min-ESS/s {met} ({rate}); nutpie did not run{quick}")
            continue
        ratio = ours["min_rate"] / nutpie["min_rate"]
        met = ours["min_rate"] >= GOAL_RATE and ratio >= GOAL_RATIO
        print(f"{goal}: {'met' if met else 'not met'} ({rate}, {ratio:.3g}x nutpie){quick}")


if __name__ == "__main__":
    main()
