"""The moves of annealed importance sampling: what carries the particles from one tempered
target to the next (``bayes_spheres/evidence/__init__.py``). A move is built for a model and
called at each temperature; :func:`~bayes_spheres.evidence.ais.anneal` is the one loop that
runs either.

- :class:`HamiltonianMove`: slice updates along Hamiltonian trajectories of the ``Slice``
  kernel's fast-path target (``bayes_spheres/kernels/fast/logistic.py``), the prior's exact flow
  with the tempered likelihood's kicks;
- :class:`CoordinateMove`: sweeps of univariate slice updates through Pyro's potential of the
  tempered model, for any model with continuous latent sites.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import torch
from pyro import poutine
from torch import Tensor

from bayes_spheres.evidence.tempering import Tempering
from bayes_spheres.kernels.fast.logistic import LogisticTarget
from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, MAX_LEAPFROGS, HamiltonianSliceSampler
from bayes_spheres.kernels.paths import Problem
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    unravel,
)
from bayes_spheres.kernels.sampler import Directions, SliceSampler


class Transition(StrEnum):
    """The move at each temperature (module docstring); ``auto``: the first the model
    allows."""

    AUTO = "auto"
    HAMILTONIAN = "hamiltonian"
    COORDINATE = "coordinate"


class Move(Protocol):
    """Particles' states at a temperature: :meth:`start` makes them from points ``theta``
    [P, size] (unconstrained), :meth:`log_likelihood` reads ``log p(y | theta)`` [P] off them
    and a call moves them, leaving the target at ``beta`` invariant."""

    info: dict

    def start(self, theta: Tensor) -> Any: ...

    def log_likelihood(self, state: Any) -> Tensor: ...

    def __call__(self, state: Any, beta: float) -> Any: ...


@dataclass(frozen=True)
class Particles:
    """Particles in the fast target's prior-whitened coordinates ``z`` [P, size] with their
    log likelihood [P] and its gradient (untempered)."""

    z: Tensor
    log_likelihood: Tensor
    gradient: Tensor


class HamiltonianMove:
    """``sweeps`` slice updates along Hamiltonian trajectories of the tempered fast target.
    The step at ``beta`` is ``step_size / sqrt(beta)`` (the likelihood's curvature scales
    with ``beta``), at most ``trajectory`` (one step: the prior's exact flow dominates)."""

    def __init__(
        self, target: LogisticTarget, sweeps: int, trajectory: float, step_size: float
    ) -> None:
        self.target, self.posterior = target, target.splitting()
        self.sweeps, self.trajectory, self.step_size = sweeps, trajectory, step_size
        self.in_slice: list[float] = []
        self.leapfrogs = 0

    def start(self, theta: Tensor) -> Particles:
        z = self.posterior.to_z(theta)
        return Particles(z, *self.posterior.rest(z))

    def log_likelihood(self, state: Particles) -> Tensor:
        return state.log_likelihood

    def __call__(self, state: Particles, beta: float) -> Particles:
        tempered = self.target.splitting(beta=beta)
        z, logp, grad = state.z, beta * state.log_likelihood, beta * state.gradient
        base = (
            min(self.step_size / math.sqrt(beta), self.trajectory) if beta > 0 else self.trajectory
        )
        for _ in range(self.sweeps):
            # on the CPU: a number
            eps = base * (0.9 + 0.2 * float(torch.rand(())))
            steps = min(max(1, round(self.trajectory / eps)), MAX_LEAPFROGS)
            step = tempered.trajectory(z, logp, grad, eps, steps, MAX_ENERGY)
            z, logp, grad = step.z, step.logp_rest, step.grad
            self.in_slice.append(float(step.in_slice.mean()))
            self.leapfrogs += steps
        return Particles(z, *self.posterior.rest(z))

    @property
    def info(self) -> dict:
        moves = max(len(self.in_slice), 1)
        return {
            "transition": Transition.HAMILTONIAN.value,
            "step_size": self.step_size,
            "trajectory": self.trajectory,
            "in_slice_mean": sum(self.in_slice) / moves,
            "leapfrogs_per_move": self.leapfrogs / moves,
        }


class CoordinateMove:
    """``sweeps`` sweeps of univariate slice updates with fixed widths through Pyro's potential
    of the tempered model (``tempering.beta`` set per temperature), for all particles in one
    run of the model where that equals Pyro's per point (checked)."""

    def __init__(
        self,
        tempering: Tempering,
        potential: Callable[[Tensor], Tensor],
        batched: BatchedPotential,
        like: Tensor,
        sweeps: int,
        init_width: float,
        max_steps: int,
        reason: str,
    ) -> None:
        why = batched_potential(batched, potential, like)
        self.target = PotentialTarget(potential, None if why else batched)
        self.tempering, self.sweeps = tempering, sweeps
        self.sampler = SliceSampler(
            like.shape[-1], directions=Directions.COORDINATE, init_width=init_width,
            max_steps=max_steps, dtype=like.dtype, device=like.device,
        )  # fmt: skip
        self.info = {"transition": Transition.COORDINATE.value, "reason": reason}

    def start(self, theta: Tensor) -> Tensor:
        return theta

    def log_likelihood(self, theta: Tensor) -> Tensor:
        try:
            self.tempering.beta = 0.0
            log_prior = self.target.log_density(theta)
            self.tempering.beta = 1.0
            return self.target.log_density(theta) - log_prior
        finally:
            self.tempering.beta = 1.0

    def __call__(self, theta: Tensor, beta: float) -> Tensor:
        try:
            self.tempering.beta = beta
            logp = self.target.log_density(theta)
            for _ in range(self.sweeps):
                theta, logp = self.sampler.sweep(self.target, theta, logp)
            return theta
        finally:
            self.tempering.beta = 1.0


def coordinate_move(
    tempering: Tempering,
    problem: Problem,
    like: Tensor,
    sweeps: int,
    init_width: float,
    max_steps: int,
    reason: str,
) -> CoordinateMove:
    """A :class:`CoordinateMove` through Pyro's potential of the tempered model
    (``problem``, read off it; ``like`` [2, size]: points to check the batched potential
    at)."""

    def potential(points: Tensor) -> Tensor:
        return problem.potential_fn(unravel(points, problem.shapes))

    batched = BatchedPotential(
        problem.model, problem.args, problem.kwargs, problem.transforms, problem.shapes,
        problem.prototype,
    )  # fmt: skip
    return CoordinateMove(
        tempering, potential, batched, like, sweeps, init_width, max_steps, reason
    )


def pilot_step_size(
    target: LogisticTarget, theta: Tensor, trajectory: float, updates: int
) -> float:
    """The step size the ``Slice`` kernel's warm-up adapts at the posterior, from ``theta``."""
    sampler = HamiltonianSliceSampler(
        warmup=updates, trajectory=trajectory, warmup_trajectory=trajectory
    )
    logp = target.log_density(theta)
    for _ in range(updates):
        theta, logp = sampler.sweep(target, theta, logp)
    return sampler.step_size


def prior_draws(
    model: Callable, args: tuple, kwargs: dict, transforms: dict, shapes: dict, particles: int
) -> Tensor:
    """``particles`` draws of the latent sites from the prior, unconstrained, flat [P, size]."""
    rows = []
    for _ in range(particles):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
        values = [
            transforms[name](trace.nodes[name]["value"]).reshape(-1) if name in transforms
            else trace.nodes[name]["value"].reshape(-1)
            for name in shapes
        ]  # fmt: skip
        rows.append(torch.cat(values).detach())
    return torch.stack(rows)
