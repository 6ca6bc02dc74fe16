"""The fast path's integrator: Hamiltonian trajectories of a logistic likelihood whose
activations are linear in the (prior-whitened) state, ``a = z @ a_z.T + a_0``, integrated in
blocks of steps (:func:`slice_trajectory_linear`). Used by
:class:`~bayes_spheres.kernels.fast.logistic.LogisticTarget`, which finds such likelihoods in a
Pyro model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.fast.gram import LinearLogistic
from bayes_spheres.kernels.leapfrog import ended, energy, flow
from bayes_spheres.kernels.protocols import TrajectoryStep
from bayes_spheres.kernels.slice_trajectory import (
    MAX_ENERGY,
    choose_state,
    start_trajectory,
    truncate,
)

# log sigmoid(a) > -exp(-36) = -2.3e-16 for a > 36: such points leave the energy unchanged
ACTIVE_BELOW = 36.0
# points with a >= KICK_BELOW give no kick (slice_trajectory_linear's docstring)
KICK_BELOW = 15.0
# steps integrated together: at most this many, and at most BLOCK_ELEMENTS elements in a
# block's activations [C, steps, N] (32 MiB in float64)
BLOCK_STEPS = 32
BLOCK_ELEMENTS = 1 << 22
# at most this many elements in the candidates' block of A A' [C, J, J] (J = 128 for 8
# chains): stepping more candidates alone costs more than it saves; past it, a block has
# fewer steps, down to one dense step
CANDIDATE_ELEMENTS = 1 << 17
# a dense step gathers the rows of the points that pull up to this many elements (128 MiB
# in float64; at N = 16,000 every point of 8 chains would need 17 GB), past it one product
GATHER_ELEMENTS = 1 << 24
# gathering a row element (and adding it, weighted) costs about as much as this many
# multiply-adds of a matrix product (1 thread, 8 chains, N = 1,000, P = 502: a product
# [8, 502] @ [502, 1000] 0.49 ms; gathering 200 rows of A A' 0.47 ms): gather or multiply,
# whichever is cheaper
GATHER_COST = 20
# a point is a candidate in a block if its path without kicks comes within this of
# KICK_BELOW; doubled for the rest of a trajectory whenever another point came closer
CANDIDATE_SLACK = 5.0


def slice_trajectory_linear(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    eps: float,
    steps: int,
    max_energy: float = MAX_ENERGY,
    generator: torch.Generator | None = None,
    *,
    linear: LinearLogistic,
) -> TrajectoryStep:
    """:func:`~bayes_spheres.kernels.slice_trajectory.slice_trajectory` with a Gaussian part and a
    :class:`LinearLogistic` rest: the same chain for the same random stream (to rounding),
    much cheaper per step. (``grad``, the rest's gradient at ``z``, is part of the
    :class:`~bayes_spheres.kernels.protocols.Splitting` hook; kicks here come from the
    activations.)

    The state ``x = [z, A z]``, ``u = [v, A v]`` rotates as a whole, and a kick adds
    ``sigmoid(-a_n) [A | A A']_n`` over the points with ``a_n < KICK_BELOW``: on separable
    data a few per chain. Within a block of steps only the few *candidate* points whose
    activations can come near pull, and their activations evolve on their own:
    :func:`_candidate_weights` steps them alone (O(J^2) per step for J candidates); every
    point's activations, the energies and the positions then follow from the candidates' kick
    weights in closed form (:func:`_integrate`). A block in which another point's activation
    fell below ``KICK_BELOW`` is cut before that step and continued with more candidates,
    so the trajectory is the step-by-step one.

    The energy uses every term above -2.3e-16 (``a < ACTIVE_BELOW``), so the slice is the
    exact one; leaving weaker forces (``a >= KICK_BELOW``) out of the kicks only changes the
    integrator, which stays volume preserving and reversible (a kick by any function of
    position is), so the update stays exact: the cost is a little energy error, not bias.
    """
    v, h0, log_u, k = start_trajectory(z, logp_rest, True, steps, generator)
    level = max_energy - log_u  # where a direction ends (hamiltonian's module docstring)
    backward = _integrate(z, -v, eps, k, linear, level)
    forward = _integrate(z, v, eps, steps - k, linear, level)
    energies = torch.cat([backward.energies, forward.energies], 1).T  # [steps, C]
    pick, accept, in_slice, diverging = choose_state(energies, h0, log_u, max_energy, generator)
    chosen = torch.stack([_position(z, backward, forward, k, c, i) for c, i in enumerate(pick)])
    return TrajectoryStep(chosen, *linear.rest(chosen), accept, in_slice, diverging)


def _position(z: Tensor, backward: _Path, forward: _Path, k: int, chain: int, i: int) -> Tensor:
    """State ``i`` of a trajectory (0: the current one ``z``; 1..k: ``backward``'s steps;
    then ``forward``'s) of one chain."""
    if i == 0:
        return z[chain]
    return backward.position(chain, i - 1) if i <= k else forward.position(chain, i - k - 1)


@dataclass
class _Block:
    """Steps ``first + 1 .. first + len(cos)`` of a trajectory: its start ``(z, v)`` [C, P],
    the candidates' rows of ``A`` [C, J, P] and their summed kicks on each position
    [C, steps, J]."""

    first: int
    z: Tensor
    v: Tensor
    cos: Tensor
    sin: Tensor
    rows: Tensor
    kicks: Tensor
    positions: Tensor | None = None  # [C, steps, P] where kept instead (a dense step)


@dataclass
class _Path:
    """One direction of a trajectory: the energies [C, steps] after each step, and its
    positions on demand."""

    energies: Tensor
    blocks: list[_Block]

    def position(self, chain: int, step: int) -> Tensor:
        """Chain ``chain``'s position after ``step + 1`` steps [P]."""
        block = next(b for b in reversed(self.blocks) if b.first <= step)
        n = step - block.first
        if block.positions is not None:
            return block.positions[chain, n]
        free = block.z[chain] * block.cos[n] + block.v[chain] * block.sin[n]
        return torch.addmv(free, block.rows[chain].T, block.kicks[chain, n])


def _integrate(
    z: Tensor, v: Tensor, eps: float, steps: int, linear: LinearLogistic, level: Tensor
) -> _Path:
    """``steps`` leapfrog steps (half kick, rotation by ``eps``, half kick) from ``(z, v)``
    [C, P], in blocks; each chain's energies from its first one above ``level`` [C] on are
    ``inf`` (:func:`~bayes_spheres.kernels.slice_trajectory.truncate`), and after the block where
    that happened the chain no longer counts in choosing candidates or steps (its kicks are
    left out), so a chain that went far into the constraints costs nothing more.

    With ``zeta = x + i u`` a rotation multiplies by ``e^(-i eps)`` and a half kick ``K``
    adds ``i (eps / 2) K``, so n steps from ``(x_0, u_0)`` with kicks ``K_j`` at the j-th
    position give

        x_n = cos(n eps) x_0 + sin(n eps) u_0 + sum_j S[n, j] K_j,
        u_n = cos(n eps) u_0 - sin(n eps) x_0 + sum_j Cc[n, j] K_j

    (:func:`_kick_coefficients`), and ``K_j = w_j [A | A A']_J`` is fixed by the J
    candidates' weights ``w_j``: with ``m = S w`` and ``q = Cc w``, the activations are
    ``free + m (A A')_J``, and ``|z_n|^2 + |v_n|^2`` is ``|z_0|^2 + |v_0|^2`` plus terms in
    ``m``, ``q``, the candidates' activations and ``(A A')_JJ`` only."""
    chains, p = z.shape
    if steps == 0:
        return _Path(z.new_empty(chains, 0), [])
    a_0, gram = linear.a_0, linear.gram
    x_a, u_a = z @ linear.a_z.T, v @ linear.a_z.T  # [C, N]: A z, A v
    gaussian = 0.5 * ((z * z).sum(-1) + (v * v).sum(-1))  # [C], kept by the rotations
    if len(a_0) == 0:  # no data: the exact rotation, at constant energy
        times = eps * torch.arange(1, steps + 1, dtype=z.dtype, device=z.device)
        block = _Block(0, z, v, torch.cos(times), torch.sin(times), z.new_zeros(chains, 0, p),
                       z.new_zeros(chains, steps, 0))  # fmt: skip
        return _Path(truncate(gaussian.expand(steps, chains), level).T, [block])
    block = max(1, min(BLOCK_STEPS, BLOCK_ELEMENTS // (chains * len(a_0))))
    slack, done, kick, start = CANDIDATE_SLACK, 0, None, block
    over = torch.zeros(chains, dtype=torch.bool, device=z.device)  # directions that ended
    blocks, energies = [], []
    while done < steps:
        if bool(over.all()):
            energies.append(z.new_full((chains, steps - done), math.inf))
            break
        b = min(start, steps - done)
        while True:
            low = lowest_on_arc(x_a, u_a, b * eps) + a_0  # no path without kicks goes lower
            low = low.masked_fill(over[:, None], math.inf)
            size = max(1, int((low < KICK_BELOW + slack).sum(1).max()))
            if chains * size * size <= CANDIDATE_ELEMENTS or b == 1:
                break
            b = max(1, b // 2)  # many points near (far out, early in warm-up): fewer steps
        start = min(block, 2 * b)  # the next block: as long as this one could be, or longer
        if chains * size * size > CANDIDATE_ELEMENTS:
            z, v, x_a, u_a, energy, kick = _dense_step(z, v, x_a, u_a, eps, linear, kick, over)
            none = z.new_empty(0)
            blocks.append(_Block(done, z, v, none, none, none, none, positions=z[:, None]))
            energies.append(energy[:, None])
            over |= ended(energy, level)
            gaussian, done = 0.5 * ((z * z).sum(-1) + (v * v).sum(-1)), done + 1
            continue
        kick = None  # the last dense step's end kick: not this block's
        candidates = low.topk(size, largest=False).indices  # [C, J]
        gram_jj = gram.block(candidates)  # [C, J, J]
        x_j, u_j = x_a.gather(1, candidates), u_a.gather(1, candidates)
        weights = _candidate_weights(x_j, u_j, a_0[candidates], gram_jj, eps, b, linear.power)
        weights = weights.masked_fill(over[:, None, None], 0.0)
        # the candidates that pulled at all (on separable data a few per chain), first
        pulled = (weights > 0).any(1)  # [C, J]
        width = max(1, int(pulled.sum(1).max()))
        order = pulled.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]
        weights = weights.gather(2, order[:, None, :].expand(-1, b + 1, -1))  # [C, b + 1, K]
        kickers = candidates.gather(1, order)  # [C, K]
        rows_n = gram.rows(kickers)  # [C, K, N]
        gram_kk = gram.block(kickers)
        x_k, u_k = x_j.gather(1, order), u_j.gather(1, order)
        sin_coef, cos_coef = _kick_coefficients(eps, b, z)
        m, q = sin_coef @ weights, cos_coef @ weights  # [C, b, K]
        times = eps * torch.arange(1, b + 1, dtype=z.dtype, device=z.device)
        cos, sin = torch.cos(times), torch.sin(times)
        # every activation after each step: [cos, sin, 1, m] @ [A z; A v; a_0; (A A')_K]
        terms = torch.cat([cos.expand(chains, b)[..., None], sin.expand(chains, b)[..., None],
                           torch.ones_like(m[..., :1]), m], 2)  # fmt: skip
        basis = torch.cat([x_a[:, None], u_a[:, None], a_0.expand(chains, 1, -1), rows_n], 1)
        a = terms @ basis  # [C, b, N]
        a_min = a.amin(1)  # [C, N]
        a_min = a_min.masked_fill(over[:, None], math.inf)
        lowest = a_min.scatter(1, candidates, math.inf)  # the candidates left out
        if bool((lowest < KICK_BELOW).any()):
            others = a.scatter(2, candidates[:, None, :].expand(-1, b, -1), math.inf)
            near = ((others < KICK_BELOW).any(2) & ~over[:, None]).any(0)  # [b]
            slack *= 2.0
            b = int(near.nonzero()[0])  # steps 1..b had only the candidates' kicks
            if b == 0:
                continue
            a, m, q, cos, sin = a[:, :b], m[:, :b], q[:, :b], cos[:b], sin[:b]
            a_min = a.amin(1).masked_fill(over[:, None], math.inf)
        x_along = x_k[:, None] * cos[:, None] + u_k[:, None] * sin[:, None]
        u_along = u_k[:, None] * cos[:, None] - x_k[:, None] * sin[:, None]
        kinetic = (
            gaussian[:, None]
            + ((m * x_along).sum(-1) + (q * u_along).sum(-1))
            + 0.5 * ((m @ gram_kk) * m).sum(-1) + 0.5 * ((q @ gram_kk) * q).sum(-1)
        )  # fmt: skip
        energies.append(kinetic - linear.power * _log_likelihood(a, a_min))
        over |= ended(energies[-1], level[:, None]).any(1)
        rows_p = linear.a_z.index_select(0, kickers.reshape(-1)).reshape(chains, width, p)
        blocks.append(_Block(done, z, v, cos, sin, rows_p, m))
        z, v = (
            torch.baddbmm((z * cos[-1] + v * sin[-1])[:, None], m[:, -1:], rows_p)[:, 0],
            torch.baddbmm((v * cos[-1] - z * sin[-1])[:, None], q[:, -1:], rows_p)[:, 0],
        )
        u_a = torch.baddbmm((u_a * cos[-1] - x_a * sin[-1])[:, None], q[:, -1:], rows_n)[:, 0]
        x_a = a[:, -1] - a_0
        gaussian = kinetic[:, -1]
        done += b
    return _Path(truncate(torch.cat(energies, 1).T, level).T, blocks)


def _log_likelihood(a: Tensor, a_min: Tensor) -> Tensor:
    """``sum_n log sigmoid(a_n)`` over the points with ``a_n < ACTIVE_BELOW`` (each other
    term is above -2.3e-16), for activations [C, S, N] whose minima over S are ``a_min``:
    [C, S] (a chain whose ``a_min`` is all ``inf``, a direction that ended, does not count in
    picking the points, so its sum is left inexact)."""
    near = (a_min < ACTIVE_BELOW).any(0).nonzero()[:, 0]
    a = a.index_select(2, near)
    return torch.where(a < ACTIVE_BELOW, F.logsigmoid(a), 0.0).sum(-1)


def _weights(a: Tensor) -> Tensor:
    """Kick weights: ``sigmoid(-a)`` below ``KICK_BELOW``, else 0."""
    return torch.where(a < KICK_BELOW, torch.sigmoid(-a), 0.0)


def _dense_step(
    z: Tensor,
    v: Tensor,
    x_a: Tensor,
    u_a: Tensor,
    eps: float,
    linear: LinearLogistic,
    kick: tuple[Tensor, Tensor] | None,
    over: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """One leapfrog step of :func:`_integrate` with every point's kick, for when too many
    points are near to step them alone: the new ``z, v, A z, A v``, the energy [C] and the
    kick at the new position (``kick``: the one at the start, if known: the previous dense
    step's). Chains ``over`` [C] get no kicks."""
    half = 0.5 * eps
    kick_z, kick_a = _kicks(x_a + linear.a_0, linear, over) if kick is None else kick
    v, u_a = v + half * kick_z, u_a + half * kick_a
    z, v = flow(z, v, eps, True)
    x_a, u_a = flow(x_a, u_a, eps, True)
    a = x_a + linear.a_0
    kick_z, kick_a = _kicks(a, linear, over)
    v, u_a = v + half * kick_z, u_a + half * kick_a
    ll = linear.power * torch.where(a < ACTIVE_BELOW, F.logsigmoid(a), 0.0).sum(-1)
    return z, v, x_a, u_a, energy(z, v, ll, True), (kick_z, kick_a)


def _kicks(a: Tensor, linear: LinearLogistic, over: Tensor) -> tuple[Tensor, Tensor]:
    """The kick ``power sum_n w_n [A | A A']_n`` of each chain at activations ``a`` [C, N] (none
    for chains ``over``), split into its ``z`` part [C, P] and its activations' part [C, N]:
    the rows of the points that pull gathered where they are few, else products (the
    activations' part as ``A`` times the ``z`` part; ``GATHER_COST``; always so where the Gram
    matrix is not stored)."""
    a = a.masked_fill(over[:, None], math.inf)
    chains, points = a.shape
    p = linear.a_z.shape[1]
    chain, point = (a < KICK_BELOW).nonzero(as_tuple=True)
    pulling = point.numel()
    if pulling * GATHER_COST > chains * points or pulling * p > GATHER_ELEMENTS:
        kick_z = (linear.power * _weights(a)) @ linear.a_z
    else:
        weight = linear.power * torch.sigmoid(-a[chain, point])
        kick_z = a.new_zeros(chains, p).index_add_(0, chain, linear.a_z[point] * weight[:, None])
    gram = linear.gram
    dear = pulling * GATHER_COST > chains * p or pulling * points > GATHER_ELEMENTS
    if dear or not gram.gathers:
        return kick_z, kick_z @ linear.a_z.T
    weight = linear.power * torch.sigmoid(-a[chain, point])
    kick_a = torch.zeros_like(a).index_add_(0, chain, gram.rows(point) * weight[:, None])
    return kick_z, kick_a


def lowest_on_arc(x: Tensor, u: Tensor, time: float) -> Tensor:
    """The minimum over ``t`` in ``[0, time]`` of ``x cos t + u sin t`` (elementwise), for
    ``time < 2 pi``: ``-r`` where the path passes its lowest point, else the lower end."""
    radius = torch.hypot(x, u)
    bottom = torch.remainder(torch.atan2(u, x) + math.pi, 2.0 * math.pi)  # where the min is
    ends = torch.minimum(x, x * math.cos(time) + u * math.sin(time))
    return torch.where(bottom <= time, -radius, ends)


def _kick_coefficients(eps: float, steps: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """``S, Cc`` [steps, steps + 1] of :func:`_integrate`: the kick at the j-th position
    moves the n-th (n = 1..steps) by ``eps sin((n - j) eps)`` and its velocity by
    ``eps cos((n - j) eps)``, halved for ``j = 0`` and ``j = n`` (half kicks); nothing for
    ``j > n``, nor the position for ``j = n``."""
    n = torch.arange(1, steps + 1, dtype=like.dtype, device=like.device)[:, None]
    j = torch.arange(steps + 1, dtype=like.dtype, device=like.device)
    lag = n - j
    half = torch.where((j == 0) | (lag == 0), 0.5, 1.0)
    sin_coef = torch.where(lag > 0, eps * torch.sin(lag * eps) * half, 0.0)
    cos_coef = torch.where(lag >= 0, eps * torch.cos(lag * eps) * half, 0.0)
    return sin_coef, cos_coef


def _candidate_weights(
    x_a: Tensor,
    u_a: Tensor,
    offset: Tensor,
    gram: Tensor,
    eps: float,
    steps: int,
    power: float = 1.0,
) -> Tensor:
    """The kick weights ``power sigmoid(-a)`` (0 for ``a >= KICK_BELOW``) of J candidate points
    [C, J] at the block's start and after each of ``steps`` leapfrog steps, [C, steps + 1, J],
    by stepping their activations ``a = x_a + offset`` and velocities ``u_a`` alone: a kick
    with weights ``w`` moves ``u_a`` by ``(eps / 2) w gram`` (``gram`` [C, J, J], the
    candidates' block of ``A A'``). In NumPy, float64: one step is a few operations on
    [C, J] arrays, where torch's per-call overhead would dominate."""
    offset_np, gram_np = offset.double().cpu().numpy(), gram.double().cpu().numpy()
    zeta = x_a.double().cpu().numpy() + 1j * u_a.double().cpu().numpy()
    rotation = complex(math.cos(eps), -math.sin(eps))
    weights = np.empty((steps + 1, *zeta.shape))

    def weigh(n: int) -> np.ndarray:
        a = zeta.real + offset_np
        w = weights[n]
        np.exp(np.minimum(a, KICK_BELOW), out=w)
        w += 1.0
        np.reciprocal(w, out=w)
        w[a >= KICK_BELOW] = 0.0
        w *= power
        return np.matmul(w[:, None, :], gram_np)[:, 0]

    zeta.imag += 0.5 * eps * weigh(0)
    for n in range(1, steps):
        zeta *= rotation
        zeta.imag += eps * weigh(n)
    zeta *= rotation
    weigh(steps)
    return torch.from_numpy(weights.transpose(1, 0, 2)).to(x_a)
