"""The length of the generic path's trajectories: fixed (``trajectory=6.0``, the old default)
against the no-U-turn length (``trajectory=None``, ``bayes_spheres/kernels/no_u_turn.py``),
with Pyro's NUTS beside them, on targets the fast path does not cover: the published Pyro
versions in ``bayes_spheres.benchmarks`` where that package has them (with the gym's reference
moments), else the models written here after the Inference Gym's or posteriordb's:

- ``schools``, ``schools-nc``: eight schools, centred and non-centred (``LocScaleReparam``);
- ``brownian``: 30 steps of Brownian motion, the middle ten unobserved (Inference Gym
  ``BrownianMotionMissingMiddleObservations``: innovation 0.1, observation noise 0.15);
- ``volatility``: stochastic volatility of the last 100 daily S&P 500 returns to 24 June 2020
  (gym ``StochasticVolatilitySP500Small``, centred, 103 latents);
- ``gaussian``: 100-D Gaussian, unit variances, every correlation 0.9;
- ``funnel``: Neal's funnel, ``v ~ N(0, 3^2)``, nine ``x_i ~ N(0, e^v)``.

Rows per target, each at the same chains, warm-up and draws (``SIZES``), on one torch thread:

- ``fixed``: ``MCMC(Slice(model, trajectory=6.0))``, the old default;
- ``adaptive``: ``MCMC(Slice(model, trajectory=None))``, the no-U-turn length;
- ``vectorized``: the same kernel under ``VectorizedMCMC`` (all chains in one batch);
- ``nofloor``, ``vectorized-nofloor`` (not by default): the two above without the warm-up
  floor under the length (``kernels/trajectory_length.py``), every U-turn counting as in NUTS;
- ``nuts``: ``MCMC(NUTS(model))``, Pyro's.

Under ``MCMC`` the chains run one after another (Pyro's sequential sampler:
``num_chains > cpu_count - 1`` on 2 cores). Columns: the trajectory length (``no-u-turn`` or
the fixed one) and the floor learnt under it (mean over chains); leapfrog steps per update
after warm-up, of the sampler's batch (one chain under ``MCMC``, all of them under
``VectorizedMCMC``: what an update costs) and per chain (NUTS: its potential's calls per
chain and iteration); the adapted step (mean over chains); the wall and CPU time (set-up and
warm-up included; this process's CPU time is the fairer clock on a shared machine); ArviZ's
minimum bulk ESS over every latent coordinate (constrained) and that per CPU second; the
largest R-hat; the divergent transitions after warm-up; for the published targets the
largest ``|mean - reference mean| / reference sd`` over the gym's quantities.

Run::

    python bench/trajectory_length.py [--targets schools,volatility] [--chains 4]
        [--warmup 300] [--draws 500] [--methods fixed,adaptive,vectorized,nuts] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import ClassVar

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import MCMC, NUTS
from pyro.infer.reparam import LocScaleReparam

from bayes_spheres.kernels import Slice

SCHOOLS_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SCHOOLS_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
# gym: brownian_motion_missing_middle_observations.OBSERVED_LOC (nan: unobserved)
BROWNIAN = [0.21592641, 0.1187714, -0.07945447, 0.03767747, -0.27885845, -0.1484156,
            -0.3250906, -0.22957903, -0.44110894, -0.09830782] + [math.nan] * 10 + [
            -0.8786016, -0.83736074, -0.7384849, -0.8939254, -0.7774566, -0.70238715,
            -0.87771565, -0.51853573, -0.6948214, -0.6202789]  # fmt: skip
# gym: sp500_closing_prices.CLOSING_PRICES[-101:] (USD, to 24 June 2020)
SP500 = [
    3225.52002, 3248.919922, 3297.590088, 3334.689941, 3345.780029, 3327.709961, 3352.090088,
    3357.75, 3379.449951, 3373.939941, 3380.159912, 3370.290039, 3386.149902, 3373.22998,
    3337.75, 3225.889893, 3128.209961, 3116.389893, 2978.76001, 2954.219971, 3090.22998,
    3003.370117, 3130.120117, 3023.939941, 2972.370117, 2746.560059, 2882.22998, 2741.379883,
    2480.639893, 2711.02002, 2386.129883, 2529.189941, 2398.100098, 2409.389893, 2304.919922,
    2237.399902, 2447.330078, 2475.560059, 2630.070068, 2541.469971, 2626.649902, 2584.590088,
    2470.5, 2526.899902, 2488.649902, 2663.679932, 2659.409912, 2749.97998, 2789.820068,
    2761.629883, 2846.060059, 2783.360107, 2799.550049, 2874.560059, 2823.159912, 2736.560059,
    2799.310059, 2797.800049, 2836.73999, 2878.47998, 2863.389893, 2939.51001, 2912.429932,
    2830.709961, 2842.73999, 2868.439941, 2848.419922, 2881.189941, 2929.800049, 2930.189941,
    2870.120117, 2820.0, 2852.5, 2863.699951, 2953.909912, 2922.939941, 2971.610107,
    2948.51001, 2955.449951, 2991.77002, 3036.129883, 3029.72998, 3044.310059, 3055.72998,
    3080.820068, 3122.870117, 3112.350098, 3193.929932, 3232.389893, 3207.179932, 3190.139893,
    3002.100098, 3041.310059, 3066.590088, 3124.73999, 3113.48999, 3115.340088, 3097.73999,
    3117.860107, 3131.290039, 3050.330078,
]  # fmt: skip


def eight_schools() -> None:
    """posteriordb's eight schools, centred: ``mu ~ N(0, 5^2)``, ``tau ~ HalfCauchy(5)``."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, torch.tensor(SCHOOLS_SIGMA)),
                    obs=torch.tensor(SCHOOLS_Y))  # fmt: skip


def brownian_motion() -> None:
    """Inference Gym's Brownian motion with its middle ten observations missing."""
    y = torch.tensor(BROWNIAN)
    seen = ~torch.isnan(y)
    locs = pyro.sample("locs", dist.GaussianRandomWalk(torch.tensor(0.1), num_steps=len(y)))
    pyro.sample("y", dist.Normal(locs[..., seen], 0.15).to_event(1), obs=y[seen])


class AutoRegressive(dist.TorchDistribution):
    """An AR(1) series: ``x_0 ~ N(mean, scale^2 / (1 - phi^2))``,
    ``x_t ~ N(mean + phi (x_{t-1} - mean), scale^2)`` (the gym's centred log volatility)."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, mean, scale, persistence, steps: int) -> None:
        self.mean, self.scale, self.persistence = torch.broadcast_tensors(mean, scale, persistence)
        super().__init__(self.mean.shape, torch.Size([steps]))

    def sample(self, sample_shape: tuple = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        x = self.mean + self.scale / (1 - self.persistence**2).sqrt() * torch.randn(shape)
        out = [x]
        for _ in range(self.event_shape[0] - 1):
            x = self.mean + self.persistence * (x - self.mean) + self.scale * torch.randn(shape)
            out.append(x)
        return torch.stack(out, -1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        m, s, p = (a[..., None] for a in (self.mean, self.scale, self.persistence))
        first = dist.Normal(m, s / (1 - p**2).sqrt()).log_prob(x[..., :1])
        rest = dist.Normal(m + p * (x[..., :-1] - m), s).log_prob(x[..., 1:])
        return first.sum(-1) + rest.sum(-1)


def stochastic_volatility() -> None:
    """gym ``StochasticVolatilitySP500Small``: persistence ``2 Beta(20, 1.5) - 1`` (sampled as
    its Beta: the same posterior, the Jacobian a constant), ``mean ~ Cauchy(0, 5)``, ``scale
    ~ HalfCauchy(2)``, the centred AR(1) log volatility, returns ``N(0, e^{x_t})``."""
    prices = torch.tensor(SP500, dtype=torch.float64)
    returns = (prices[1:] - prices[:-1]).float()
    returns = returns - returns.mean()
    beta = pyro.sample("persistence_beta", dist.Beta(20.0, 1.5))
    mean = pyro.sample("mean_log_volatility", dist.Cauchy(0.0, 5.0))
    scale = pyro.sample("white_noise_shock_scale", dist.HalfCauchy(2.0))
    x = pyro.sample("log_volatility", AutoRegressive(mean, scale, 2 * beta - 1, len(returns)))
    pyro.sample("returns", dist.Normal(0.0, torch.exp(x / 2)).to_event(1), obs=returns)


def correlated_gaussian(dim: int = 100) -> Callable[[], None]:
    cov = 0.1 * torch.eye(dim) + 0.9 * torch.ones(dim, dim)
    tril = torch.linalg.cholesky(cov)

    def model() -> None:
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(dim), scale_tril=tril))

    return model


def funnel() -> None:
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(9), torch.exp(v / 2)[..., None]).to_event(1))


# name -> (own model, the published target's name in bayes_spheres.benchmarks or None)
TARGETS: dict[str, tuple[Callable[[], None], str | None]] = {
    "schools": (eight_schools, "eight_schools"),
    "schools-nc": (
        poutine.reparam(eight_schools, config={"theta": LocScaleReparam(0.0)}),
        "eight_schools_noncentered",
    ),
    "brownian": (brownian_motion, "brownian_motion"),
    "volatility": (stochastic_volatility, "stochastic_volatility"),
    "gaussian": (correlated_gaussian(), None),
    "funnel": (funnel, None),
    "horseshoe": (None, "german_credit_sparse_logistic"),  # published only; not by default
}
DEFAULT_TARGETS = "schools,schools-nc,brownian,volatility,gaussian,funnel"
# (chains, warm-up, draws) per target unless given: the fixed length's rows on the stochastic
# volatility posterior cost hundreds of leapfrog steps per update (about 40 min of CPU at
# 300 + 500), so it runs shorter
SIZES = {"volatility": (4, 200, 200)}
DEFAULT_SIZE = (4, 300, 500)


def load_target(name: str) -> tuple[Callable[[], None], object | None, str]:
    """The model, the published target (reference moments) or None, and where it came from:
    ``bayes_spheres.benchmarks`` where it has the target, else the model written here."""
    model, published = TARGETS[name]
    if published is not None:
        try:
            from bayes_spheres.benchmarks import load
        except ImportError:
            pass
        else:
            target = load(published)
            return target.model, target, f"bayes_spheres.benchmarks {published!r}"
    if model is None:
        raise SystemExit(f"{name}: needs bayes_spheres.benchmarks")
    return model, None, "written here"


def reference_error(target, samples: dict[str, np.ndarray]) -> float:
    """The largest ``|mean - reference mean| / reference sd`` over the published target's
    quantities (NaN without one): how far the draws' means are from the gym's ground truth."""
    if target is None:
        return math.nan
    got = target.quantities(samples)
    return max(
        float(np.max(np.abs(got[k].mean((0, 1)) - r.mean) / r.sd))
        for k, r in target.reference.items()
    )


class CountingNUTS(NUTS):
    """Pyro's NUTS, counting its potential's calls (one per leapfrog step) after warm-up,
    over every chain it runs in this process (its own count of updates per chain, from
    ``setup``); chains in Pyro's worker processes are not counted (0)."""

    draw_calls = 0

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        super().setup(warmup_steps, *args, **kwargs)
        self.updates, self.warmup = 0, warmup_steps
        inner = self.potential_fn

        def counted(params):
            if self.updates >= self.warmup:
                self.draw_calls += 1
            return inner(params)

        self.potential_fn = counted

    def sample(self, params):
        out = super().sample(params)
        self.updates += 1
        return out


@contextlib.contextmanager
def no_u_turn_default() -> Iterator[None]:
    """While the generic path's own default length (``kernels/paths.py``) is a number, make it
    None (the no-U-turn length) for ``Slice(model, trajectory=None)``; nothing otherwise."""
    try:
        from bayes_spheres.kernels import paths
    except ImportError:  # an older shell: None reaches the sampler as it is
        yield
        return
    generic = paths.PATHS["generic"]
    if generic.defaults.trajectory is None:
        yield
        return
    defaults = dataclasses.replace(generic.defaults, trajectory=None)
    paths.PATHS["generic"] = dataclasses.replace(generic, defaults=defaults)
    try:
        yield
    finally:
        paths.PATHS["generic"] = generic


def sizes(name: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """``(chains, warmup, draws)`` for target ``name``: the flags where given, else
    :data:`SIZES`' or :data:`DEFAULT_SIZE`."""
    default = SIZES.get(name, DEFAULT_SIZE)
    given = (args.chains, args.warmup, args.draws)
    chains, warmup, draws = (d if g is None else g for g, d in zip(given, default, strict=True))
    return chains, warmup, draws


@contextlib.contextmanager
def without_floor(active: bool) -> Iterator[None]:
    """While ``active``: the no-U-turn length without its warm-up floor
    (``kernels/trajectory_length.py``), every U-turn counting as in NUTS."""
    if not active:
        yield
        return
    from bayes_spheres.kernels import hamiltonian

    floor = hamiltonian.warmup_floor
    hamiltonian.warmup_floor = lambda states, split: 0.0
    try:
        yield
    finally:
        hamiltonian.warmup_floor = floor


def run(method: str, model: Callable, target, size: tuple[int, int, int], seed: int) -> dict:
    label, make, runner = METHODS[method]
    chains, warmup, draws = size
    pyro.set_rng_seed(seed)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(), no_u_turn_default(), without_floor("no floor" in label):
        warnings.filterwarnings("ignore", message="num_chains=.*")
        kernel = make(model)
        mcmc = runner(kernel, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                      disable_progbar=True)  # fmt: skip
        mcmc.run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    samples = mcmc.get_samples(group_by_chain=True)
    error = reference_error(target, {k: v.numpy() for k, v in samples.items()})
    x = np.concatenate([v.reshape(*v.shape[:2], -1).double().numpy() for v in samples.values()], -1)
    data = az.convert_to_dataset({"x": x})
    ess = np.asarray(az.ess(data, method="bulk")["x"].values)
    rhat = np.asarray(az.rhat(data)["x"].values)
    diagnostics = mcmc.diagnostics()
    divergences = sum(len(d) for d in diagnostics.get("divergences", {}).values())
    row = {"method": label, "wall": wall, "cpu": cpu, "ess": float(ess.min()),
           "rhat": float(rhat.max()), "divergences": divergences, "error": error}  # fmt: skip
    if isinstance(kernel, CountingNUTS):
        # 0 calls: Pyro ran the chains in worker processes, where the count stays
        per_chain = kernel.draw_calls / (chains * draws) if kernel.draw_calls else math.nan
        return row | {"length": "no-u-turn", "floor": math.nan, "batched": math.nan,
                      "step": kernel.step_size, "per_chain": per_chain}  # fmt: skip

    def mean(key: str) -> float:  # over the chains (each its own sampler under MCMC)
        values = diagnostics.get(key, {}).values()
        return float(np.mean([float(v) for v in values])) if values else math.nan

    length = next(iter(diagnostics.get("trajectory", {"": math.nan}).values()))
    return row | {"length": length, "floor": mean("floor"),
                  "batched": mean("leapfrogs_per_draw"), "step": mean("step_size"),
                  "per_chain": mean("steps_per_chain")}  # fmt: skip


def vectorized(*args, **kwargs):
    from bayes_spheres.kernels.vectorized import VectorizedMCMC

    return VectorizedMCMC(*args, **kwargs)


# name -> (label, kernel from the model, the runner)
METHODS = {
    "fixed": ("Slice, length 6", lambda model: Slice(model, trajectory=6.0), MCMC),
    "adaptive": ("Slice, no-U-turn", lambda model: Slice(model, trajectory=None), MCMC),
    "vectorized": ("  vectorized", lambda model: Slice(model, trajectory=None), vectorized),
    "nofloor": ("  no floor", lambda model: Slice(model, trajectory=None), MCMC),
    "vectorized-nofloor": (
        "  vect., no floor",
        lambda model: Slice(model, trajectory=None),
        vectorized,
    ),
    "nuts": ("Pyro NUTS", CountingNUTS, MCMC),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=DEFAULT_TARGETS)
    parser.add_argument("--methods", default="fixed,adaptive,vectorized,nuts")
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"one torch thread, seed {args.seed}; leapfrog steps per update after warm-up "
          "(batched: the sampler's batch; chain: per chain)")  # fmt: skip
    header = (f"{'target':<11} {'method':<17} {'length':>9} {'floor':>6} {'batched':>8} "
              f"{'chain':>7} {'step':>8} {'wall s':>7} {'cpu s':>7} {'min ESS':>8} "
              f"{'ESS/cpu s':>9} {'R-hat':>6} {'div':>4} {'err/sd':>6}")  # fmt: skip
    for name in args.targets.split(","):
        model, target, source = load_target(name)
        chains, warmup, draws = sizes(name, args)
        print(f"# {name}: {source}; {chains} chains x ({warmup} warm-up + {draws} draws)")
    print(header)
    for name in args.targets.split(","):
        model, target, _ = load_target(name)
        for method in args.methods.split(","):
            r = run(method, model, target, sizes(name, args), args.seed)
            label = r["method"]
            length = r["length"] if isinstance(r["length"], str) else f"{r['length']:.1f}"
            print(f"{name:<11} {label:<17} {length:>9} {r['floor']:>6.2f} {r['batched']:>8.1f} "
                  f"{r['per_chain']:>7.1f} {r['step']:>8.4f} {r['wall']:>7.1f} {r['cpu']:>7.1f} "
                  f"{r['ess']:>8.0f} {r['ess'] / r['cpu']:>9.1f} {r['rhat']:>6.3f} "
                  f"{r['divergences']:>4} "
                  f"{r['error']:>6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
