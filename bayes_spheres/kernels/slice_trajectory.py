"""One slice update along a trajectory of fixed length for C chains: the momentum and slice
level are drawn, the trajectory is integrated both ways from the current state (its offset
``k`` on the trajectory drawn uniformly), each direction ends at its first state above the
slice's energy level, and each chain's next state is drawn uniformly among the trajectory's
states inside the slice (``bayes_spheres/kernels/hamiltonian.py`` gives the argument and the
sampler around it; the fast path's integrators in ``kernels/fast/`` share
:func:`start_trajectory` and :func:`choose_state`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayes_spheres.kernels.leapfrog import ended, energy, leapfrog
from bayes_spheres.kernels.protocols import Rest, TrajectoryStep

# Pyro's HMC and NUTS call a transition divergent when the energy rises by more than this.
MAX_ENERGY = 1000.0


def start_trajectory(
    z: Tensor,
    logp_rest: Tensor,
    gaussian: bool,
    steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Momentum, energy, slice level ``-H - Exp(1)`` and the current state's offset ``k``
    (``generator``: the random stream; None, torch's global one)."""
    v = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
    h0 = energy(z, v, logp_rest, gaussian)
    log_u = -h0 - torch.empty_like(h0).exponential_(generator=generator)
    # on the CPU: a number of steps
    k = int(torch.randint(0, steps + 1, (), generator=generator))
    return v, h0, log_u, k


def truncate(energies: Tensor, level: Tensor) -> Tensor:
    """The energies [S, C] of one direction of a trajectory (in the order of its steps), with
    each chain's from its first state above ``level`` [C] on set to ``inf``: those states are
    out of the trajectory (``kernels/hamiltonian.py``, module docstring)."""
    return energies.masked_fill(ended(energies, level).cumsum(0) > 0, math.inf)


def choose_state(
    energies: list[Tensor] | Tensor,
    h0: Tensor,
    log_u: Tensor,
    max_energy: float,
    generator: torch.Generator | None = None,
) -> tuple[list[int], Tensor, Tensor, Tensor]:
    """A uniform draw per chain among the trajectory's states inside the slice (index 0, the
    current state, always is); also the mean ``min(1, e^-dH)``, the fraction inside and
    whether any energy rose by more than ``max_energy`` or was not finite. ``energies``: one
    [C] per new state, or all of them as [S, C]."""
    if len(energies) == 0:
        zero = torch.zeros_like(h0)
        return [0] * len(h0), zero + 1.0, zero, zero.bool()
    h = energies if isinstance(energies, Tensor) else torch.stack(energies)  # [S, C]
    inside = (-h >= log_u).to(h.dtype)
    weights = torch.cat([torch.ones_like(inside[:1]), inside]).T  # [C, S + 1]
    pick = torch.multinomial(weights, 1, generator=generator)[:, 0].tolist()
    accept = torch.exp(torch.clamp(h0 - h, max=0.0)).nan_to_num(0.0).mean(0)
    diverging = ((h - h0 > max_energy) | ~torch.isfinite(h)).any(0)
    return pick, accept, inside.mean(0), diverging


def slice_trajectory(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    rest: Rest,
    eps: float,
    steps: int,
    gaussian: bool,
    max_energy: float = MAX_ENERGY,
    generator: torch.Generator | None = None,
) -> TrajectoryStep:
    """One slice update along a trajectory of ``steps`` leapfrog steps (module docstring of
    ``kernels/hamiltonian.py``).

    All chains share the step size and the offset ``k`` of the current state on the
    trajectory (both independent of the state); each chain draws its own momentum, slice
    level and state.
    """
    v, h0, log_u, k = start_trajectory(z, logp_rest, gaussian, steps, generator)
    level = max_energy - log_u  # where a direction ends (kernels/hamiltonian.py's docstring)
    states, energies = [(z, logp_rest, grad)], []
    for sign, n in ((-1.0, k), (1.0, steps - k)):
        zz, vv, lp, gg = z, sign * v, logp_rest, grad
        direction, over = [], torch.zeros_like(h0, dtype=torch.bool)
        for _ in range(n):
            if bool(over.all()):  # every chain's direction has ended: nothing to integrate
                direction.append(torch.full_like(h0, math.inf))
                states.append(states[-1])
                continue
            zz, vv, lp, gg = leapfrog(zz, vv, gg, eps, rest, gaussian)
            states.append((zz, lp, gg))
            direction.append(energy(zz, vv, lp, gaussian))
            over |= ended(direction[-1], level)
        if direction:
            energies.extend(truncate(torch.stack(direction), level).unbind(0))
    pick, accept, in_slice, diverging = choose_state(energies, h0, log_u, max_energy, generator)
    chosen = [torch.stack([states[i][j][c] for c, i in enumerate(pick)]) for j in range(3)]
    return TrajectoryStep(*chosen, accept=accept, in_slice=in_slice, diverging=diverging)
