"""Factor slice sampling (Tibbits et al. 2014) over C chains at once: sweeps of univariate
slice updates (Neal 2003) along a basis of directions, with the basis and the widths adapted
during warm-up.

Directions are the coordinates, or the factor directions of the posterior covariance estimated from
the warm-up draws (``factor``; eigenvectors of the correlation matrix, scaled by the
standard deviations): along them a Gaussian posterior factorises, so one
sweep is then an independent draw however strongly the coordinates are correlated. The widths
follow Tibbits et al.'s rule: expansions and shrinks should balance (Sec. 3.3).

Each sweep can end with ``scale_moves`` updates of the scale: ``theta <- g theta`` with ``g``
from the generalized Gibbs conditional of Liu & Sabatti (2000). Univariate updates change the
radius ``|theta|`` only slowly when the posterior is a large, nearly isotropic prior cut by
constraints (the flat model on separable data); one scale move redraws it.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter
from pyro.ops.welford import WelfordCovariance
from torch import Tensor

from bayes_spheres.kernels.protocols import Target
from bayes_spheres.kernels.steps import scale_update, slice_update

WIDTH_FACTOR_RANGE = (0.25, 4.0)


class Directions(StrEnum):
    """Along which directions the univariate slice updates move."""

    COORDINATE = "coordinate"
    FACTOR = "factor"
    HAMILTONIAN = "hamiltonian"  # along Hamiltonian trajectories: kernels.hamiltonian


def slow_windows(warmup: int) -> list[tuple[int, int]]:
    """The warm-up sweeps ``(first, last)`` over which the covariance is estimated: the slow
    windows of Stan's schedule as Pyro's :class:`~pyro.infer.mcmc.adaptation.WarmupAdapter`
    builds it (its first and last windows only tune widths); none for short warm-ups."""
    if warmup < 20:
        return []
    adapter = WarmupAdapter(adapt_step_size=False, adapt_mass_matrix=True)
    adapter.configure(warmup, initial_step_size=1.0, mass_matrix_shape={("theta",): (1,)})
    return [(window.start, window.end) for window in adapter.adaptation_schedule[1:-1]]


def factor_basis(covariance: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Directions (columns) along which a Gaussian with this covariance factorises, and the
    variance along each: ``sd * v_k`` and ``lambda_k`` for the eigenpairs of the correlation
    matrix, in float64. Through the correlation matrix, not the covariance: where scales
    differ by many orders (a site the likelihood does not reach drifts far), the eigenvalues
    of the covariance lose the small directions to rounding, and their widths collapse."""
    sd = covariance.double().diagonal().clamp_min(1e-300).sqrt()
    correlation = covariance.double() / sd[:, None] / sd[None, :]
    values, vectors = torch.linalg.eigh(correlation)
    return (sd[:, None] * vectors).to(dtype), values.clamp_min(0.0).to(dtype)


class SliceSampler:
    """Sweeps of slice updates over C chains; adapts during the first ``warmup`` sweeps.

    ``init_width``: the interval width before adaptation (unconstrained space); ``max_steps``:
    Neal's ``m``; ``adapt_every``: sweeps between width adjustments in warm-up;
    ``scale_moves``: scale moves (Liu & Sabatti 2000) at the end of each sweep, 0 for none;
    their width in ``log g`` starts at ``init_width`` and adapts like the others;
    ``generator``: the random stream every draw takes (None: torch's global one).
    """

    def __init__(
        self,
        dim: int,
        directions: Directions | str = Directions.FACTOR,
        warmup: int = 0,
        init_width: float = 1.0,
        max_steps: int = 20,
        adapt_every: int = 5,
        scale_moves: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if init_width <= 0 or max_steps < 1 or adapt_every < 1 or warmup < 0 or scale_moves < 0:
            raise ValueError(
                f"init_width={init_width}, max_steps={max_steps}, adapt_every={adapt_every}, "
                f"warmup={warmup}, scale_moves={scale_moves}: need init_width > 0, max_steps, "
                "adapt_every >= 1, warmup, scale_moves >= 0"
            )
        self.directions = Directions(directions)
        if self.directions is Directions.HAMILTONIAN:
            raise ValueError("directions='hamiltonian': use HamiltonianSliceSampler")
        self.warmup, self.max_steps, self.adapt_every = warmup, max_steps, adapt_every
        self.basis = torch.eye(dim, dtype=dtype, device=device)
        self.widths = torch.full((dim,), float(init_width), dtype=dtype, device=device)
        self.scale_moves, self.scale_width = scale_moves, float(init_width)
        self._scale_counts = [0.0, 0.0]  # expansions, shrinks of the scale moves in warm-up
        self.iteration = 0
        self.calls = self.updates = 0
        self.generator = generator
        self._windows = slow_windows(warmup) if self.directions is Directions.FACTOR else []
        self._welford = WelfordCovariance(diagonal=False)
        self._expansions = torch.zeros(dim, dtype=dtype, device=device)
        self._shrinks = torch.zeros(dim, dtype=dtype, device=device)

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.warmup

    @property
    def calls_per_update(self) -> float:
        return self.calls / max(self.updates, 1)

    def info(self) -> dict:
        return {
            "evaluations_per_update": round(self.calls_per_update, 3),
            "width_median": float(self.widths.median()),
            "scale_width": self.scale_width,
        }

    def sweep(self, target: Target, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        """One update along every direction, in random order, then ``scale_moves`` scale moves;
        returns ``(theta, logp)``."""
        lines = target.lines(theta, self.basis)
        # on the CPU: an order of directions
        order = torch.randperm(len(self.widths), generator=self.generator)
        widths = self.widths.tolist()
        for k in order.tolist():
            step = slice_update(lines.along(k), logp, widths[k], self.max_steps, self.generator)
            lines.move(k, step.t)
            logp = step.logp
            self.calls += step.calls
            if self.warming_up:
                self._expansions[k] += step.expansions.sum()
                self._shrinks[k] += step.shrinks.sum()
        self.updates += len(widths)
        theta = lines.theta
        for _ in range(self.scale_moves):
            theta, logp = self._scale_move(target, theta, logp)
        if self.warming_up:
            self._adapt(theta)
        self.iteration += 1
        return theta, logp

    def _scale_move(self, target: Target, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        step = scale_update(
            target.scaling_ray(theta), logp, theta.shape[-1], self.scale_width, self.max_steps,
            self.generator,
        )  # fmt: skip
        self.calls += step.calls
        self.updates += 1
        if self.warming_up:
            self._scale_counts[0] += float(step.expansions.sum())
            self._scale_counts[1] += float(step.shrinks.sum())
        return theta * torch.exp(step.t)[:, None], step.logp

    def _adapt(self, theta: Tensor) -> None:
        done = self.iteration + 1
        if done % self.adapt_every == 0:
            # Tibbits et al. (2014), Sec. 3.3: w <- 2 w E / (E + S), smoothed and bounded.
            ratio = 2.0 * (self._expansions + 1) / (self._expansions + self._shrinks + 2)
            self.widths = self.widths * ratio.clamp(*WIDTH_FACTOR_RANGE)
            self._expansions.zero_()
            self._shrinks.zero_()
            if self.scale_moves:
                e, s = self._scale_counts
                self.scale_width *= min(max(2.0 * (e + 1) / (e + s + 2), WIDTH_FACTOR_RANGE[0]),
                                        WIDTH_FACTOR_RANGE[1])  # fmt: skip
                self._scale_counts = [0.0, 0.0]
        window = next((w for w in self._windows if w[0] <= self.iteration <= w[1]), None)
        if window is None:
            return
        for row in theta.double():  # Welford in float64 whatever the model's dtype
            self._welford.update(row)
        if self.iteration == window[1] and self._welford.n_samples > 2:
            # Stan's regularised estimate (shrunk towards 1e-3 I), as Pyro's mass matrix
            covariance = self._welford.get_covariance(regularize=True)
            self._welford.reset()
            self.basis, values = factor_basis(covariance, theta.dtype)
            self.widths = 3.0 * values.sqrt().clamp_min(1e-6)
