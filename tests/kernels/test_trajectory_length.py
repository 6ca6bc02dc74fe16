"""What warm-up teaches a trajectory (``kernels/trajectory_length.py``): the unit of the fast
path's fixed length and whether its scale moves pay, by hand, in the degenerate cases a short
warm-up gives, and through ``pyro.infer.MCMC`` on a posterior the data pin, against
quadrature."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from bayes_spheres.kernels import Slice
from bayes_spheres.kernels.protocols import Splitting
from bayes_spheres.kernels.trajectory_length import length_scale, radius_mixing
from tests.kernels.test_hamiltonian import _assert_close

DT = torch.float64


def test_length_scale_by_hand():
    """The unit of a fixed length is the sd along the first principal axis of the warm-up
    states in the prior-whitened coordinates, at most 1, and 1 without states: states
    ``theta = m + L z`` with ``z`` four points whose covariance is ``diag(16, 4) / 300``."""
    chol = torch.tensor([[2.0, 0.0], [1.0, 3.0]], dtype=DT)
    mean = torch.tensor([1.0, -1.0], dtype=DT)
    split = Splitting(lambda z: (z.sum(-1), torch.ones_like(z)), mean, chol, gaussian=True)
    z = 0.1 * torch.tensor([[2.0, 1.0], [-2.0, -1.0], [2.0, -1.0], [-2.0, 1.0]], dtype=DT)
    states = [mean + z[:2] @ chol.T, mean + z[2:] @ chol.T]  # two updates of two chains
    assert length_scale(states, split) == pytest.approx(math.sqrt(16 / 300))
    assert length_scale([mean + 30 * z @ chol.T], split) == 1.0
    assert length_scale([], split) == 1.0


def test_radius_mixing_by_hand():
    """The trajectories' mean squared jump of ``log |theta|`` over twice its variance per
    chain: 0 where it never moves, 1 for jumps as large as independent draws would make."""
    radii = [torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.0]), torch.tensor([1.0, 4.0])]
    still = [(r, torch.zeros(2)) for r in radii]
    assert radius_mixing(still) == 0.0
    variance = (1.0 + 3.0) / 2  # per chain, unbiased: [0, 2, 1] -> 1, [1, 1, 4] -> 3
    jumps = [torch.tensor([2.0, 2.0])] * 3  # mean square 4 = 2 * variance
    assert radius_mixing(list(zip(radii, jumps, strict=True))) == pytest.approx(4 / (2 * variance))
    assert radius_mixing([]) == 0.0


def _pinned_logistic(n: int = 400):
    """theta ~ N(0.5, 2^2) and ``n`` labelled points at x ~ N(0, 1) drawn from a logistic
    regression with theta = 1: the data pin theta to about 0.1 of the prior's 2. The Pyro
    model and the mean and second moment by quadrature."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, generator=g, dtype=DT)
    y = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(x)).to(DT)

    def model():
        theta = pyro.sample("theta", dist.Normal(torch.tensor(0.5, dtype=DT), 2.0))
        with pyro.plate("data", n):
            pyro.sample("y", dist.Bernoulli(logits=theta * x), obs=y)

    grid = torch.linspace(-3, 5, 400_001, dtype=DT)
    log_density = dist.Normal(0.5, 2.0).log_prob(grid) + (
        dist.Bernoulli(logits=grid[:, None] * x).log_prob(y).sum(-1)
    )
    dens = torch.exp(log_density - log_density.max())
    mean = float((grid * dens).sum() / dens.sum())
    second = float((grid**2 * dens).sum() / dens.sum())
    return model, mean, second


@pytest.mark.parametrize(
    "sequential", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["sequential", "workers"]
)
def test_a_posterior_the_data_pin_runs_one_period_of_its_own(sequential, monkeypatch):
    """A logistic regression whose data pin the coefficient (posterior sd near 0.1 of the
    prior's) through ``pyro.infer.MCMC(Slice(model))`` on the fast path, in both chain
    regimes: after warm-up the fixed length is measured in the posterior's scale and the scale
    moves are dropped, and the draws keep the moments from quadrature."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 2 if sequential else 8)
    model, mean, second = _pinned_logistic()
    pyro.set_rng_seed(0)
    kernel = Slice(model)
    mcmc = MCMC(kernel, num_samples=600, warmup_steps=200, num_chains=2, disable_progbar=True)
    mcmc.run()
    diagnostics = mcmc.diagnostics()
    assert set(diagnostics["path"].values()) == {"fast"}
    for chain in ("chain 0", "chain 1"):
        assert diagnostics["length_scale"][chain] < 0.5
        assert diagnostics["scale_moves"][chain].startswith("dropped")
    draws = mcmc.get_samples(group_by_chain=True)["theta"].numpy()[..., None]
    _assert_close(draws, np.array([mean]))
    _assert_close(draws**2, np.array([second]))


def test_a_short_warmup_keeps_the_prior_units_and_the_scale_moves():
    """Fewer than two warm-up states, or states that never spread, say nothing about the
    posterior's scale: the unit stays 1 (not 0: one-step trajectories), and the scale moves
    stay (not a share of 0 / 0)."""
    split = Splitting(lambda z: (z.sum(-1), torch.ones_like(z)), torch.zeros(2, dtype=DT),
                      torch.eye(2, dtype=DT), gaussian=True)  # fmt: skip
    point = torch.ones(1, 2, dtype=DT)
    assert length_scale([point], split) == 1.0
    assert length_scale([point, point], split) == 1.0
    radius = torch.tensor([0.5], dtype=DT)
    assert radius_mixing([(radius, torch.zeros(1, dtype=DT))]) == 0.0
    assert radius_mixing([(radius, torch.ones(1, dtype=DT))] * 3) == 0.0  # no spread
    float32 = [(torch.tensor([0.5]), torch.tensor([0.1]))] * 3
    assert radius_mixing(float32) == 0.0
