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
    width = right - left
    expansions = torch.zeros_like(level, dtype=torch.long)
    active_l, active_r = steps_left > 0, steps_right > 0
    calls = 0
    while bool((active_l | active_r).any()):
        f = logp_along(torch.stack([left, right], dim=-1))
        calls += 1
        grow_l = active_l & (f[:, 0] > level)
        grow_r = active_r & (f[:, 1] > level)
        left = torch.where(grow_l, left - width, left)
        right = torch.where(grow_r, right + width, right)
        steps_left = steps_left - grow_l.long()
        steps_right = steps_right - grow_r.long()
        expansions += grow_l.long() + grow_r.long()
        active_l = grow_l & (steps_left > 0)
        active_r = grow_r & (steps_right > 0)
    return left, right, expansions, calls


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
    done = torch.zeros_like(level, dtype=torch.bool)
    t = torch.zeros_like(level)
    logp = torch.full_like(level, float("nan"))
    shrinks = torch.zeros_like(level, dtype=torch.long)
    calls = 0
    while not bool(done.all()):
        u = torch.rand(level.shape, generator=generator, dtype=level.dtype, device=level.device)
        candidate = left + u * (right - left)
        f = logp_along(candidate[:, None])[:, 0]
        calls += 1
        accept = ~done & (f > level)
        t = torch.where(accept, candidate, t)
        logp = torch.where(accept, f, logp)
        reject = ~done & ~accept
        left = torch.where(reject & (candidate < 0), candidate, left)
        right = torch.where(reject & (candidate >= 0), candidate, right)
        shrinks += reject.long()
        done = done | accept | (shrinks >= MAX_SHRINKS)
    stuck = torch.isnan(logp)
    if bool(stuck.any()):
        logp = torch.where(stuck, logp_along(torch.zeros_like(level)[:, None])[:, 0], logp)
    return t, logp, shrinks, calls


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
    level = logp0 + torch.log(torch.rand(shape, generator=generator, **kw))
    width = torch.as_tensor(width, **kw).expand(shape)
    left = -width * torch.rand(shape, generator=generator, **kw)
    right = left + width
    v = torch.rand(shape, generator=generator, **kw)
    steps_left = torch.floor(max_steps * v).long()
    steps_right = max_steps - 1 - steps_left
    left, right, expansions, calls_out = step_out(
        logp_along, level, left, right, steps_left, steps_right
    )
    t, logp, shrinks, calls_in = shrink(logp_along, level, left, right, generator)
    return SliceStep(t, logp, expansions, shrinks, calls_out + calls_in)
