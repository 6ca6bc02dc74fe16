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


def assert_mean(
    draws: np.ndarray,
    truth: float | np.ndarray,
    k: float = 4.0,
    truth_se: float | np.ndarray = 0.0,
) -> None:
    """``|mean - truth| < k * sqrt(MCSE^2 + truth_se^2)`` per coordinate, MCSE = sd / sqrt(bulk
    ESS); ``truth_se``: the standard error of a truth that is itself a Monte Carlo estimate."""
    draws = draws.reshape(draws.shape[0], draws.shape[1], -1)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), draws.shape[2:])
    truth_se = np.broadcast_to(np.asarray(truth_se, dtype=float), draws.shape[2:])
    for j in range(draws.shape[2]):
        x = draws[:, :, j]
        ess = float(az.ess(x))
        mcse = x.std() / np.sqrt(ess)
        err = abs(x.mean() - truth[j])
        assert err < k * np.hypot(mcse, truth_se[j]), (
            f"coordinate {j}: mean {x.mean():.4f}, truth {truth[j]:.4f} "
            f"(+- {truth_se[j]:.4f}), MCSE {mcse:.4f} (ESS {ess:.0f})"
        )
        assert ess > 50, f"coordinate {j}: ESS {ess:.0f} too small to test"


def assert_sd(
    draws: np.ndarray,
    truth: float | np.ndarray,
    k: float = 4.0,
    truth_se: float | np.ndarray = 0.0,
) -> None:
    """``|sd - truth| < k * sqrt(MCSE_sd^2 + truth_se^2)`` per coordinate. MCSE_sd is ArviZ's
    formula (``az.mcse(method="sd")``, written out here: ArviZ 0.23's own call fails under
    numba with numpy 2.4): the delta method on the squared deviations ``d^2``,
    ``sqrt((E d^4 - (E d^2)^2) / ESS(d^2)) / (2 sd)`` with ``ESS(d^2)`` ArviZ's ``ess_mean``;
    for a normal posterior it is ``sd / sqrt(2 ESS)``, and it widens with the kurtosis."""
    draws = draws.reshape(draws.shape[0], draws.shape[1], -1)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), draws.shape[2:])
    truth_se = np.broadcast_to(np.asarray(truth_se, dtype=float), draws.shape[2:])
    for j in range(draws.shape[2]):
        x = draws[:, :, j]
        d2 = (x - x.mean()) ** 2
        var = d2.mean()
        mcse = float(
            np.sqrt((np.mean(d2**2) - var**2) / float(az.ess(d2, method="mean")) / var / 4)
        )
        err = abs(x.std() - truth[j])
        assert err < k * np.hypot(mcse, truth_se[j]), (
            f"coordinate {j}: sd {x.std():.4f}, truth {truth[j]:.4f} (+- {truth_se[j]:.4f}), "
            f"MCSE {mcse:.4f}"
        )


def assert_rhat(draws: np.ndarray, limit: float = 1.02, every: bool = False) -> None:
    """Rank-normalised split R-hat below ``limit``: of the first coordinate, or of ``every``
    one (``<= limit`` then)."""
    draws = draws.reshape(draws.shape[0], draws.shape[1], -1)
    if not every:
        rhat = az.rhat(draws[..., 0])
        assert float(rhat) < limit, f"R-hat {float(rhat):.3f}"
        return
    rhat = np.array([float(az.rhat(draws[..., j])) for j in range(draws.shape[2])])
    worst = int(np.argmax(rhat))
    assert rhat[worst] <= limit, f"coordinate {worst}: R-hat {rhat[worst]:.4f} > {limit}"
