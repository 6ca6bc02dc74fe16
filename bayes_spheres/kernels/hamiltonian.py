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
   ``-H >= log u`` (the current state always is).

The integrator is volume preserving and reversible, so the set of states is the same whichever
of them the chain started from, and a uniform draw from its part inside the slice leaves the
joint density of ``(z, v)`` invariant; no accept/reject step.

**The length.** A fixed length costs ``trajectory / eps`` steps however stiff or flat the
target is. With ``trajectory=None`` the trajectory grows by doublings until it turns back on
itself (Hoffman & Gelman 2014, Alg. 3: :mod:`~bayes_spheres.kernels.no_u_turn`), no shorter
than a floor learnt in warm-up (:mod:`~bayes_spheres.kernels.trajectory_length`), so its cost
follows the posterior; targets with their own integrator (the fast path) keep a fixed one,
measured in the posterior's longest scale (:meth:`HamiltonianSliceSampler.fitted_length`).

Where the target has a Gaussian part (the prior of the study's models), coordinates are
whitened by it, ``theta = m + L z``, and its flow is exact: a rotation of ``(z, v)``; only the
rest (the likelihood) enters as kicks ("split HMC", Shahbaba et al. 2014). Without a Gaussian
part the flow is a drift and this is ordinary leapfrog, preconditioned by a mass matrix
adapted in warm-up (diagonal or dense; Stan's windows).

Warm-up uses Pyro's own pieces: :class:`pyro.infer.mcmc.adaptation.WarmupAdapter` (its
window schedule, dual averaging of the step size towards mean ``min(1, e^-dH)`` =
``target_accept``, Hoffman & Gelman 2014 Sec. 3.2, and Welford estimates of the covariance).
A trajectory whose energy rises by more than ``max_energy`` (Pyro's 1,000) is reported as
divergent, as Pyro's HMC and NUTS report theirs, and each direction of it ends at its first
state whose energy is more than ``max_energy`` above the slice level ``-log u``
(:func:`truncate`), as NUTS's trees end at a divergence: the states after it are left out.
The level is the same for every state of the trajectory, so the states left, the run of
states between the first such state on either side, are the same whichever of them the chain
started from, and the update stays exact. Those states are never inside the slice in
practice (0 of 230,000 in-slice states on the shared-mean posterior at the paper's scale were
past such a state), but integrating them was a fifth of the steps there.
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch
from pyro.infer.mcmc.adaptation import BlockMassMatrix, WarmupAdapter
from torch import Tensor

from bayes_spheres.kernels.leapfrog import energy, leapfrog
from bayes_spheres.kernels.leapfrog import flow as flow  # re-exported: its old home
from bayes_spheres.kernels.no_u_turn import MAX_DEPTH, no_u_turn_trajectory
from bayes_spheres.kernels.protocols import Splitting, Target
from bayes_spheres.kernels.slice_trajectory import MAX_ENERGY, slice_trajectory
from bayes_spheres.kernels.steps import scale_update
from bayes_spheres.kernels.trajectory_length import (
    TRAJECTORIES_MIX_RADIUS,
    least_states,
    length_scale,
    radius_mixing,
    warmup_floor,
)

# The most leapfrog steps in one trajectory (a step size adapted far down, e.g. from a bad
# start, would otherwise make one update arbitrarily long); NUTS's default depth allows 1,023.
MAX_LEAPFROGS = 4096
# The fixed length where the target brings its own integrator and ``trajectory`` is None
# (the fast path's; docs/mcmc.md).
SPECIALISED_TRAJECTORY = 6.0
SITE = ("theta",)  # the one block of the mass matrix: the flat unconstrained vector


class Mass(StrEnum):
    """The mass matrix adapted in warm-up where the target has no Gaussian part."""

    UNIT = "unit"
    DIAGONAL = "diagonal"
    DENSE = "dense"


class ChainsMassMatrix(BlockMassMatrix):
    """Pyro's :class:`~pyro.infer.mcmc.adaptation.BlockMassMatrix`, updated with the states of
    all C chains at once (``z[site]`` [C, P]: one Welford update per chain)."""

    def update(self, z: dict[str, Tensor], z_grad: dict[str, Tensor] | None) -> None:
        for site_names, scheme in self._adapt_scheme.items():
            rows = torch.cat([z[name].detach().reshape(len(z[name]), -1) for name in site_names], 1)
            for row in rows.double():  # Welford in float64 whatever the model's dtype
                scheme.update(row)

    def end_adaptation(self) -> None:
        like = next(iter(self._inverse_mass_matrix.values()))
        self.inverse_mass_matrix = {
            names: scheme.get_covariance(regularize=True).to(like)
            for names, scheme in self._adapt_scheme.items()
        }


class HamiltonianSliceSampler:
    """Slice updates along Hamiltonian trajectories over C chains (``directions=hamiltonian``).

    ``trajectory``: the length in time of one trajectory (whitened units: ``pi / 2`` is a
    quarter period of the Gaussian part); None: as long as the no-U-turn criterion lets it
    grow (:mod:`~bayes_spheres.kernels.no_u_turn`, at most ``2^max_depth - 1`` steps; with
    ``floor``, no shorter than a quarter period of the posterior's longest scale measured in
    warm-up, :mod:`~bayes_spheres.kernels.trajectory_length`), or ``SPECIALISED_TRAJECTORY``
    where the target brings its own fixed-length integrator (the fast path). ``init_step``:
    the first step size, adapted in warm-up towards ``target_accept``; each update jitters it
    by +-10 %. ``warmup_trajectory``: a length for the warm-up updates (None: as
    ``trajectory``), so that more of them, hence a better adapted step, fit the same time.
    ``mass``: the mass matrix adapted where the target has no Gaussian part.
    ``scale_moves``: scale moves (Liu & Sabatti 2000) after each update. ``max_energy``: the
    divergence threshold. ``fit_to_warmup``: after warm-up, measure a fixed length along a
    Gaussian part in the posterior's longest scale (:meth:`fitted_length`) and drop scale
    moves that trajectories make redundant (:meth:`_keep_scale_moves`). ``generator``: the
    random stream every draw takes (None: torch's global one).
    """

    def __init__(
        self,
        warmup: int = 0,
        trajectory: float | None = None,
        init_step: float = 0.1,
        target_accept: float = 0.8,
        warmup_trajectory: float | None = None,
        mass: Mass | str = Mass.DIAGONAL,
        scale_moves: int = 0,
        scale_width: float = 1.0,
        max_steps: int = 20,
        max_energy: float = MAX_ENERGY,
        max_depth: int = MAX_DEPTH,
        floor: bool = True,
        fit_to_warmup: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if not (init_step > 0 and 0 < target_accept < 1 and warmup >= 0 and max_depth >= 1):
            raise ValueError(
                f"init_step={init_step}, target_accept={target_accept}, warmup={warmup}, "
                f"max_depth={max_depth}: need init_step > 0, 0 < target_accept < 1, "
                "warmup >= 0, max_depth >= 1"
            )
        for name, length in (("trajectory", trajectory), ("warmup_trajectory", warmup_trajectory)):
            if length is not None and not length > 0:
                raise ValueError(f"{name}={length}: must be positive or None")
        self.warmup = warmup
        self.trajectory = None if trajectory is None else float(trajectory)
        self.warmup_trajectory = self.trajectory
        if warmup_trajectory is not None:
            self.warmup_trajectory = float(warmup_trajectory)
        self.max_depth, self.use_floor = max_depth, floor
        self.generator = generator
        self.floor: float | None = None  # learnt at the end of warm-up
        self.fit_to_warmup = fit_to_warmup
        self.length_scale: float | None = None  # learnt at the end of warm-up
        self._warmup_states: list[Tensor] = []
        self.init_step, self.target_accept, self.mass = init_step, target_accept, Mass(mass)
        self.step_size = float(init_step)
        self.scale_moves, self.scale_width, self.max_steps = scale_moves, scale_width, max_steps
        self.max_energy = max_energy
        self.scale_moves_decision: str | None = None  # made at the end of warm-up
        self._radial: list[tuple[Tensor, Tensor]] = []  # warm-up's 2nd half: log |theta|, jump
        self.iteration = self.leapfrogs = self.calls = 0
        self.draw_leapfrogs = self.draw_states = self.draw_time = 0.0  # after warm-up
        self.accept_sum = self.in_slice_sum = 0.0
        self.adapter: WarmupAdapter | None = None
        self._base: Splitting | None = None
        self._split: Splitting | None = None
        self._inverse_mass: Tensor | None = None
        self._state: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.warmup

    def _configure(self, target: Target, theta: Tensor) -> None:
        self._base = self._split = target.splitting(theta)
        adapt_mass = self.mass is not Mass.UNIT and not self._base.gaussian
        self.adapter = WarmupAdapter(
            self.init_step,
            adapt_step_size=True,
            target_accept_prob=self.target_accept,
            adapt_mass_matrix=adapt_mass,
            dense_mass=self.mass is Mass.DENSE,
        )
        self.adapter.mass_matrix_adapter = ChainsMassMatrix()
        size = theta.shape[-1]
        shape = (size, size) if self.mass is Mass.DENSE else (size,)
        self.adapter.configure(
            max(self.warmup, 1),
            initial_step_size=self.init_step,
            mass_matrix_shape={SITE: shape},
            find_reasonable_step_size_fn=self._reasonable_step,
            options={"dtype": theta.dtype, "device": theta.device},
        )
        self._inverse_mass = self.adapter.mass_matrix_adapter.inverse_mass_matrix[SITE]
        self.adapter.reset_step_size_adaptation(None)  # prox centre log(10 init_step)

    def _reasonable_step(self, z: dict[str, Tensor]) -> float:
        """Pyro's ``reset_step_size_adaptation`` hook, called after a mass-matrix window: take
        the new inverse mass as coordinates of the rest, then double or halve the step until
        one leapfrog step's mean ``min(1, e^-dH)`` crosses ``target_accept`` (Hoffman &
        Gelman 2014, Alg. 4, as Pyro's HMC does)."""
        inverse_mass = self.adapter.mass_matrix_adapter.inverse_mass_matrix[SITE]
        if inverse_mass is self._inverse_mass:
            return self.step_size
        self._inverse_mass = inverse_mass
        if inverse_mass.dim() == 1:
            scale = inverse_mass.sqrt()
        else:
            scale = torch.linalg.cholesky(inverse_mass)
        self._split = split = self._base.preconditioned(scale)
        self._state = None  # its z belongs to the old coordinates
        zz = split.to_z(z[SITE[0]])
        lp, grad = split.rest(zz)

        def accept(eps: float) -> float:
            v = torch.randn_like(zz, generator=self.generator)
            h0 = energy(zz, v, lp, split.gaussian)
            z1, v1, lp1, _ = leapfrog(zz, v, grad, eps, split.rest, split.gaussian)
            dh = (energy(z1, v1, lp1, split.gaussian) - h0).nan_to_num(math.inf)
            return float(torch.exp(-dh.clamp_min(0.0)).mean())

        eps = self.step_size
        direction = 1.0 if accept(eps) > self.target_accept else -1.0
        for _ in range(40):
            eps_next = eps * 2.0**direction
            if (accept(eps_next) > self.target_accept) != (direction > 0):
                return eps_next if direction < 0 else eps
            eps = eps_next
        return eps

    def retarget(self, target: Target, theta: Tensor) -> None:
        """Sweep ``target`` from now on, keeping the step size and its adaptation: for a
        sequence of targets with an exact Gaussian part, such as the conditionals of a Gibbs
        update (``kernels/conditional.py``)."""
        if self.adapter is None:
            self._configure(target, theta)
            return
        split = target.splitting(theta)
        if not split.gaussian:
            raise ValueError("retarget needs a target with a Gaussian part (no mass matrix)")
        self._base = self._split = split
        self._state = None

    def sweep(self, target: Target, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        """One trajectory update (and ``scale_moves`` scale moves); returns ``(theta, logp)``."""
        if self.adapter is None:
            self._configure(target, theta)
        split = self._split
        if self._state is not None and torch.equal(self._state[0], theta):
            z, lp, grad = self._state[1:]
        else:
            z = split.to_z(theta)
            lp, grad = split.rest(z)
        # on the CPU: a number
        eps = self.step_size * (0.9 + 0.2 * float(torch.rand((), generator=self.generator)))
        length = self.warmup_trajectory if self.warming_up else self.trajectory
        if length is None and split.trajectory is None:
            if self.floor is None and not self.warming_up:
                self.floor = warmup_floor(self._warmup_states, split) if self.use_floor else 0.0
                self._warmup_states = []
            least = least_states(self.floor or 0.0, eps)
            tree = no_u_turn_trajectory(
                z, lp, grad, split.rest, eps, split.gaussian, self.max_energy, self.max_depth,
                least, generator=self.generator,
            )  # fmt: skip
            step, steps, states = tree.step, tree.leapfrogs, float(tree.states.mean())
        else:
            if length is None:
                length = SPECIALISED_TRAJECTORY
            if not self.warming_up:
                length = self.fitted_length(length, split)
            steps = states = min(max(1, round(length / eps)), MAX_LEAPFROGS)
            if split.trajectory is not None:
                step = split.trajectory(
                    z, lp, grad, eps, steps, self.max_energy, generator=self.generator
                )
            else:
                step = slice_trajectory(
                    z, lp, grad, split.rest, eps, steps, split.gaussian, self.max_energy,
                    self.generator,
                )  # fmt: skip
        self.leapfrogs += steps
        if not self.warming_up:
            self.draw_leapfrogs += steps
            self.draw_states += states
            self.draw_time += states * eps
        accept = step.accept.mean()
        self.accept_sum += float(accept)
        self.in_slice_sum += float(step.in_slice.mean())
        log_radius = theta.norm(dim=-1).log()
        theta = split.to_theta(step.z)
        logp = target.log_density(theta)
        fits_scale_moves = self.fit_to_warmup and split.gaussian and self.scale_moves
        if fits_scale_moves and not self.warming_up and self.scale_moves_decision is None:
            self._keep_scale_moves()
        scaled = torch.zeros_like(log_radius)
        for _ in range(self.scale_moves):
            s = scale_update(
                target.scaling_ray(theta), logp, theta.shape[-1], self.scale_width,
                self.max_steps, self.generator,
            )  # fmt: skip
            self.calls += s.calls
            theta, logp = theta * torch.exp(s.t)[:, None], s.logp
            scaled = scaled + s.t
        if fits_scale_moves and self.warming_up and 2 * self.iteration >= self.warmup:
            after = theta.norm(dim=-1).log()
            self._radial.append((after, after - log_radius - scaled))
        if self.scale_moves:
            self._state = None
        else:
            self._state = (theta, step.z, step.logp_rest, step.grad)
        if self.warming_up:
            fits = self.use_floor or self.fit_to_warmup
            if fits and 2 * self.iteration >= self.warmup:
                self._warmup_states.append(theta)
            self.adapter.step(self.iteration, {SITE[0]: theta}, accept)
            self.step_size = self.adapter.step_size
        self.iteration += 1
        self.diverging = step.diverging
        return theta, logp

    def _keep_scale_moves(self) -> None:
        """At the end of warm-up: drop the scale moves where the trajectories alone mixed the
        radius (``trajectory_length.radius_mixing``)."""
        share = radius_mixing(self._radial)
        kept = share < TRAJECTORIES_MIX_RADIUS
        self.scale_moves_decision = (
            f"{'kept' if kept else 'dropped'}: a trajectory moved log |theta| by "
            f"{share:.3g} of an independent draw's mean squared jump in warm-up"
        )
        self._radial = []
        if not kept:
            self.scale_moves = 0

    def fitted_length(self, length: float, split: Splitting) -> float:
        """``length`` in the posterior's longest scale, learnt once after warm-up where the
        target has a Gaussian part (``trajectory_length.length_scale``)."""
        if self.length_scale is None:
            self.length_scale = 1.0
            if self.fit_to_warmup and split.gaussian:
                self.length_scale = length_scale(self._warmup_states, split)
            self._warmup_states = []
        return length * self.length_scale

    def info(self) -> dict:
        """Settings and what the run measured: the step size adapted, leapfrog steps per
        update (batched over the chains: the longest chain's; over all updates, and over
        those after warm-up), and after warm-up the mean steps and length in time of one
        chain's trajectory (what the no-U-turn criterion chose); where the mass matrix is
        adapted (no Gaussian part), its inverse's diagonal."""
        n = max(self.iteration, 1)
        draws = max(self.iteration - self.warmup, 1)
        own = self._split is not None and self._split.trajectory is not None
        adaptive = SPECIALISED_TRAJECTORY if own else "no-u-turn"  # what None meant here
        adapted = {}
        if self.adapter is not None and not (self._base is not None and self._base.gaussian):
            inverse = self.adapter.mass_matrix_adapter.inverse_mass_matrix[SITE]
            diagonal = inverse if inverse.dim() == 1 else inverse.diagonal()
            adapted["inverse_mass_diagonal"] = [round(float(v), 6) for v in diagonal]
        return adapted | {
            "trajectory": adaptive if self.trajectory is None else self.trajectory,
            "warmup_trajectory": (
                adaptive if self.warmup_trajectory is None else self.warmup_trajectory
            ),
            "max_depth": self.max_depth,
            "floor": round(self.floor or 0.0, 4),
            "length_scale": round(self.length_scale or 1.0, 4),
            "scale_moves": self.scale_moves_decision or self.scale_moves,
            "length_mean": round(self.draw_time / draws, 4),
            "steps_per_chain": round(self.draw_states / draws, 1),
            "leapfrogs_per_draw": round(self.draw_leapfrogs / draws, 1),
            "step_size": round(self.step_size, 6),
            "mass": str(self.mass) if self._base is None or not self._base.gaussian else "prior",
            "leapfrogs_per_update": round(self.leapfrogs / n, 1),
            "accept_mean": round(self.accept_sum / n, 3),
            "in_slice_mean": round(self.in_slice_sum / n, 3),
        }
