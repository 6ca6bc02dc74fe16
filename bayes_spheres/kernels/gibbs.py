"""The conditional path's Gibbs update of C chains (``kernels/conditional.py`` lists its four
steps and why): ``z | H`` per chain on the fast integrator, ``H | z`` for all coordinates of
``H`` together, an orbit move per global scale, and ``H | G`` where it differs from
``H | z``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.hyper import HyperSampler, Width
from bayes_spheres.kernels.scale_moves import orbit_update

if TYPE_CHECKING:
    from bayes_spheres.kernels.conditional import ConditionalTarget

KEEP_SHARE = 0.1


class ConditionalSampler:
    """The Gibbs update for C chains: each chain has its own
    :class:`~bayes_spheres.kernels.hamiltonian.HamiltonianSliceSampler` for ``z | H`` (its
    own step size, adapted in warm-up on its own changing targets); the hyper-parameters'
    updates (:class:`~bayes_spheres.kernels.hyper.HyperSampler`) and orbit moves adapt over
    all chains.

    ``H | z`` always runs, and ``H | G`` where it differs from it, except where every
    coordinate of ``H`` is a global scale with an orbit move: then each of the two is kept
    after warm-up only if, over the second half of warm-up, its mean squared jump of ``H`` was
    at least :data:`KEEP_SHARE` of the orbit moves'. Each costs about as many traces of the
    model as an orbit move, and along a global scale in many dimensions both are narrow (at
    the paper's scale ``log s | z`` has sd about 0.10, ``log s | w`` 0.03, the orbit 0.36).
    ``orbit_moves=False`` leaves the orbit moves out and ``keep_hyper_steps=True`` keeps
    both steps (benchmarks)."""

    def __init__(
        self,
        chains: int,
        new_sampler: Callable[[], HamiltonianSliceSampler],
        init_width: float = 1.0,
        max_steps: int = 20,
        *,
        orbit_moves: bool = True,
        keep_hyper_steps: bool = False,
    ) -> None:
        self.samplers = [new_sampler() for _ in range(chains)]
        self.init_width, self.max_steps, self.orbit_moves = init_width, max_steps, orbit_moves
        self.keep_hyper_steps = keep_hyper_steps
        self.steps: dict[str, HyperSampler] = {}  # "given z", "given G": H | z, H | G
        self.reasons: dict[str, str] = {}
        self.widths: list[Width] = []
        self.iteration = self.orbit_evaluations = 0
        self.orbit_steps: list[float] = []  # |t| of each orbit move after warm-up
        self.diverging: Tensor | None = None
        self._jumps: dict[str, float] = {}  # mean squared jumps of H, warm-up's second half
        self._deciding = False
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # theta, hyper, z returned
        self._configured = False

    def _configure(self, target: ConditionalTarget) -> None:
        first = self.samplers[0]

        def hyper_sampler() -> HyperSampler:
            return HyperSampler(
                target.hyper_size, first.warmup, self.init_width, self.max_steps,
                target_accept=first.target_accept, max_energy=first.max_energy,
                generator=first.generator,
            )  # fmt: skip

        self.steps["given z"] = hyper_sampler()
        if target.interweaves:
            self.steps["given G"] = hyper_sampler()
        else:
            self.reasons["given G"] = "not run: G -> z does not depend on H"
        covered = self.orbit_moves and len(target.orbits) == target.hyper_size
        self._deciding = covered and not self.keep_hyper_steps and first.warmup > 0
        self._jumps = dict.fromkeys([*self.steps, "orbits"], 0.0)
        self.widths = [Width(self.init_width) for _ in target.orbits]
        self._configured = True

    def _decide(self) -> None:
        """At the end of warm-up: keep each coordinate-wise step or not (class docstring)."""
        self._deciding = False
        orbits = self._jumps["orbits"]
        for name in list(self.steps):
            kept = self._jumps[name] >= KEEP_SHARE * orbits
            self.reasons[name] = (
                f"{'kept' if kept else 'dropped'} after warm-up: mean squared jump "
                f"{self._jumps[name]:.3g} against {orbits:.3g} for the orbit moves"
            )
            if not kept:
                del self.steps[name]

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.samplers[0].warmup

    def _record(self, name: str, before: Tensor, after: Tensor) -> None:
        if self._deciding and 2 * self.iteration >= self.samplers[0].warmup:
            self._jumps[name] += float(((after - before) ** 2).sum(-1).mean())

    def sweep(
        self, target: ConditionalTarget, theta: Tensor, logp: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One Gibbs update of every chain at ``theta`` [C, P]; returns ``(theta, logp)``."""
        if not self._configured:
            self._configure(target)
        if self._deciding and not self.warming_up:
            self._decide()
        if self._last is not None and torch.equal(self._last[0], theta):
            hyper, z = self._last[1:]
        else:
            hyper, z = target.split(theta)
        rows, diverging = [], []
        for c, sampler in enumerate(self.samplers):
            block = target.conditional(hyper[c], z[c])
            sampler.retarget(block, z[c : c + 1])
            moved, _ = sampler.sweep(block, z[c : c + 1], block.log_density(z[c : c + 1]))
            rows.append(moved[0])
            diverging.append(sampler.diverging)
        z = torch.stack(rows)
        diverging = [torch.cat(diverging)]
        joint = None  # log p(hyper, z) of the chains, where known
        if "given z" in self.steps:
            before = hyper
            hyper, joint = self.steps["given z"].sweep(target.hyper_given_z(z), hyper)
            self._record("given z", before, hyper)
            diverging.append(self.steps["given z"].diverging)
        if self.orbit_moves:
            before = hyper
            hyper, z, joint = self._orbits(target, hyper, z, joint)
            self._record("orbits", before, hyper)
        theta = target.join(hyper, z)
        if "given G" in self.steps:
            before = hyper
            hyper, logp = self.steps["given G"].sweep(target.hyper_given_gaussian(theta), hyper)
            self._record("given G", before, hyper)
            diverging.append(self.steps["given G"].diverging)
            theta[:, target.hyper_index] = hyper
            self._last = None  # z = (G - loc(H)) / scale(H) moved with H
        else:
            logp = target.log_density(theta)
            self._last = (theta, hyper, z)
        self.diverging = torch.stack([d.cpu() for d in diverging]).any(0)
        self.iteration += 1
        return theta, logp

    def _orbits(
        self, target: ConditionalTarget, hyper: Tensor, z: Tensor, logp: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One orbit move per global scale (``kernels/scale_moves.py``)."""
        for (k, exponents), width in zip(target.orbits, self.widths, strict=True):
            direction = torch.zeros_like(hyper[0])
            direction[k] = 1.0
            hyper, z, logp, step, evaluations = orbit_update(
                target.joint_density, hyper, z, direction, exponents.to(z), width.width,
                self.max_steps, logp, self.samplers[0].generator,
            )  # fmt: skip
            width.record(step, self.warming_up)
            self.orbit_evaluations += evaluations
            if not self.warming_up:
                self.orbit_steps.extend(step.t.abs().tolist())
        return hyper, z, logp

    def info(self) -> dict:
        first = self.samplers[0].info()
        first["step_size"] = [round(s.step_size, 6) for s in self.samplers]
        updates = max(self.iteration, 1)
        out = first | {f"hyper_{name.replace(' ', '_')}": step.info()
                       for name, step in self.steps.items()}  # fmt: skip
        out["hyper_steps"] = {name: self.reasons.get(name, "run") for name in
                              ("given z", "given G")}  # fmt: skip
        if self.widths and self.orbit_moves:
            steps = self.orbit_steps or [0.0]
            out["orbit_moves"] = {
                "width": [round(w.width, 4) for w in self.widths],
                "evaluations_per_update": round(self.orbit_evaluations / updates, 1),
                "mean_abs_t": round(sum(steps) / len(steps), 4),
            }
        return out
