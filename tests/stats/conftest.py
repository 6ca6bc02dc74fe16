"""Helpers for the statistical tests of the slice sampler: run C chains on a Pyro model and
compare with known answers within the Monte Carlo standard error (ESS by ArviZ)."""

from __future__ import annotations

from collections.abc import Callable

import arviz as az
import numpy as np
import torch

from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.sampler import SliceSampler
from bayes_spheres.kernels.targets import PotentialTarget


def run_slice(
    model: Callable,
    draws: int = 500,
    warmup: int = 150,
    chains: int = 2,
    directions: str = "factor",
    seed: int = 0,
    scale_moves: int = 0,
    trajectory: float = 3.0,
) -> dict[str, np.ndarray]:
    """Constrained draws [chain, draw, ...] of every latent site of ``model``; ``scale_moves``
    scale moves (Liu & Sabatti 2000) end each sweep. ``directions="hamiltonian"`` runs
    :class:`HamiltonianSliceSampler` with trajectories of length ``trajectory``."""
    potential = FlatPotential.from_model(model)
    gen = torch.Generator().manual_seed(seed)
    theta = 4.0 * torch.rand(chains, potential.size, generator=gen) - 2.0
    target = PotentialTarget(potential)
    sampler: SliceSampler | HamiltonianSliceSampler
    if directions == "hamiltonian":
        sampler = HamiltonianSliceSampler(
            warmup, trajectory, init_step=0.1, scale_moves=scale_moves, generator=gen
        )
    else:
        sampler = SliceSampler(
            potential.size, directions, warmup=warmup, scale_moves=scale_moves, generator=gen
        )
    kept = []
    with torch.no_grad():
        logp = target.log_density(theta)
        for i in range(warmup + draws):
            theta, logp = sampler.sweep(target, theta, logp)
            if i >= warmup:
                kept.append(theta)
    samples = potential.constrain(potential.unravel(torch.stack(kept, 1)))
    return {k: v.numpy() for k, v in samples.items()}


def assert_mean(draws: np.ndarray, truth: float | np.ndarray, k: float = 4.0) -> None:
    """``|mean - truth| < k * MCSE`` per coordinate, MCSE = sd / sqrt(bulk ESS)."""
    draws = draws.reshape(draws.shape[0], draws.shape[1], -1)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), draws.shape[2:])
    for j in range(draws.shape[2]):
        x = draws[:, :, j]
        ess = float(az.ess(x))
        mcse = x.std() / np.sqrt(ess)
        err = abs(x.mean() - truth[j])
        assert err < k * mcse, (
            f"coordinate {j}: mean {x.mean():.4f}, truth {truth[j]:.4f}, "
            f"MCSE {mcse:.4f} (ESS {ess:.0f})"
        )
        assert ess > 50, f"coordinate {j}: ESS {ess:.0f} too small to test"


def assert_rhat(draws: np.ndarray, limit: float = 1.02) -> None:
    rhat = az.rhat(draws.reshape(draws.shape[0], draws.shape[1], -1)[..., 0])
    assert float(rhat) < limit, f"R-hat {float(rhat):.3f}"
