"""What the kernels' algorithms exchange: the target protocols and the records they return.

Nothing here samples. :mod:`~bayes_spheres.kernels.steps`, :mod:`~bayes_spheres.kernels.sampler`
and :mod:`~bayes_spheres.kernels.hamiltonian` (the algorithms) and
:mod:`~bayes_spheres.kernels.potential` and :mod:`~bayes_spheres.kernels.fast.logistic` (the
targets) import this module and nothing above it.

Symbols: ``theta`` [C, P] the unconstrained state of C chains; ``z`` the same state in the
coordinates of a :class:`Splitting` (``theta = mean + z @ chol.T``); ``v`` a momentum; ``t`` or
``s`` a scalar offset along a direction or a log scale factor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import Tensor

# ``t [C, J] -> log density [C, J]`` at J offsets along one direction per chain.
LogDensityAlong = Callable[[Tensor], Tensor]
# log density and its gradient of the non-Gaussian rest, in the coordinates ``z`` [C, P].
Rest = Callable[[Tensor], tuple[Tensor, Tensor]]


class Lines(Protocol):
    """Chains at ``theta`` [C, P] moving along the columns of a direction basis."""

    theta: Tensor

    def along(self, k: int) -> LogDensityAlong: ...

    def move(self, k: int, t: Tensor) -> None: ...


class Target(Protocol):
    """A log density over unconstrained vectors [P], batched over chains."""

    def log_density(self, theta: Tensor) -> Tensor: ...

    def lines(self, theta: Tensor, directions: Tensor) -> Lines: ...

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        """``s [C, J] -> log p(e^s theta)`` for chains at ``theta`` [C, P]: the density along
        the scaling group's orbit, for the scale move (Liu & Sabatti 2000)."""
        ...

    def splitting(self, like: Tensor) -> Splitting:
        """The target as an exact Gaussian part and a rest with gradients, for the
        ``hamiltonian`` mode; ``like`` gives the size, dtype and device."""
        ...


@dataclass
class TrajectoryStep:
    """One slice update along a trajectory, per chain: the chosen state, its rest's log
    density and gradient, the mean ``min(1, e^-dH)`` over the trajectory, the fraction of new
    states inside the slice, and whether any state's energy rose by more than the divergence
    threshold (or was not finite)."""

    z: Tensor
    logp_rest: Tensor
    grad: Tensor
    accept: Tensor
    in_slice: Tensor
    diverging: Tensor


# ``(z, logp_rest, grad, eps, steps, max_energy) -> TrajectoryStep``: a faster integrator for a
# particular rest, the same chain as the generic one (e.g. the logistic fast path).
Trajectory = Callable[[Tensor, Tensor, Tensor, float, int, float], TrajectoryStep]


@dataclass
class Splitting:
    """A target written as ``N(z; 0, I) * rest(z)`` (``gaussian``) or as ``rest(z)`` alone,
    with ``theta = mean + z @ chol.T``. ``trajectory``: an integrator specialised to this
    rest (None: the generic leapfrog,
    :func:`~bayes_spheres.kernels.slice_trajectory.slice_trajectory`).
    """

    rest: Rest
    mean: Tensor
    chol: Tensor
    gaussian: bool
    trajectory: Trajectory | None = field(default=None, repr=False)

    def to_z(self, theta: Tensor) -> Tensor:
        return torch.linalg.solve_triangular(self.chol, (theta - self.mean).T, upper=False).T

    def to_theta(self, z: Tensor) -> Tensor:
        return torch.addmm(self.mean, z, self.chol.T)

    def preconditioned(self, scale: Tensor) -> Splitting:
        """The same target in coordinates ``z = scale^-1 z_old`` (``scale`` [P], a diagonal,
        or [P, P] lower triangular): HMC with inverse mass matrix ``scale scale'`` in the old
        coordinates is unit-mass HMC in the new. Only without a Gaussian part (a rotation
        would no longer be its exact flow)."""
        if self.gaussian:
            raise ValueError("a Gaussian part is already exact; precondition only the rest")
        matrix = torch.diag(scale) if scale.dim() == 1 else scale
        rest = self.rest

        def scaled_rest(z: Tensor) -> tuple[Tensor, Tensor]:
            logp, grad = rest(z @ matrix.T)
            return logp, grad @ matrix

        def diagonal_rest(z: Tensor) -> tuple[Tensor, Tensor]:
            logp, grad = rest(z * scale)
            return logp, grad * scale

        scaled = diagonal_rest if scale.dim() == 1 else scaled_rest
        return replace(self, rest=scaled, chol=self.chol @ matrix, trajectory=None)
