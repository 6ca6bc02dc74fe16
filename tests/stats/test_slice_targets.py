"""The slice sampler against targets whose answers are known (fixed seeds; tolerances from the
Monte Carlo standard error), as BlackJAX tests its samplers (``tests/mcmc/test_sampling.py``),
always including skewed targets: a symmetric one cannot reveal a sign error."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from tests.stats.conftest import assert_mean, assert_rhat, run_slice


@pytest.mark.parametrize("directions", ["coordinate", "factor", "hamiltonian"])
def test_standard_normal(directions):
    def model():
        pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    x = run_slice(model, draws=500, directions=directions)["x"]
    assert_mean(x, 0.0)
    assert_mean(x**2, 1.0)
    assert_rhat(x)


def test_correlated_gaussian():
    cov = torch.tensor([[1.0, 0.99], [0.99, 1.0]])

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.tensor([1.0, -1.0]), cov))

    x = run_slice(model, draws=400, directions="factor")["x"]
    assert_mean(x, [1.0, -1.0])
    assert_mean((x[..., 0] - 1) * (x[..., 1] + 1), 0.99)
    assert_rhat(x)


@pytest.mark.slow
def test_correlated_gaussian_mixes_better_along_factor_directions():
    cov = torch.tensor([[1.0, 0.99], [0.99, 1.0]])

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.tensor([1.0, -1.0]), cov))

    x = run_slice(model, draws=500, directions="factor")["x"]
    assert_mean(x, [1.0, -1.0])
    assert_mean((x[..., 0] - 1) * (x[..., 1] + 1), 0.99)
    assert_rhat(x)
    coordinate = run_slice(model, draws=500, directions="coordinate")["x"]
    import arviz as az

    # the eigenvector basis is what makes a strongly correlated posterior mix
    assert float(az.ess(x[..., 0])) > 5 * float(az.ess(coordinate[..., 0]))


@pytest.mark.parametrize("directions", ["factor", "hamiltonian"])
def test_skewed_positive_site(directions):
    """Gamma(2, 0.5) through Pyro's exp transform: mean 4, variance 8, skewness sqrt 2."""

    def model():
        pyro.sample("g", dist.Gamma(2.0, 0.5))

    g = run_slice(model, draws=700, directions=directions)["g"]
    assert bool((g > 0).all())
    assert_mean(g, 4.0)
    assert_mean(g**2, 8.0 + 16.0)
    assert_mean(np.log(g), float(torch.digamma(torch.tensor(2.0))) - math.log(0.5))


@pytest.mark.parametrize("directions", ["factor", "hamiltonian"])
def test_log_normal_is_not_mirrored(directions):
    def model():
        pyro.sample("s", dist.LogNormal(1.0, 0.5))

    s = run_slice(model, draws=700, directions=directions)["s"]
    assert_mean(s, math.exp(1.0 + 0.125))
    assert_mean(np.log(s), 1.0)


@pytest.mark.parametrize("directions", ["factor", "hamiltonian"])
def test_bounded_support_site(directions):
    """Beta(2, 5) through Pyro's sigmoid transform: mean 2/7, all draws inside (0, 1)."""

    def model():
        pyro.sample("p", dist.Beta(2.0, 5.0))

    p = run_slice(model, draws=700, directions=directions)["p"]
    assert bool(((p > 0) & (p < 1)).all())
    assert_mean(p, 2 / 7)
    assert_mean(p**2, 2 / 7 * 3 / 8)


@pytest.mark.slow
@pytest.mark.parametrize("directions", ["factor", "hamiltonian"])
def test_non_centered_funnel(directions):
    """Neal's funnel, non-centered: v ~ N(0, 3^2), x = exp(v / 2) z, z ~ N(0, I_4)."""

    def model():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
        pyro.deterministic("x", torch.exp(v / 2) * z)

    # the hamiltonian mode has no mass matrix: v's scale 3 needs a quarter period 3 pi / 2
    draws = run_slice(model, draws=500, directions=directions, trajectory=6.0)
    assert_mean(draws["v"], 0.0)
    assert_mean(draws["v"] ** 2, 9.0)
    assert_mean(draws["z"], 0.0)
    assert_rhat(draws["v"])


MEAN5 = [1.0, -2.0, 0.5, 3.0, -1.0]
SCALE5 = [1.0, 0.5, 2.0, 1.5, 0.3]


@pytest.mark.parametrize(
    "directions",
    [pytest.param("coordinate", marks=pytest.mark.slow),
     pytest.param("factor", marks=pytest.mark.slow), "hamiltonian"],
)  # fmt: skip
def test_gaussian_with_non_zero_mean_and_scale_moves(directions):
    """N(m, diag s^2) in 5-D, m != 0, with 3 scale moves (Liu & Sabatti 2000) per sweep: the
    scale move changes every coordinate at once, so a wrong Jacobian biases all moments."""

    def model():
        pyro.sample("x", dist.Normal(torch.tensor(MEAN5), torch.tensor(SCALE5)).to_event(1))

    x = run_slice(model, draws=500, directions=directions, scale_moves=3)["x"]
    m, s = np.array(MEAN5), np.array(SCALE5)
    assert_mean(x, m)
    assert_mean((x - m) ** 2, s**2)
    assert_mean(np.sum(x**2, axis=-1), float(np.sum(m**2 + s**2)))
    assert_rhat(x)


@pytest.mark.slow
def test_skewed_sites_with_scale_moves():
    """Gamma(2, 0.5) and LogNormal(1, 0.5) through Pyro's exp transform plus a shifted normal,
    coordinate updates and scale moves of the whole unconstrained vector."""

    def model():
        pyro.sample("g", dist.Gamma(2.0, 0.5))
        pyro.sample("s", dist.LogNormal(1.0, 0.5))
        pyro.sample("z", dist.Normal(2.0, 0.5))

    d = run_slice(model, draws=700, directions="coordinate", scale_moves=3)
    assert bool((d["g"] > 0).all())
    assert_mean(d["g"], 4.0)
    assert_mean(d["g"] ** 2, 8.0 + 16.0)
    assert_mean(np.log(d["g"]), float(torch.digamma(torch.tensor(2.0))) - math.log(0.5))
    assert_mean(d["s"], math.exp(1.0 + 0.125))
    assert_mean(d["z"], 2.0)
    assert_mean((d["z"] - 2.0) ** 2, 0.25)
