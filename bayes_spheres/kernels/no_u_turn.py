"""A slice update along a trajectory that ends where it turns back: the No-U-Turn sampler with
a slice variable (Hoffman & Gelman 2014, Alg. 3), batched over chains.

The fixed-length update of :mod:`~bayes_spheres.kernels.hamiltonian` integrates
``trajectory / eps`` leapfrog steps, however stiff or flat the target: where the adapted step
is small (a stochastic-volatility posterior's step was 0.0026) an update costs thousands of
gradients. Here the length follows the posterior instead. One update, per chain:

1. draw a momentum ``v ~ N(0, I)`` and the slice level ``log u = -H(z, v) - Exp(1)``
   (the current state is the tree of depth 0);
2. double the tree in a uniformly random direction: integrate a subtree of ``2^j`` states
   from the end of that side, until the whole tree or any balanced subtree of the new one
   turns back on itself (:func:`is_turning`), a new state's energy is more than
   ``max_energy`` above the slice level (the subtree ends there), or the depth reaches
   ``max_depth``;
3. keep a state drawn uniformly from each subtree's states inside the slice ``-H >= log u``
   and let a valid subtree's draw replace the tree's with probability ``min(1, n' / n)``
   (``n'``, ``n``: the subtree's and the tree's states in the slice); a subtree that turned or
   ended gives none of its states.

This is Hoffman & Gelman's Algorithm 3 (their "efficient NUTS", with its biased progressive
draw) with the generalised criterion of Betancourt (2017, App. A.4.2) on the sum of momenta,
checked against every balanced subtree as its last state arrives, with ``log2`` checkpoints
(NumPyro's iterative NUTS, Phan et al. 2019). The coordinates are those of the sampler (unit
mass: the mass matrix is in the change of coordinates), so a momentum is its own velocity.

Chains share the step size and the depth loop; each chain draws its own momentum, level and
directions and stops on its own: a chain whose tree has stopped, or whose subtree turned or
ended, is left out of the remaining leapfrog steps (the rest is evaluated on the chains still
moving). One update therefore costs the largest tree among the chains.

Two strategies build the same tree (``TREES``): :func:`chains_tree` for C chains as tensors
[C], and :func:`one_chain_tree` for one chain (every chain under ``pyro.infer.MCMC``) with its
energies, counts and flags as Python numbers: a third of the tensor operations per state
(eight schools, non-centred: 0.3 ms of bookkeeping a state against 0.6 ms, where the
compiled potential and its gradient take 0.65 ms). Both take the same random numbers in the
same order, so from the same generator state they choose the same state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bayes_spheres.kernels.leapfrog import ended, energy, leapfrog
from bayes_spheres.kernels.protocols import Rest, TrajectoryStep

# NUTS's default (Pyro, NumPyro, Stan): at most 2^10 - 1 = 1,023 leapfrog steps per update.
MAX_DEPTH = 10


def is_turning(v_left: Tensor, v_right: Tensor, rho: Tensor) -> Tensor:
    """The generalised no-U-turn criterion per chain (Betancourt 2017, App. A.4.2, as NumPyro
    and BlackJAX write it): with ``rho`` the sum of the momenta [C, P] of a stretch of
    trajectory whose end momenta are ``v_left`` and ``v_right``, and ``rho' = rho - (v_left +
    v_right) / 2``, the stretch turns if ``v_left . rho' <= 0`` or ``v_right . rho' <= 0``.
    Symmetric in its ends and unchanged when every momentum changes sign."""
    rho = rho - 0.5 * (v_left + v_right)
    return ((v_left * rho).sum(-1) <= 0) | ((v_right * rho).sum(-1) <= 0)


def checkpoints(leaf: int) -> tuple[int, int]:
    """The checkpoints ``(first, last)`` that leaf ``leaf`` (0-based, in building order) of a
    subtree closes balanced subtrees with (NumPyro's ``_leaf_idx_to_ckpt_idxs``): an even leaf
    is stored at ``last``, an odd leaf ends ``last - first + 1`` balanced subtrees (the
    number of trailing ones of ``leaf``), each begun by the leaf stored at a checkpoint from
    ``first`` to ``last``; ``first > last``: none."""
    last = bin(leaf >> 1).count("1")
    trailing = ((~leaf & (leaf + 1)) - 1).bit_count()
    return last - trailing + 1, last


@dataclass
class _End:
    """One end of the trajectories of C chains: state, momentum, rest's log density, gradient."""

    z: Tensor
    v: Tensor
    logp: Tensor
    grad: Tensor

    def where(self, mask: Tensor, other: _End) -> _End:
        """This end where ``mask`` [C], ``other`` elsewhere."""
        m = mask[:, None]
        return _End(
            torch.where(m, self.z, other.z),
            torch.where(m, self.v, other.v),
            torch.where(mask, self.logp, other.logp),
            torch.where(m, self.grad, other.grad),
        )


def _leapfrog_rows(end: _End, moving: Tensor, eps: float, rest: Rest, gaussian: bool) -> _End:
    """One leapfrog step of the chains ``moving`` [C] from ``end`` (the others stay): the rest
    is evaluated on the moving chains only."""
    if bool(moving.all()):
        return _End(*leapfrog(end.z, end.v, end.grad, eps, rest, gaussian))
    rows = moving.nonzero()[:, 0]
    z, v, logp, grad = leapfrog(end.z[rows], end.v[rows], end.grad[rows], eps, rest, gaussian)
    return _End(
        end.z.index_copy(0, rows, z),
        end.v.index_copy(0, rows, v),
        end.logp.index_copy(0, rows, logp),
        end.grad.index_copy(0, rows, grad),
    )


def _where(mask: Tensor, these: tuple[Tensor, ...], others: tuple[Tensor, ...]) -> tuple:
    """Per chain (``mask`` [C]), each of ``these`` where ``mask``, of ``others`` elsewhere."""
    return tuple(
        torch.where(mask.reshape(-1, *(1,) * (a.dim() - 1)), a, b)
        for a, b in zip(these, others, strict=True)
    )


@dataclass
class NoUTurnStep:
    """A :class:`~bayes_spheres.kernels.protocols.TrajectoryStep` and the update's cost:
    ``leapfrogs`` batched steps (the largest tree among the chains) and ``states`` [C], the
    states each chain integrated; ``depth`` [C], each chain's final depth."""

    step: TrajectoryStep
    leapfrogs: int
    states: Tensor
    depth: Tensor


def chains_tree(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    rest: Rest,
    eps: float,
    gaussian: bool,
    max_energy: float,
    max_depth: int = MAX_DEPTH,
    min_states: int = 1,
    generator: torch.Generator | None = None,
) -> NoUTurnStep:
    """One slice update along a no-U-turn trajectory for C chains (module docstring), the
    bookkeeping as tensors [C].

    ``min_states``: a U-turn ends only trees and subtrees of at least this many states
    (:mod:`~bayes_spheres.kernels.trajectory_length`: a floor under the length; 1, every
    U-turn counts, is NUTS).

    ``accept`` is the mean ``min(1, e^-dH)`` over every state integrated (the statistic NUTS
    adapts its step size on, Hoffman & Gelman 2014 Alg. 6), ``in_slice`` the fraction of them
    inside the slice, ``diverging`` whether a subtree ended at a state more than
    ``max_energy`` above the slice level."""
    chains = len(z)
    v0 = torch.randn_like(z, generator=generator)
    h0 = energy(z, v0, logp_rest, gaussian)
    log_u = -h0 - torch.empty_like(h0).exponential_(generator=generator)
    level = max_energy - log_u  # a state above it ends its subtree
    left = right = _End(z, v0, logp_rest, grad)
    pick = (z, logp_rest, grad)
    count = torch.ones_like(h0)  # states of the tree in the slice (the current one is)
    rho = v0.clone()
    running = torch.ones(chains, dtype=torch.bool, device=z.device)
    depth = torch.zeros(chains, dtype=torch.long, device=z.device)
    states, accept_sum, inside_sum = (torch.zeros_like(h0) for _ in range(3))
    diverging = torch.zeros_like(running)
    leapfrogs = 0
    for j in range(max_depth):
        if not bool(running.any()):
            break
        forward = torch.rand(chains, device=z.device, generator=generator) < 0.5
        sign = torch.where(forward, 1.0, -1.0).to(z.dtype)[:, None]
        # integrate backwards as forwards with the momentum reversed (the integrator is
        # reversible), and keep the true momenta for the criterion
        start = right.where(forward, left)
        end = _End(start.z, sign * start.v, start.logp, start.grad)
        sub_rho, sub_count = torch.zeros_like(z), torch.zeros_like(h0)
        sub_pick = pick
        momenta = torch.zeros((max(j, 1), *z.shape), dtype=z.dtype, device=z.device)
        sums = torch.zeros_like(momenta)
        moving = running.clone()
        uniforms = torch.rand((2**j, chains), dtype=z.dtype, device=z.device, generator=generator)
        for leaf in range(2**j):
            if not bool(moving.any()):
                break
            end = _leapfrog_rows(end, moving, eps, rest, gaussian)
            leapfrogs += 1
            h = energy(end.z, end.v, end.logp, gaussian)
            states += moving
            accept_sum += torch.where(moving, torch.exp((h0 - h).clamp(max=0)).nan_to_num(0), 0)
            over = moving & ended(h, level)
            diverging |= over
            moving = moving & ~over
            inside = moving & (-h >= log_u)
            inside_sum += inside
            sub_count += inside
            # a uniform draw among the subtree's states in the slice, progressively
            take = inside & (uniforms[leaf] * sub_count < 1)
            if bool(take.any()):
                sub_pick = _where(take, (end.z, end.logp, end.grad), sub_pick)
            v = sign * end.v
            sub_rho = sub_rho + torch.where(moving[:, None], v, 0)
            first, last = checkpoints(leaf)
            if leaf % 2 == 0:
                momenta[last], sums[last] = v, sub_rho
            turned = torch.zeros_like(moving)
            for i in range(last, first - 1, -1):  # balanced subtrees of 2, 4, ... states
                if 2 ** (last - i + 1) >= min_states:
                    turned |= is_turning(momenta[i], v, sub_rho - sums[i] + momenta[i])
            moving = moving & ~turned
        # the chains whose subtree neither turned nor ended: merge it
        valid = moving
        new_end = _End(end.z, sign * end.v, end.logp, end.grad)
        right = new_end.where(valid & forward, right)
        left = new_end.where(valid & ~forward, left)
        take = valid & (torch.rand_like(h0, generator=generator) * count < sub_count)
        pick = _where(take, sub_pick, pick)
        count = count + torch.where(valid, sub_count, 0)
        rho = rho + torch.where(valid[:, None], sub_rho, 0)
        depth += running
        running = valid
        if 2 ** (j + 1) >= min_states:
            running = running & ~is_turning(left.v, right.v, rho)
    n = states.clamp_min(1)
    accept = torch.where(states > 0, accept_sum / n, 1.0)
    step = TrajectoryStep(*pick, accept=accept, in_slice=inside_sum / n, diverging=diverging)
    return NoUTurnStep(step, leapfrogs, states, depth)


def one_chain_tree(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    rest: Rest,
    eps: float,
    gaussian: bool,
    max_energy: float,
    max_depth: int = MAX_DEPTH,
    min_states: int = 1,
    generator: torch.Generator | None = None,
) -> NoUTurnStep:
    """:func:`chains_tree` for one chain (``z`` [1, P]), its energies, counts and flags as
    Python numbers: the same random numbers in the same order, the same tree."""
    v0 = torch.randn_like(z, generator=generator)
    h0_t = energy(z, v0, logp_rest, gaussian)
    h0 = float(h0_t)
    log_u = float(-h0_t - torch.empty_like(h0_t).exponential_(generator=generator))
    level = max_energy - log_u
    left = right = (z, v0, logp_rest, grad)  # state, true momentum, rest's logp, gradient
    pick, count, rho = (z, logp_rest, grad), 1.0, v0
    states = depth = leapfrogs = inside_sum = 0
    accept_sum, diverging, running = 0.0, False, True
    for j in range(max_depth):
        if not running:
            break
        forward = bool(torch.rand(1, device=z.device, generator=generator) < 0.5)
        sign = 1.0 if forward else -1.0
        zz, vv, lp, gg = right if forward else left
        vv = sign * vv  # integrate backwards as forwards with the momentum reversed
        sub_rho, sub_count, sub_pick = torch.zeros_like(z), 0, pick
        momenta: list[Tensor] = [z] * max(j, 1)
        sums: list[Tensor] = [z] * max(j, 1)
        uniforms = torch.rand(
            (2**j, 1), dtype=z.dtype, device=z.device, generator=generator
        ).tolist()
        moving = True
        for leaf in range(2**j):
            zz, vv, lp, gg = leapfrog(zz, vv, gg, eps, rest, gaussian)
            leapfrogs += 1
            states += 1
            h = float(energy(zz, vv, lp, gaussian))
            gain = h0 - h
            accept_sum += 0.0 if math.isnan(gain) else math.exp(min(gain, 0.0))
            if not h <= level:  # the subtree ends here (or the energy is not a number)
                diverging, moving = True, False
                break
            if -h >= log_u:
                inside_sum += 1
                sub_count += 1
                if uniforms[leaf][0] * sub_count < 1:
                    sub_pick = (zz, lp, gg)
            v = vv if forward else -vv
            sub_rho = sub_rho + v
            first, last = checkpoints(leaf)
            if leaf % 2 == 0:
                momenta[last], sums[last] = v, sub_rho
            if any(
                bool(is_turning(momenta[i], v, sub_rho - sums[i] + momenta[i]))
                for i in range(last, first - 1, -1)
                if 2 ** (last - i + 1) >= min_states
            ):
                moving = False
                break
        swap = float(torch.rand_like(h0_t, generator=generator))  # drawn whether or not used
        depth += 1
        running = moving
        if moving:  # the subtree neither turned nor ended: merge it
            end = (zz, vv if forward else -vv, lp, gg)
            left, right = (left, end) if forward else (end, right)
            if swap * count < sub_count:
                pick = sub_pick
            count += sub_count
            rho = rho + sub_rho
            if 2 ** (j + 1) >= min_states:
                running = not bool(is_turning(left[1], right[1], rho))
    like = h0_t.new_ones(1)
    step = TrajectoryStep(
        *pick,
        accept=like * (accept_sum / states if states else 1.0),
        in_slice=like * (inside_sum / max(states, 1)),
        diverging=torch.tensor([diverging], device=z.device),
    )
    return NoUTurnStep(step, leapfrogs, like * states, torch.tensor([depth], device=z.device))


Tree = Callable[..., NoUTurnStep]
# by whether there is one chain: the strategy that builds the tree
TREES: dict[bool, Tree] = {True: one_chain_tree, False: chains_tree}


def no_u_turn_trajectory(z: Tensor, *args: object, **kwargs: object) -> NoUTurnStep:
    """One slice update along a no-U-turn trajectory for the chains ``z`` [C, P] (module
    docstring), built by the strategy in ``TREES`` for their number; the other arguments as
    :func:`chains_tree`'s."""
    return TREES[len(z) == 1](z, *args, **kwargs)
