"""What warm-up teaches the trajectories: a floor under the no-U-turn length and a fixed
length's unit, both from the posterior's longest scale, and whether scale moves pay.

The no-U-turn criterion (:mod:`~bayes_spheres.kernels.no_u_turn`) stops a trajectory when the
sum of its momenta turns against either end. Where a diagonal mass matrix leaves strong
correlations (a 100-D Gaussian with every correlation 0.9: whitened scales 0.32 in 99
directions, 9.5 in one), the many short directions turn within a few steps and the tree stops
long before it has moved along the long one; NUTS then mixes the long direction by a random
walk (Pyro's NUTS and ours: min bulk ESS below 40 of 2,000 draws there, R-hat over 1.08).

The floor: after warm-up, the largest eigenvalue ``lambda`` of the covariance of the last
half of the warm-up states, in the coordinates the sampler integrates in (the adapted mass
matrix whitening them), gives the longest scale ``sqrt(lambda)``, and a quarter period of a
Gaussian of that scale, ``pi / 2 sqrt(lambda)``, is the least length in time worth
integrating (the longest scale sets the length a trajectory needs to avoid a random walk:
Neal 2011, "MCMC using Hamiltonian dynamics", on tuning the trajectory length). Below it a
U-turn does not end the trajectory: the criterion only counts for (sub)trees of at least
``ceil(floor / eps)`` states. That rule is a function of each subtree's own states (its
size), fixed after warm-up and independent of the chain's state, so the tree is the same
whichever of its states the chain started from and the update stays exact, as with NUTS's
own criterion. Trees double, so the floor is met by the first power of two above it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayes_spheres.kernels.protocols import Splitting

# Scale moves are dropped after warm-up where the trajectories alone moved the log radius at
# least this share as far as independent draws would (:func:`radius_mixing`).
TRAJECTORIES_MIX_RADIUS = 0.5


def longest_scale(z: Tensor) -> float:
    """``sqrt`` of the largest eigenvalue of the sample covariance of ``z`` [N, P] (the
    posterior's longest scale in those coordinates)."""
    if len(z) < 2:
        return 0.0
    centred = (z - z.mean(0)).double()
    covariance = centred.T @ centred / (len(z) - 1)
    return math.sqrt(max(float(torch.linalg.eigvalsh(covariance)[-1]), 0.0))


def warmup_floor(states: list[Tensor], split: Splitting) -> float:
    """The floor ``pi / 2 * longest scale`` from warm-up states (each [C, P], unconstrained)
    in the coordinates ``split`` integrates in (module docstring); 0 without states."""
    if not states:
        return 0.0
    z = split.to_z(torch.cat(states))
    return 0.5 * math.pi * longest_scale(z)


def least_states(floor: float, eps: float) -> int:
    """The fewest states a (sub)tree needs before a U-turn may end it: ``ceil(floor / eps)``
    (at least 1: every U-turn counts)."""
    return max(1, math.ceil(floor / eps))


def length_scale(states: list[Tensor], split: Splitting) -> float:
    """The unit of a fixed trajectory length along a Gaussian part: the posterior's longest
    scale (:func:`longest_scale` of the warm-up states, in the whitened coordinates of
    ``split``'s Gaussian part), at most 1; 1 where fewer than two states or no spread say
    nothing.

    There the prior has scale 1 in every direction, and a log-concave likelihood only narrows
    it (Brascamp & Lieb 1976: the posterior's covariance is at most the prior's), so a length
    fixed in the prior's units (the fast path's 6: about one period of its rotation) suits a
    posterior where the data leave some direction to the prior, as the spheres' flat one
    (scale 1: unchanged), and runs many periods of the posterior's own rotation where the
    data pin every direction (German credit's logistic regression: scale 0.2, 89 steps an
    update where 27 go once round). Warm-up states are autocorrelated and few against the
    dimension, which inflates the top eigenvalue of their covariance: the unit errs long
    (item response theory's 501 coordinates from 150 states: 1)."""
    z = split.to_z(torch.cat(states)) if states else None
    scale = longest_scale(z) if z is not None and len(z) >= 2 else 0.0
    return min(1.0, scale) if math.isfinite(scale) and scale > 0.0 else 1.0


def radius_mixing(radial: list[tuple[Tensor, Tensor]]) -> float:
    """From warm-up updates' ``(log |theta| after, its jump along the trajectory)`` [C] each:
    the trajectories' mean squared jump of the log radius over twice its variance per chain,
    what independent draws would jump (0: the radius never moves; 1: as if redrawn). 0, which
    keeps the scale moves, where fewer than two updates or no spread say nothing.

    Scale moves (``theta <- g theta``, Liu & Sabatti 2000) redraw the radius. On a Gaussian
    prior cut by constraints (the spheres' posteriors) a trajectory is nearly a rotation and
    barely changes it (0.24-0.36 at the paper's scale), and they pay; where the data pin the
    state far from the origin (a regression's narrow posterior) one trajectory moves the
    radius across its posterior range (German credit's logistic regression: 0.96), and they
    cost half an update for nothing (21.8 s against 11.2 s for 1,500 updates of one chain,
    the same ESS). At :data:`TRAJECTORIES_MIX_RADIUS` or more they are dropped. The share is
    measured on warm-up's trajectories, which may be longer than the fitted ones after it
    (German credit: 1.5 against 1.2), so a share near the threshold overstates the mixing."""
    if len(radial) < 2:
        return 0.0
    radii = torch.stack([r for r, _ in radial]).double()
    jumps = torch.stack([j for _, j in radial]).double()
    variance = float(radii.var(dim=0).mean())
    share = float((jumps**2).mean()) / (2.0 * variance) if variance > 0.0 else 0.0
    return share if math.isfinite(share) else 0.0
