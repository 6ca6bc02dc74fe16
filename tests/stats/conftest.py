"""Helpers for the statistical tests of the slice kernel: run it through ``pyro.infer.MCMC``
as users do and compare with known answers within the Monte Carlo standard error (ESS by
ArviZ)."""

from __future__ import annotations

from collections.abc import Callable

import arviz as az
import numpy as np
import pyro
from pyro.infer import MCMC

from bayes_spheres.kernels import Slice


def run_slice(
    model: Callable,
    draws: int = 500,
    warmup: int = 150,
    chains: int = 2,
    directions: str = "factor",
    seed: int = 0,
    scale_moves: int = 0,
    trajectory: float = 3.0,
    **settings: object,
) -> dict[str, np.ndarray]:
    """Constrained draws [chain, draw, ...] of every latent site of ``model`` from
    ``MCMC(Slice(model, ...), num_chains=chains)``; ``scale_moves`` scale moves (Liu & Sabatti
    2000) end each update; ``trajectory`` is the hamiltonian mode's length."""
    pyro.set_rng_seed(seed)
    kernel = Slice(
        model, directions=directions, scale_moves=scale_moves, trajectory=trajectory,
        **settings,
    )  # fmt: skip
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                disable_progbar=True)  # fmt: skip
    mcmc.run()
    return {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}


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
