"""Why ``MCMC(Slice(model))`` misses the Inference Gym's reference mean of
``mean_log_volatility`` on the stochastic volatility target: the reference comes from a
parameterisation that cannot reach one corner of the posterior.

The gym computed its ground truth with Stan (``--stan_samples=50000``) on a non-centred model
(its ``tools/stan/stochastic_volatility.py``: standardised residuals ``z ~ N(0, 1)``, the log
volatility built from them). Where the persistence nears 1 the AR(1) process's stationary
scale grows as ``1 / sqrt(1 - phi^2)``, the data stop pinning ``mean_log_volatility``, and the
posterior grows a long left tail (towards the Cauchy prior's centre) in a funnel that the
non-centred coordinates pass through only with divergent trajectories.

This script samples the same posterior with NumPyro's NUTS (not this project's sampler) in
both parameterisations, at the same chains and draws, and prints per seed the mean, sd,
tail quantiles and divergent transitions of ``mean_log_volatility``, with its mean and sd
after dropping the lowest 1% of draws (what a sampler that never enters the corner sees):

- ``centred``: the model of ``bench/published_numpyro.py`` (the gym's TFP code, and the
  parameterisation the Pyro target uses);
- ``non-centred``: the gym's Stan model, written in NumPyro.

Per run also the mean persistence, over all draws and where ``mean_log_volatility < 5``.

Run (NumPyro and JAX from the ``bench`` extra; about a minute per run, six runs)::

    python bench/volatility_reference.py [--seeds 0,1,2] [--warmup 1000] [--draws 5000]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # before any array, as published_numpyro needs

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import published_numpyro  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from bayes_spheres.benchmarks import datasets, load  # noqa: E402


def stan_noncentred() -> None:
    """The gym's Stan model (``tools/stan/stochastic_volatility.py``), site for site."""
    returns = jnp.asarray(datasets.sp500_returns(100))
    u = numpyro.sample("persistence_half", dist.Beta(20.0, 1.5))  # (persistence + 1) / 2
    persistence = numpyro.deterministic("persistence_of_volatility", 2.0 * u - 1.0)
    mean = numpyro.sample("mean_log_volatility", dist.Cauchy(0.0, 5.0))
    shock = numpyro.sample("white_noise_shock_scale", dist.HalfCauchy(2.0))
    std = numpyro.sample("log_volatilities_std", dist.Normal(0.0, 1.0).expand([100]).to_event(1))
    e = std * shock
    e = e.at[0].set(e[0] / jnp.sqrt(1.0 - persistence**2))

    def step(previous, innovation):
        h = mean + persistence * (previous - mean) + innovation
        return h, h

    first = mean + e[0]
    _, rest = jax.lax.scan(step, first, e[1:])
    h = jnp.concatenate([first[None], rest])
    numpyro.sample("returns", dist.Normal(0.0, jnp.exp(h / 2.0)).to_event(1), obs=returns)


MODELS = {
    "centred": published_numpyro.model("stochastic_volatility"),
    "non-centred": stan_noncentred,
}


def run(name: str, seed: int, warmup: int, draws: int) -> dict:
    mcmc = MCMC(
        NUTS(MODELS[name]),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging",))
    samples = mcmc.get_samples()
    x = np.asarray(samples["mean_log_volatility"])
    persistence = np.asarray(samples["persistence_of_volatility"])
    low = x > np.quantile(x, 0.01)
    return dict(
        seconds=time.perf_counter() - start,
        divergent=int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
        mean=x.mean(),
        sd=x.std(),
        q=np.quantile(x, [0.001, 0.01, 0.5, 0.99]),
        mean99=x[low].mean(),
        sd99=x[low].std(),
        persistence=persistence.mean(),
        persistence_below_5=persistence[x < 5.0].mean() if (x < 5.0).any() else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5000)
    args = parser.parse_args()
    ref = load("stochastic_volatility").reference["mean_log_volatility"]
    print(
        f"mean_log_volatility, 4 chains x ({args.warmup} + {args.draws}) of NumPyro "
        f"{numpyro.__version__} NUTS; the gym's reference: mean {float(ref.mean):.4f} "
        f"(+- {float(ref.mean_se):.4f}), sd {float(ref.sd):.4f}"
    )
    print(
        f"{'model':<12} {'seed':>4} {'divergent':>9} {'mean':>7} {'sd':>6} "
        f"{'q0.001':>7} {'q0.01':>6} {'median':>6} {'q0.99':>6} {'mean>q0.01':>10} "
        f"{'sd>q0.01':>8} {'persistence':>11} {'where <5':>8} {'seconds':>7}"
    )
    for name in MODELS:
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run(name, seed, args.warmup, args.draws)
            q = r["q"]
            print(
                f"{name:<12} {seed:>4} {r['divergent']:>9} {r['mean']:>7.4f} {r['sd']:>6.3f} "
                f"{q[0]:>7.2f} {q[1]:>6.2f} {q[2]:>6.2f} {q[3]:>6.2f} {r['mean99']:>10.4f} "
                f"{r['sd99']:>8.3f} {r['persistence']:>11.3f} {r['persistence_below_5']:>8.3f} "
                f"{r['seconds']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
