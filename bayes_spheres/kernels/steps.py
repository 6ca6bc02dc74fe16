"""Univariate slice sampling (Neal 2003, Sec. 4), batched over C chains, as pure functions.

Every function works on the scalar offset ``t`` along one direction ``d`` from the current
point ``theta`` of each chain; the target enters only through ``logp_along``, a callable
``t [C, K] -> log density [C, K]`` at ``theta + t d`` (K candidate offsets per chain, so both
ends of an interval cost one call). Masks keep chains that are done from moving while the
others continue. The structure follows BlackJAX's ``blackjax/mcmc/slice.py``: stepping-out,
shrinkage and one update are small functions that tests call directly.

References: R. M. Neal (2003), "Slice sampling", Ann. Statist. 31(3), Figs. 3 and 5;
M. M. Tibbits, C. Groendyke, M. Haran, J. C. Liechty (2014), "Automated factor slice
sampling", J. Comput. Graph. Statist. 23(2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LogDensityAlong = Callable[[Tensor], Tensor]

# Shrinkage always ends (t = 0 is on the slice), but if rounding puts the current point just
# below the level the interval would shrink forever; after this many shrinks the chain stays.
MAX_SHRINKS = 200


@dataclass
class SliceStep:
    """Result of one univariate update per chain.

    ``t`` [C]: the accepted offset; ``logp`` [C]: the log density there; ``expansions`` and
    ``shrinks`` [C]: interval expansions and rejected candidates (Tibbits et al. adapt the width
    from their ratio); ``calls``: evaluations of ``logp_along`` (each is one batched call).
    """

    t: Tensor
    logp: Tensor
    expansions: Tensor
    shrinks: Tensor
    calls: int


def step_out(
    logp_along: LogDensityAlong,
    level: Tensor,
    left: Tensor,
    right: Tensor,
    steps_left: Tensor,
    steps_right: Tensor,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Neal (2003), Fig. 3: widen ``[left, right]`` by its width until both ends are off the
    slice ``{t: logp_along(t) > level}``, at most ``steps_left``/``steps_right`` times per side.

    The two sides expand independently in Neal's procedure, so both ends are tested in the
    same call. Returns ``(left, right, expansions [C], calls)``.
    """
    # Both ends as one [C, 2] tensor: a handful of tensor ops per call, since at C ~ 4 chains
    # the per-op overhead, not the arithmetic, is what a call costs.
    ends = torch.stack([left, right], dim=-1)
    step = (right - left)[:, None] * torch.tensor([-1.0, 1.0], dtype=ends.dtype, device=ends.device)
    budget = torch.stack([steps_left, steps_right], dim=-1)
    steps, active, level2 = budget, budget > 0, level[:, None]
    calls = 0
    while bool(active.any()):
        grow = active & (logp_along(ends) > level2)
        calls += 1
        ends = torch.addcmul(ends, grow, step)
        steps = steps - grow.long()
        active = grow & (steps > 0)
    return ends[:, 0], ends[:, 1], (budget - steps).sum(-1), calls


def shrink(
    logp_along: LogDensityAlong,
    level: Tensor,
    left: Tensor,
    right: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Neal (2003), Fig. 5: draw uniformly from ``[left, right]`` and shrink towards the current
    point ``t = 0`` after each rejection, until the candidate is on the slice.

    Returns ``(t [C], logp at t [C], shrinks [C], calls)``. A chain whose interval shrinks
    :data:`MAX_SHRINKS` times (only possible through rounding) stays at ``t = 0``.
    """
    shrinks = torch.zeros_like(level, dtype=torch.long)
    calls = 0
    while True:
        u = torch.rand(level.shape, generator=generator, dtype=level.dtype, device=level.device)
        candidate = torch.lerp(left, right, u)
        f = logp_along(candidate[:, None])[:, 0]
        calls += 1
        accept = f > level
        if bool(accept.all()) or calls >= MAX_SHRINKS:
            break
        # A chain that accepted collapses its interval onto its point, so later draws return it
        # again with the same density: no mask of finished chains is needed.
        below = candidate < 0
        left = torch.where(accept | below, candidate, left)
        right = torch.where(accept | ~below, candidate, right)
        shrinks += ~accept
    if calls >= MAX_SHRINKS and not bool(accept.all()):
        # Every chain that has not accepted by now rejected every candidate: it stays put.
        shrinks += ~accept
        zero = torch.zeros_like(level)
        f = torch.where(accept, f, logp_along(zero[:, None])[:, 0])
        candidate = torch.where(accept, candidate, zero)
    return candidate, f, shrinks, calls


def slice_update(
    logp_along: LogDensityAlong,
    logp0: Tensor,
    width: Tensor | float,
    max_steps: int = 20,
    generator: torch.Generator | None = None,
) -> SliceStep:
    """One univariate slice update along a direction for each chain (Neal 2003, Sec. 4).

    ``logp0`` [C] is the log density at ``t = 0``; ``width`` the initial interval width (per
    chain or shared); ``max_steps`` Neal's ``m``, the most intervals stepping-out may span.
    The level ``log y = logp0 + log U`` and the interval's random placement are drawn first,
    then the interval is stepped out and shrunk. Leaves the density along the line invariant.
    """
    shape, kw = logp0.shape, {"dtype": logp0.dtype, "device": logp0.device}
    u = torch.rand((3, *shape), generator=generator, **kw)
    level = logp0 + torch.log(u[0])
    left = -width * u[1]
    right = left + width
    steps_left = (max_steps * u[2]).long()  # floor: u >= 0
    steps_right = max_steps - 1 - steps_left
    left, right, expansions, calls_out = step_out(
        logp_along, level, left, right, steps_left, steps_right
    )
    t, logp, shrinks, calls_in = shrink(logp_along, level, left, right, generator)
    return SliceStep(t, logp, expansions, shrinks, calls_out + calls_in)


def scale_update(
    logp_ray: LogDensityAlong,
    logp0: Tensor,
    dim: int,
    width: Tensor | float = 1.0,
    max_steps: int = 20,
    generator: torch.Generator | None = None,
) -> SliceStep:
    """One scale move ``theta <- g theta`` per chain: the generalized Gibbs update for the
    multiplicative group (Liu & Sabatti 2000, "Generalized Gibbs sampler and multigrid Monte
    Carlo", JASA 95(451)), drawn by a slice update (Neal 2003) on ``s = log g``.

    ``logp_ray`` maps ``s [C, J]`` to ``log p(e^s theta)`` (``logp0`` [C] at ``s = 0``);
    ``dim`` is ``P``, the length of ``theta``. Liu & Sabatti draw ``g`` from
    ``p(g theta) |g|^(P - 1) dg`` (the left-Haar measure of the group is ``dg / g``); in
    ``s`` that is ``p(e^s theta) e^(P s) ds``, so the update slice-samples
    ``log p(e^s theta) + P s``; this leaves ``p`` invariant whatever it is. Returns the step
    with ``t = s`` and ``logp`` the target's log density at ``e^s theta`` (Jacobian removed).
    """

    def log_density_of_s(s: Tensor) -> Tensor:
        return logp_ray(s) + dim * s

    step = slice_update(log_density_of_s, logp0, width, max_steps, generator)
    step.logp = step.logp - dim * step.t
    return step
