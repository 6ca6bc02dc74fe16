"""Slice sampling along Hamiltonian trajectories: the ``hamiltonian`` direction mode.

Univariate slice updates move one direction at a time. On the flat model's posterior at the
paper's scale (a Gaussian prior cut by ~1,000 near-hard constraints into a narrow cone in 501
dimensions) that needs O(D) sweeps per independent draw. Here the slice is taken along a
curve that crosses the cone instead: a Hamiltonian trajectory.

One update, for C chains at once (Neal 2003 Sec. 4's slice variable on a trajectory; the
"naive" No-U-Turn sampler of Hoffman & Gelman 2014, Alg. 2, with a fixed length):

1. draw a momentum ``v ~ N(0, I)`` and the slice level ``log u = -H(z, v) - Exp(1)``;
2. build a trajectory of ``steps + 1`` states through the current one, which sits at a
   uniformly random position on it (``k`` steps backwards, ``steps - k`` forwards);
3. return a state drawn uniformly from those on the trajectory inside the slice
   ``-H >= log u`` (the current state always is; the energies are kept and the draw made at
   the end, one call for all chains).

The integrator is volume preserving and reversible, so the set of states is the same whichever
of them the chain started from, and a uniform draw from its part inside the slice leaves the
joint density of ``(z, v)`` invariant; no accept/reject step.

Where the target has a Gaussian part (the prior of the study's models), coordinates are
whitened by it, ``theta = m + L z`` with ``z ~ N(0, I)`` under the prior, and its flow is
exact: a rotation of ``(z, v)``; only the rest (the likelihood) enters as kicks ("split HMC",
Shahbaba et al. 2014). A quarter period, ``pi / 2``, then turns any prior draw into an
independent one; the constraints bend the path. Without a Gaussian part the flow is a drift
and this is ordinary leapfrog.

The step size adapts in warm-up by dual averaging (Hoffman & Gelman 2014, Sec. 3.2) so that the
mean of ``min(1, exp(-dH))`` over the trajectory is ``target_accept``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.steps import scale_update

if TYPE_CHECKING:
    from bayes_spheres.kernels.targets import Target

# log density and its gradient of the non-Gaussian rest, in whitened coordinates [C, P].
Rest = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class LinearLogistic:
    """A rest ``sum_n log sigmoid(a_n)`` with activations ``a = z @ a_z.T + a_0`` linear in
    ``z``: the study's likelihoods. Lets :func:`slice_trajectory_linear` move activations
    with the state instead of recomputing them (O(N P) per step)."""

    a_z: Tensor  # [N, P]
    a_0: Tensor  # [N]

    def __post_init__(self) -> None:
        # [A | A A'] [N, P + N]: one kick from points J moves (v, A v) by s_J @ joint[J]
        self.joint = torch.cat([self.a_z, self.a_z @ self.a_z.T], 1)


@dataclass
class Splitting:
    """A target written as ``N(z; 0, I) * rest(z)`` (``gaussian``) or as ``rest(z)`` alone,
    with ``theta = mean + z @ chol.T``; ``linear`` when the rest is a :class:`LinearLogistic`."""

    rest: Rest
    mean: Tensor
    chol: Tensor
    gaussian: bool
    linear: LinearLogistic | None = None

    def to_z(self, theta: Tensor) -> Tensor:
        return torch.linalg.solve_triangular(self.chol, (theta - self.mean).T, upper=False).T

    def to_theta(self, z: Tensor) -> Tensor:
        return torch.addmm(self.mean, z, self.chol.T)


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


@dataclass
class TrajectoryStep:
    z: Tensor
    logp_rest: Tensor
    grad: Tensor
    accept: Tensor  # mean over the trajectory of min(1, exp(-dH)), per chain
    in_slice: Tensor  # fraction of the trajectory's new states inside the slice, per chain


def slice_trajectory(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    rest: Rest,
    eps: float,
    steps: int,
    gaussian: bool,
    generator: torch.Generator | None = None,
) -> TrajectoryStep:
    """One slice update along a trajectory of ``steps`` leapfrog steps (module docstring).

    All chains share the step size and the offset ``k`` of the current state on the
    trajectory (both independent of the state); each chain draws its own momentum, slice
    level and state.
    """
    v, h0, log_u, k = _start(z, logp_rest, gaussian, steps, generator)
    states, energies = [(z, logp_rest, grad)], []
    for sign, n in ((-1.0, k), (1.0, steps - k)):
        zz, vv, lp, gg = z, sign * v, logp_rest, grad
        for _ in range(n):
            zz, vv, lp, gg = leapfrog(zz, vv, gg, eps, rest, gaussian)
            states.append((zz, lp, gg))
            energies.append(energy(zz, vv, lp, gaussian))
    pick, accept, in_slice = _choose(energies, h0, log_u, generator)
    chosen = [torch.stack([states[i][j][c] for c, i in enumerate(pick)]) for j in range(3)]
    return TrajectoryStep(*chosen, accept=accept, in_slice=in_slice)


def _start(
    z: Tensor, logp_rest: Tensor, gaussian: bool, steps: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Momentum, energy, slice level ``-H - Exp(1)`` and the current state's offset ``k``."""
    v = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    h0 = energy(z, v, logp_rest, gaussian)
    exp1 = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
    log_u = -h0 - exp1.exponential_(generator=generator)
    k = int(torch.randint(0, steps + 1, (), generator=generator))
    return v, h0, log_u, k


def _choose(
    energies: list[Tensor], h0: Tensor, log_u: Tensor, generator: torch.Generator | None
) -> tuple[list[int], Tensor, Tensor]:
    """A uniform draw per chain among the trajectory's states inside the slice (index 0, the
    current state, always is); also the mean ``min(1, e^-dH)`` and the fraction inside."""
    if not energies:
        zero = torch.zeros_like(h0)
        return [0] * len(h0), zero + 1.0, zero
    h = torch.stack(energies)  # [S, C]
    inside = (-h >= log_u).to(h.dtype)
    weights = torch.cat([torch.ones_like(inside[:1]), inside]).T  # [C, S + 1]
    pick = torch.multinomial(weights, 1, generator=generator)[:, 0].tolist()
    accept = torch.exp(torch.clamp(h0 - h, max=0.0)).nan_to_num(0.0).mean(0)
    return pick, accept, inside.mean(0)


# log sigmoid(a) > -exp(-36) = -2.3e-16 for a > 36: such points leave a kick unchanged
ACTIVE_BELOW = 36.0
KICK_BELOW = 15.0
# a kick gathers at most this many elements of [A | A A'] (128 MiB in float64); past it, one
# dense [C, N] x [N, P + N] product (at N = 16,000 the gather of every point of 8 chains
# would need 17 GB)
GATHER_MAX_ELEMENTS = 1 << 24


def slice_trajectory_linear(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    lin: LinearLogistic,
    eps: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> TrajectoryStep:
    """:func:`slice_trajectory` with a Gaussian part and a :class:`LinearLogistic` rest, the
    same chain for the same random stream (to rounding), much cheaper per step.

    The state carries its activations: ``x = [z, A z]`` and ``u = [v, A v]`` rotate together
    (O(N + P) per chain), and a kick adds ``sigmoid(-a_n) [A | A A']_n`` per chain over its
    points with ``a_n < KICK_BELOW`` (on separable data a few per chain), instead of two dense
    O(N P) products. The energy uses every term above -2.3e-16 (``a < ACTIVE_BELOW``), so the
    slice is the exact one; leaving weaker forces out of the kicks only changes the integrator,
    which stays volume preserving and reversible (a kick by any function of position is), so
    the update stays exact: the cost is a little energy error, not bias.
    """
    p = z.shape[1]
    v, h0, log_u, k = _start(z, logp_rest, True, steps, generator)
    cos, sin, half = math.cos(eps), math.sin(eps), 0.5 * eps
    x0 = torch.cat([z, z @ lin.a_z.T], 1)
    kick0 = _kick(x0[:, p:] + lin.a_0, lin)[1]
    states, energies = [z], []
    for sign, n in ((-1.0, k), (1.0, steps - k)):
        vv = sign * v
        x, u, kick = x0, torch.cat([vv, vv @ lin.a_z.T], 1), kick0
        for _ in range(n):
            u = u + half * kick
            x, u = x * cos + u * sin, u * cos - x * sin
            lp, kick = _kick(x[:, p:] + lin.a_0, lin)
            u = u + half * kick
            states.append(x[:, :p])
            energies.append(energy(x[:, :p], u[:, :p], lp, True))
    pick, accept, in_slice = _choose(energies, h0, log_u, generator)
    chosen = torch.stack([states[i][c] for c, i in enumerate(pick)])
    a = torch.addmm(lin.a_0, chosen, lin.a_z.T)
    return TrajectoryStep(
        chosen, F.logsigmoid(a).sum(-1), torch.sigmoid(-a) @ lin.a_z, accept, in_slice
    )


def _kick(a: Tensor, lin: LinearLogistic) -> tuple[Tensor, Tensor]:
    """Per chain, ``sum_n log sigmoid(a_n)`` over its points with ``a_n < ACTIVE_BELOW`` (each
    other term is above -2.3e-16) and the kick ``sum_n sigmoid(-a_n) [A | A A']_n`` over its
    points with ``a_n < KICK_BELOW``: [C] and [C, P + N]."""
    chains = a.shape[0]
    chain, point = (a < ACTIVE_BELOW).nonzero(as_tuple=True)
    a = a[chain, point]
    ll = a.new_zeros(chains).index_add_(0, chain, F.logsigmoid(a))
    strong = a < KICK_BELOW
    chain, point, a = chain[strong], point[strong], a[strong]
    if point.numel() * lin.joint.shape[1] > GATHER_MAX_ELEMENTS:
        # many points pull (far from the posterior, early in warm-up): a dense product
        # instead of gathering a [J, P + N] block that can outgrow memory at large N
        weights = a.new_zeros(chains, lin.joint.shape[0])
        weights.index_put_((chain, point), torch.sigmoid(-a), accumulate=True)
        return ll, weights @ lin.joint
    rows = lin.joint[point] * torch.sigmoid(-a)[:, None]
    kick = rows.new_zeros(chains, rows.shape[1]).index_add_(0, chain, rows)
    return ll, kick


class DualAveraging:
    """Hoffman & Gelman (2014), Sec. 3.2: adapts ``log eps`` until the statistic averages
    ``target``."""

    def __init__(self, eps: float, target: float = 0.8, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75) -> None:  # fmt: skip
        self.mu, self.target, self.gamma, self.t0, self.kappa = (
            math.log(10.0 * eps), target, gamma, t0, kappa,
        )  # fmt: skip
        self.log_eps, self.log_eps_bar, self.h_bar, self.t = math.log(eps), 0.0, 0.0, 0

    def update(self, statistic: float) -> float:
        self.t += 1
        w = 1.0 / (self.t + self.t0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - statistic)
        self.log_eps = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        eta = self.t ** (-self.kappa)
        self.log_eps_bar = eta * self.log_eps + (1.0 - eta) * self.log_eps_bar
        return math.exp(self.log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


# The most leapfrog steps in one trajectory (a step size adapted far down, e.g. from a bad
# start, would otherwise make one update arbitrarily long); NUTS's default depth allows 1,023.
MAX_LEAPFROGS = 4096


class HamiltonianSliceSampler:
    """Slice updates along Hamiltonian trajectories over C chains (``directions=hamiltonian``).

    ``trajectory``: the length in time of one trajectory (whitened units: ``pi / 2`` is a
    quarter period of the Gaussian part); ``init_step``: the first step size, adapted in
    warm-up towards ``target_accept``; each update jitters it by +-10 %.
    ``warmup_trajectory``: a shorter length for the warm-up updates (None: ``trajectory``), so
    that more of them, hence a better adapted step, fit the same time. ``scale_moves``: scale
    moves (Liu & Sabatti 2000) after each update, as :class:`SliceSampler`'s.
    """

    def __init__(
        self,
        warmup: int = 0,
        trajectory: float = 6.0,
        init_step: float = 0.01,
        target_accept: float = 0.8,
        warmup_trajectory: float | None = None,
        scale_moves: int = 0,
        scale_width: float = 1.0,
        max_steps: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        if not (trajectory > 0 and init_step > 0 and 0 < target_accept < 1 and warmup >= 0):
            raise ValueError(
                f"trajectory={trajectory}, init_step={init_step}, target_accept={target_accept}, "
                f"warmup={warmup}: need trajectory, init_step > 0, 0 < target_accept < 1, "
                "warmup >= 0"
            )
        self.warmup, self.trajectory, self.generator = warmup, float(trajectory), generator
        if warmup_trajectory is not None and not warmup_trajectory > 0:
            raise ValueError(f"warmup_trajectory={warmup_trajectory}: must be positive or None")
        self.warmup_trajectory = float(warmup_trajectory or trajectory)
        self.adapt = DualAveraging(init_step, target_accept)
        self.step_size = float(init_step)
        self.scale_moves, self.scale_width, self.max_steps = scale_moves, scale_width, max_steps
        self.iteration = self.leapfrogs = self.calls = 0
        self.accept_sum = self.in_slice_sum = 0.0
        self._split: Splitting | None = None
        self._state: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.warmup

    def sweep(self, target: Target, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        """One trajectory update (and ``scale_moves`` scale moves); returns ``(theta, logp)``."""
        if self._split is None:
            self._split = target.splitting(theta)
        sp = self._split
        if self._state is not None and torch.equal(self._state[0], theta):
            z, lp, grad = self._state[1:]
        else:
            z = sp.to_z(theta)
            lp, grad = sp.rest(z)
        jitter = 0.9 + 0.2 * float(torch.rand((), generator=self.generator))
        eps = self.step_size * jitter
        length = self.warmup_trajectory if self.warming_up else self.trajectory
        steps = min(max(1, round(length / eps)), MAX_LEAPFROGS)
        if sp.linear is not None and sp.gaussian:
            step = slice_trajectory_linear(z, lp, grad, sp.linear, eps, steps, self.generator)
        else:
            step = slice_trajectory(z, lp, grad, sp.rest, eps, steps, sp.gaussian, self.generator)
        self.leapfrogs += steps
        accept = float(step.accept.mean())
        self.accept_sum += accept
        self.in_slice_sum += float(step.in_slice.mean())
        if self.warming_up:
            self.step_size = self.adapt.update(accept)
            if self.iteration == self.warmup - 1:
                self.step_size = self.adapt.final
        theta = sp.to_theta(step.z)
        logp = target.log_density(theta)
        for _ in range(self.scale_moves):
            s = scale_update(
                target.scaling_ray(theta), logp, theta.shape[-1], self.scale_width,
                self.max_steps, self.generator,
            )  # fmt: skip
            self.calls += s.calls
            theta, logp = theta * torch.exp(s.t)[:, None], s.logp
        if self.scale_moves:
            z = sp.to_z(theta)
            lp, grad = sp.rest(z)
            self._state = (theta, z, lp, grad)
        else:
            self._state = (theta, step.z, step.logp_rest, step.grad)
        self.iteration += 1
        return theta, logp

    def info(self) -> dict:
        n = max(self.iteration, 1)
        return {
            "trajectory": self.trajectory,
            "warmup_trajectory": self.warmup_trajectory,
            "step_size": round(self.step_size, 6),
            "leapfrogs_per_update": round(self.leapfrogs / n, 1),
            "accept_mean": round(self.accept_sum / n, 3),
            "in_slice_mean": round(self.in_slice_sum / n, 3),
        }
