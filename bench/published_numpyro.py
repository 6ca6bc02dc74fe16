"""The published targets of :mod:`bayes_spheres.benchmarks` written in NumPyro, for
``bench/published.py``: the same densities over the same sites (names, shapes, supports and
so the same unconstrained coordinates) as the Pyro models; ``published.py`` checks that the
log densities differ by a constant before sampling. Latent paths (Brownian motion, log
volatility) are an improper flat site plus a ``numpyro.factor`` of the chain's density.

Import only with JAX's float64 switched on (``jax.config.update("jax_enable_x64", True)``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from jax.scipy.stats import norm
from numpyro.distributions import constraints
from numpyro.handlers import reparam
from numpyro.infer.reparam import LocScaleReparam

from bayes_spheres.benchmarks import datasets
from bayes_spheres.benchmarks.hierarchical import TREATMENT_EFFECTS, TREATMENT_STDDEVS


def flat(name: str, size: int) -> jnp.ndarray:
    return numpyro.sample(name, dist.ImproperUniform(constraints.real_vector, (), (size,)))


def eight_schools() -> None:
    y, sigma = jnp.asarray(TREATMENT_EFFECTS), jnp.asarray(TREATMENT_STDDEVS)
    avg = numpyro.sample("avg_effect", dist.Normal(0.0, 10.0))
    log_sd = numpyro.sample("log_stddev", dist.Normal(5.0, 1.0))
    theta = numpyro.sample(
        "school_effects", dist.Normal(avg, jnp.exp(log_sd)).expand([8]).to_event(1)
    )
    numpyro.sample("treatment_effects", dist.Normal(theta, sigma).to_event(1), obs=y)


def german_credit() -> tuple[jnp.ndarray, jnp.ndarray]:
    features, labels = datasets.german_credit_numeric()
    x = np.hstack([features, np.ones((features.shape[0], 1))])
    return jnp.asarray(x), jnp.asarray(labels, dtype=jnp.float64)


def logistic(x: jnp.ndarray, y: jnp.ndarray) -> Callable[[], None]:
    def model() -> None:
        w = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
        numpyro.sample("labels", dist.Bernoulli(logits=x @ w).to_event(1), obs=y)

    return model


def probit(x: jnp.ndarray, y: jnp.ndarray) -> Callable[[], None]:
    def model() -> None:
        w = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
        z = x @ w
        numpyro.sample(
            "labels", dist.Bernoulli(logits=log_ndtr(z) - log_ndtr(-z)).to_event(1), obs=y
        )

    return model


def sparse_logistic(x: jnp.ndarray, y: jnp.ndarray) -> Callable[[], None]:
    d = x.shape[1]

    def model() -> None:
        g = numpyro.sample("global_scale", dist.Gamma(0.5, 0.5))
        local = numpyro.sample("local_scales", dist.Gamma(0.5, 0.5).expand([d]).to_event(1))
        unscaled = numpyro.sample("unscaled_weights", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        numpyro.sample(
            "labels", dist.Bernoulli(logits=x @ (unscaled * local * g)).to_event(1), obs=y
        )

    return model


def brownian_motion() -> Callable[[], None]:
    observed, innovation, noise = datasets.brownian_motion_missing_middle()
    seen = ~np.isnan(observed)

    def model() -> None:
        x = flat("locs", observed.shape[0])
        numpyro.factor(
            "walk",
            norm.logpdf(x[0], 0.0, innovation) + norm.logpdf(x[1:], x[:-1], innovation).sum(),
        )
        numpyro.sample(
            "observed_locs",
            dist.Normal(x[seen], noise).to_event(1),
            obs=jnp.asarray(observed[seen]),
        )

    return model


def stochastic_volatility() -> Callable[[], None]:
    r = jnp.asarray(datasets.sp500_returns(100))

    def model() -> None:
        phi = numpyro.sample(
            "persistence_of_volatility",
            # the domain makes the support (-1, 1), as Pyro's AffineBeta (default: real)
            dist.TransformedDistribution(
                dist.Beta(20.0, 1.5),
                dist.transforms.AffineTransform(-1.0, 2.0, domain=constraints.unit_interval),
            ),
        )
        mu = numpyro.sample("mean_log_volatility", dist.Cauchy(0.0, 5.0))
        s = numpyro.sample("white_noise_shock_scale", dist.HalfCauchy(2.0))
        h = flat("log_volatility", r.shape[0])
        numpyro.factor(
            "ar1",
            norm.logpdf(h[0], mu, s / jnp.sqrt(1.0 - phi**2))
            + norm.logpdf(h[1:], mu + phi * (h[:-1] - mu), s).sum(),
        )
        numpyro.sample("returns", dist.Normal(0.0, jnp.exp(h / 2.0)).to_event(1), obs=r)

    return model


def radon() -> Callable[[], None]:
    d = datasets.radon_minnesota()
    u, fl, fbc = (
        jnp.asarray(a, dtype=jnp.float64) for a in (d.log_uranium, d.floor, d.floor_by_county)
    )
    county, y = jnp.asarray(d.county), jnp.asarray(d.log_radon)

    def model() -> None:
        mean = numpyro.sample("county_effect_mean", dist.Normal(0.0, 1.0))
        scale = numpyro.sample("county_effect_scale", dist.Uniform(0.0, 100.0))
        ce = numpyro.sample(
            "county_effect", dist.Normal(mean, scale).expand([d.num_counties]).to_event(1)
        )
        w = numpyro.sample("weight", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        sigma = numpyro.sample("log_radon_scale", dist.Uniform(0.0, 100.0))
        loc = u * w[0] + fl * w[1] + fbc * w[2] + ce[county]
        numpyro.sample("log_radon", dist.Normal(loc, sigma).to_event(1), obs=y)

    return model


def item_response_theory() -> Callable[[], None]:
    students, questions, correct = datasets.synthetic_item_response_theory()
    n_s, n_q = int(students.max()) + 1, int(questions.max()) + 1
    s, q, c = jnp.asarray(students), jnp.asarray(questions), jnp.asarray(correct, jnp.float64)

    def model() -> None:
        m = numpyro.sample("mean_student_ability", dist.Normal(0.75, 1.0))
        a = numpyro.sample(
            "centered_student_ability", dist.Normal(0.0, 1.0).expand([n_s]).to_event(1)
        )
        b = numpyro.sample("question_difficulty", dist.Normal(0.0, 1.0).expand([n_q]).to_event(1))
        numpyro.sample("correct", dist.Bernoulli(logits=m + a[s] - b[q]).to_event(1), obs=c)

    return model


def log_gaussian_cox_process() -> Callable[[], None]:
    locations, extents, counts = datasets.synthetic_log_gaussian_cox_process()
    dist_matrix = jnp.asarray(np.sqrt(((locations[:, None] - locations[None]) ** 2).sum(-1)))
    log_extents, k = jnp.log(jnp.asarray(extents)), jnp.asarray(counts, jnp.float64)
    mean = jnp.mean(jnp.log(k) - log_extents)

    def model() -> None:
        amp = numpyro.sample("amplitude", dist.LogNormal(-1.0, 0.5)) + 1e-3
        ls = numpyro.sample("length_scale", dist.LogNormal(-1.0, 1.0)) + 1e-3
        r = jnp.sqrt(3.0) * dist_matrix / ls
        cov = amp**2 * (1.0 + r) * jnp.exp(-r) + 1e-6 * jnp.eye(k.shape[0])
        f = numpyro.sample(
            "log_intensity", dist.MultivariateNormal(jnp.full(k.shape[0], mean), cov)
        )
        numpyro.sample("counts", dist.Poisson(jnp.exp(log_extents + f)).to_event(1), obs=k)

    return model


def model(name: str) -> Callable[[], None]:
    """The NumPyro model of the target ``name`` (data bound)."""
    if name == "eight_schools":
        return eight_schools
    if name == "eight_schools_noncentered":
        return reparam(eight_schools, config={"school_effects": LocScaleReparam(0.0)})
    if name.startswith("german_credit_"):
        kind = name.removeprefix("german_credit_")
        return {"logistic": logistic, "probit": probit, "sparse_logistic": sparse_logistic}[kind](
            *german_credit()
        )
    return {
        "brownian_motion": brownian_motion,
        "stochastic_volatility": stochastic_volatility,
        "radon_minnesota": radon,
        "item_response_theory": item_response_theory,
        "log_gaussian_cox_process": log_gaussian_cox_process,
    }[name]()
