"""The integrator every trajectory of the ``hamiltonian`` mode is built from: the exact flow
of the Gaussian part (or a drift), the energy, one leapfrog step and where a trajectory ends.

Split HMC (Shahbaba et al. 2014): with a Gaussian part ``N(z; 0, I)`` its flow is a rotation
of ``(z, v)`` and only the rest enters as kicks; without one this is ordinary leapfrog with unit
mass (the mass matrix lives in the change of coordinates, ``Splitting.preconditioned``).
Shared by the fixed-length update (:mod:`~bayes_spheres.kernels.hamiltonian`) and the
no-U-turn one (:mod:`~bayes_spheres.kernels.no_u_turn`).
"""

from __future__ import annotations

import math

from torch import Tensor

from bayes_spheres.kernels.protocols import Rest


def flow(z: Tensor, v: Tensor, eps: float, gaussian: bool) -> tuple[Tensor, Tensor]:
    """The exact flow for time ``eps`` of ``H = |z|^2 / 2 + |v|^2 / 2`` (a rotation), or of
    ``H = |v|^2 / 2`` (a drift) when there is no Gaussian part."""
    if not gaussian:
        return z + eps * v, v
    c, s = math.cos(eps), math.sin(eps)
    return z * c + v * s, v * c - z * s


def energy(z: Tensor, v: Tensor, logp_rest: Tensor, gaussian: bool) -> Tensor:
    """``H = -log rest(z) + |v|^2 / 2`` (+ ``|z|^2 / 2`` with a Gaussian part), per chain."""
    h = 0.5 * (v * v).sum(-1) - logp_rest
    return h + 0.5 * (z * z).sum(-1) if gaussian else h


def leapfrog(
    z: Tensor, v: Tensor, grad: Tensor, eps: float, rest: Rest, gaussian: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Half kick from the rest, exact Gaussian flow (or drift), half kick.

    Returns ``(z, v, logp, grad)`` at the new point."""
    v = v + 0.5 * eps * grad
    z, v = flow(z, v, eps, gaussian)
    logp, grad = rest(z)
    return z, v + 0.5 * eps * grad, logp, grad


def ended(h: Tensor, level: Tensor) -> Tensor:
    """Whether energies ``h`` are above the level at which a trajectory's direction ends
    (or not a number)."""
    return ~(h <= level)
