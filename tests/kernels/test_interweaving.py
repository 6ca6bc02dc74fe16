"""Interweaving on the generic path (``bayes_spheres/kernels/interweaving.py``): the map to
Pyro's reparameterised model is exact, the step keeps exact draws exact, and through
``pyro.infer.MCMC`` the centred eight schools reach the posterior moments that quadrature gives
(their scale's marginal in closed form: the effects and the mean integrate out)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.util import initialize_model
from scipy import stats

from bayes_spheres.kernels import Slice
from bayes_spheres.kernels.interweaving import InterweavingSampler, decentring
from bayes_spheres.kernels.potential import unravel
from tests.stats.conftest import assert_mean, assert_sd

EFFECTS = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
STDDEVS = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)
MEAN_PRIOR_SD, LOG_SD_PRIOR = 10.0, (5.0, 1.0)  # the Inference Gym's priors


def schools() -> None:
    """Eight schools, centred, as the Inference Gym writes them: ``mu ~ N(0, 10)``,
    ``log tau ~ N(5, 1)``, ``theta_i ~ N(mu, tau)``, ``y_i ~ N(theta_i, sigma_i)``."""
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0).double(), MEAN_PRIOR_SD))
    log_tau = pyro.sample("log_tau", dist.Normal(torch.tensor(LOG_SD_PRIOR[0]).double(), 1.0))
    with pyro.plate("schools", len(EFFECTS)):
        theta = pyro.sample("theta", dist.Normal(mu, log_tau.exp()))
        pyro.sample("y", dist.Normal(theta, STDDEVS), obs=EFFECTS)


def quadrature() -> dict[str, tuple[float, float]]:
    """Posterior mean and sd of ``log tau`` and ``mu`` by quadrature over ``log tau``:
    ``y | tau ~ N(0, 10^2 J + diag(sigma^2 + tau^2))``, ``mu | tau, y`` normal."""
    grid = np.linspace(-8.0, 8.0, 8001)
    y, s2 = EFFECTS.numpy(), STDDEVS.numpy() ** 2
    log_post, mu_mean, mu_var = [], [], []
    for log_tau in grid:
        v = s2 + math.exp(2 * log_tau)
        cov = MEAN_PRIOR_SD**2 + np.diag(v)
        log_post.append(
            stats.norm.logpdf(log_tau, *LOG_SD_PRIOR)
            + stats.multivariate_normal.logpdf(y, np.zeros(len(y)), cov)
        )
        precision = 1 / MEAN_PRIOR_SD**2 + np.sum(1 / v)
        mu_mean.append(np.sum(y / v) / precision)
        mu_var.append(1 / precision)
    w = np.exp(np.array(log_post) - max(log_post))
    w /= w.sum()
    mu_mean, mu_var = np.array(mu_mean), np.array(mu_var)
    m_tau = float(w @ grid)
    m_mu = float(w @ mu_mean)
    return {
        "log_tau": (m_tau, float(np.sqrt(w @ (grid - m_tau) ** 2))),
        "mu": (m_mu, float(np.sqrt(w @ (mu_var + (mu_mean - m_mu) ** 2)))),
    }


def read(model, seed: int = 0):
    _, potential_fn, transforms, _ = initialize_model(model)
    torch.manual_seed(seed)
    shapes = {"mu": torch.Size([]), "log_tau": torch.Size([]), "theta": torch.Size([8])}
    like = torch.randn(1, 10, dtype=torch.float64)
    found, reason = decentring(model, (), {}, shapes, transforms, like)
    return found, reason, potential_fn, shapes


def test_the_map_is_a_bijection_onto_pyros_reparameterised_density():
    found, reason, potential_fn, shapes = read(schools)
    assert found is not None, reason
    assert found.centred == ["theta"] and found.hyper_names == ["mu", "log_tau"]
    assert found.potential_reason.startswith("compiled")
    theta = torch.randn(5, 10, dtype=torch.float64) * 2.0
    point = found.decentre(theta)
    torch.testing.assert_close(found.recentre(point), theta, rtol=1e-12, atol=1e-12)
    for row, dec in zip(theta, point, strict=True):
        values = unravel(row, shapes)
        # G = mu + tau G_dec: the reparameterised density is the model's times tau^8
        jacobian = 8 * values["log_tau"]
        expected = float(potential_fn(values)) - float(jacobian)
        assert float(found.potential(dec)) == pytest.approx(expected, rel=1e-10)
        # and the decentred values are the standardised effects
        standard = (values["theta"] - values["mu"]) / values["log_tau"].exp()
        torch.testing.assert_close(dec[2:], standard)


def test_a_model_without_centred_sites_runs_the_path_alone():
    def noncentred():
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0).double(), MEAN_PRIOR_SD))
        log_tau = pyro.sample("log_tau", dist.Normal(torch.tensor(1.0).double(), 1.0))
        with pyro.plate("schools", 8):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0).double(), 1.0))
            pyro.sample("y", dist.Normal(mu + log_tau.exp() * z, STDDEVS), obs=EFFECTS)

    draws = []
    for interweave in (True, False):
        pyro.set_rng_seed(1)
        kernel = Slice(noncentred, interweave=interweave)
        MCMC(kernel, num_samples=30, warmup_steps=20, disable_progbar=True).run()
        draws.append(kernel.diagnostics())
    assert draws[0]["interweaving"] == "no Normal site whose scale depends on another latent site"
    assert draws[1]["interweaving"] == "interweave=False"
    assert draws[0]["log_density"] == draws[1]["log_density"]


def funnel() -> None:
    """Neal's funnel: ``v ~ N(0, 3)``, ``x_i ~ N(0, e^(v / 2))`` (9 of them)."""
    v = pyro.sample("v", dist.Normal(torch.tensor(0.0).double(), 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(9).double(), (v / 2).exp()).to_event(1))


class Still:
    """A base sampler that does not move: the step under test alone."""

    def sweep(self, target, theta, logp):
        return theta, logp

    def info(self) -> dict:
        return {}


def test_the_step_keeps_exact_draws_exact_and_carries_x_along_the_funnel():
    """From exact draws of the funnel, one step leaves ``v ~ N(0, 3)`` (leaving out the
    reparameterisation's Jacobian ``e^(9 v / 2)`` would shift it by 13.5, its sd times 9 / 2),
    and moves each ``x`` with its scale: the standardised values ``x e^(-v / 2)`` stay."""
    _, potential_fn, transforms, _ = initialize_model(funnel)
    shapes = {"v": torch.Size([]), "x": torch.Size([9])}
    generator = torch.Generator().manual_seed(0)
    v = 3.0 * torch.randn(2000, 1, generator=generator, dtype=torch.float64)
    x = torch.randn(2000, 9, generator=generator, dtype=torch.float64) * (v / 2).exp()
    theta = torch.cat([v, x], 1)
    found, reason = decentring(funnel, (), {}, shapes, transforms, theta[:1])
    assert found is not None, reason

    class Target:
        decentring = found

        def log_density(self, points):
            return torch.stack([-potential_fn(unravel(p, shapes)) for p in points])

    sampler = InterweavingSampler(Still(), warmup=0, generator=generator)
    with torch.no_grad():
        moved, _ = sampler.sweep(Target(), theta, torch.zeros(len(theta)))
    new_v = moved[:, 0].numpy()
    assert stats.kstest(new_v / 3.0, "norm").pvalue > 1e-3
    assert float(np.mean(new_v != v[:, 0].numpy())) > 0.99  # every chain moved
    torch.testing.assert_close(moved[:, 1:] / (moved[:, :1] / 2).exp(), x / (v / 2).exp())


SEQUENTIAL, PARALLEL = 1, 4  # cpu_count: chains one after another, or in worker processes


@pytest.mark.parametrize(
    "cpus", [SEQUENTIAL, pytest.param(PARALLEL, marks=pytest.mark.slow)]
)  # fmt: skip
def test_centred_eight_schools_reach_the_quadrature_moments(cpus, monkeypatch):
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)
    pyro.set_rng_seed(0)
    kernel = Slice(schools)
    mcmc = MCMC(kernel, num_samples=300, warmup_steps=100, num_chains=2, disable_progbar=True)
    mcmc.run()
    draws = {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    for name, (mean, sd) in quadrature().items():
        assert_mean(draws[name], mean)
        assert_sd(draws[name], sd)
