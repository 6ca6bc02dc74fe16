"""Updates of the hyper-parameters of C chains given the rest (the conditional path's ``H | z``
and ``H | G`` steps, ``kernels/conditional.py``): all K coordinates of a chain together, on a
log density that only a model trace can evaluate, one point at a time.

- ``K = 1``: a univariate slice update (Neal 2003, Sec. 4) for all chains at once, its width
  adapted in warm-up by Tibbits et al.'s (2014, Sec. 3.3) balance of expansions and shrinks;
- ``K >= 2``: a slice update along a no-U-turn trajectory (Hoffman & Gelman 2014, Alg. 3;
  :mod:`~bayes_spheres.kernels.no_u_turn`) per chain, the gradient by autograd through the
  model, in coordinates scaled by a diagonal mass matrix; step size (dual averaging towards
  ``target_accept``) and mass (the hyper-parameters' warm-up variance over all chains) are
  adapted by Pyro's :class:`~pyro.infer.mcmc.adaptation.WarmupAdapter`, shared by the chains.

A trajectory's cost grows slowly with K (its length follows the conditional), so there is no
cap on K: a horseshoe's 26 scales (Inference Gym's sparse German credit) are one update.

A :data:`PointDensity` maps ``(chain, x)`` (``x`` a [K] or [Pz] tensor, as the caller defines)
to a scalar log density. Univariate updates evaluate only the points they have not seen in
the same update: Neal's stepping-out and shrinkage ask again for the ends and points of chains
that are done (:class:`BatchedAlong`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter
from torch import Tensor

from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, ChainsMassMatrix
from bayes_spheres.kernels.no_u_turn import no_u_turn_trajectory
from bayes_spheres.kernels.steps import SliceStep, slice_update

PointDensity = Callable[[int, Tensor], Tensor]
# Trajectories over the hyper-parameters stop at 2^6 - 1 = 63 gradients per chain: each is a
# trace of the model, and a Gibbs step needs a fraction of the trajectory NUTS allows.
HYPER_MAX_DEPTH = 6
WIDTH_FACTOR_RANGE = (0.25, 4.0)
ADAPT_EVERY = 5
SITE = ("hyper",)


class BatchedAlong:
    """``t [C, J] -> fn(c, t[c, j])`` [C, J] (a :data:`LogDensityAlong`), each ``(c, t)``
    evaluated once (module docstring); not-a-number becomes ``-inf`` (off the slice).
    ``evaluations``: the calls of ``fn``."""

    def __init__(self, fn: Callable[[int, float], Tensor], chains: int) -> None:
        self.fn = fn
        self.seen: list[dict[float, float]] = [{} for _ in range(chains)]
        self.evaluations = 0

    def __call__(self, t: Tensor) -> Tensor:
        rows = []
        for c, offsets in enumerate(t.tolist()):
            seen = self.seen[c]
            for offset in offsets:
                if offset not in seen:
                    value = float(self.fn(c, offset))
                    self.evaluations += 1
                    seen[offset] = -math.inf if math.isnan(value) else value
            rows.append([seen[offset] for offset in offsets])
        return torch.tensor(rows, dtype=t.dtype, device=t.device)


class Width:
    """A univariate slice width adapted in warm-up (Tibbits et al. 2014, Sec. 3.3):
    ``w <- w 2 (E + 1) / (E + S + 2)`` every :data:`ADAPT_EVERY` updates, bounded."""

    def __init__(self, width: float) -> None:
        self.width = float(width)
        self._counts = [0.0, 0.0]
        self._updates = 0

    def record(self, step: SliceStep, adapting: bool) -> None:
        if not adapting:
            return
        self._counts[0] += float(step.expansions.sum())
        self._counts[1] += float(step.shrinks.sum())
        self._updates += 1
        if self._updates % ADAPT_EVERY == 0:
            expansions, shrinks = self._counts
            ratio = 2.0 * (expansions + 1.0) / (expansions + shrinks + 2.0)
            self.width *= min(max(ratio, WIDTH_FACTOR_RANGE[0]), WIDTH_FACTOR_RANGE[1])
            self._counts = [0.0, 0.0]


class HyperSampler:
    """One update of all K hyper-parameter coordinates of C chains per :meth:`sweep` (module
    docstring); adapts during the first ``warmup`` sweeps."""

    def __init__(
        self,
        size: int,
        warmup: int,
        init_width: float = 1.0,
        max_steps: int = 20,
        target_accept: float = 0.8,
        init_step: float = 0.1,
        max_depth: int = HYPER_MAX_DEPTH,
        max_energy: float = MAX_ENERGY,
        generator: torch.Generator | None = None,
    ) -> None:
        self.size, self.warmup, self.max_steps = size, warmup, max_steps
        self.generator = generator
        self.max_depth, self.max_energy = max_depth, max_energy
        self.width = Width(init_width)
        self.iteration = self.evaluations = self.leapfrogs = 0
        self.diverging: Tensor | None = None
        self.step_size = init_step
        self.adapter: WarmupAdapter | None = None
        if size > 1:
            self.adapter = WarmupAdapter(
                init_step, adapt_step_size=True, target_accept_prob=target_accept,
                adapt_mass_matrix=True,
            )  # fmt: skip
            self.adapter.mass_matrix_adapter = ChainsMassMatrix()

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.warmup

    def sweep(self, density: PointDensity, hyper: Tensor) -> tuple[Tensor, Tensor]:
        """One update of ``hyper`` [C, K] under ``density``; returns ``(hyper, logp [C])``."""
        if self.size == 1:
            hyper, logp, diverging = self._slice(density, hyper)
        else:
            hyper, logp, diverging = self._trajectories(density, hyper)
        self.diverging = diverging
        self.iteration += 1
        return hyper, logp

    def _slice(self, density: PointDensity, hyper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        chains = len(hyper)
        along = BatchedAlong(lambda c, t: density(c, hyper[c] + t), chains)
        logp = along(hyper.new_zeros(chains, 1))[:, 0]
        step = slice_update(along, logp, self.width.width, self.max_steps, self.generator)
        self.width.record(step, self.warming_up)
        self.evaluations += along.evaluations
        return hyper + step.t[:, None], step.logp, torch.zeros_like(logp, dtype=torch.bool)

    def _configure(self, like: Tensor) -> None:
        self.adapter.configure(
            max(self.warmup, 1), initial_step_size=self.step_size,
            mass_matrix_shape={SITE: (self.size,)},
            find_reasonable_step_size_fn=lambda z: self.step_size,
            options={"dtype": like.dtype, "device": like.device},
        )  # fmt: skip
        self.adapter.reset_step_size_adaptation(None)

    def _trajectories(self, density: PointDensity, hyper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per chain, a no-U-turn slice update in the coordinates ``y = hyper / sd`` (``sd``
        the square root of the adapted inverse mass), where unit mass is that mass."""
        if self.iteration == 0:
            self._configure(hyper)
        sd = self.adapter.mass_matrix_adapter.inverse_mass_matrix[SITE].sqrt().to(hyper)
        # on the CPU: a number (each update jitters the step by +-10 %, as the z sampler does)
        eps = self.step_size * (0.9 + 0.2 * float(torch.rand((), generator=self.generator)))
        rows, logps, accepts, diverging = [], [], [], []
        for c in range(len(hyper)):

            def rest(y: Tensor, c: int = c) -> tuple[Tensor, Tensor]:
                point = (y[0] * sd).detach().requires_grad_(True)
                with torch.enable_grad():
                    logp = density(c, point)
                    (grad,) = torch.autograd.grad(logp, point)
                self.evaluations += 1
                if not bool(torch.isfinite(logp)):
                    logp = logp.new_tensor(-math.inf)
                return logp.detach().reshape(1), (grad * sd)[None]

            y = hyper[c : c + 1] / sd
            logp, grad = rest(y)
            tree = no_u_turn_trajectory(
                y,
                logp,
                grad,
                rest,
                eps,
                False,
                self.max_energy,
                self.max_depth,
                generator=self.generator,
            )
            self.leapfrogs += tree.leapfrogs
            rows.append(tree.step.z[0] * sd)
            logps.append(tree.step.logp_rest)
            accepts.append(tree.step.accept)
            diverging.append(tree.step.diverging)
        hyper = torch.stack(rows)
        if self.warming_up:
            self.adapter.step(self.iteration, {SITE[0]: hyper}, torch.cat(accepts).mean())
            self.step_size = self.adapter.step_size
        return hyper, torch.cat(logps), torch.cat(diverging)

    def info(self) -> dict:
        updates = max(self.iteration, 1)
        out = {"evaluations_per_update": round(self.evaluations / updates, 1)}
        if self.size == 1:
            return out | {"width": round(self.width.width, 4)}
        return out | {
            "step_size": round(self.step_size, 5),
            "leapfrogs_per_update": round(self.leapfrogs / updates, 1),
        }
