"""Factor slice sampling (Tibbits et al. 2014) over C chains at once: sweeps of univariate
slice updates (Neal 2003) along a basis of directions, with the basis and the widths adapted
during warm-up.

Directions are the coordinates, or the eigenvectors of the posterior covariance estimated from
the warm-up draws (``factor``): along the eigenvectors a Gaussian posterior factorises, so one
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
from torch import Tensor

from bayes_spheres.kernels.steps import scale_update, slice_update
from bayes_spheres.kernels.targets import Target

# Fractions of the warm-up at which the covariance is re-estimated from the draws since the
# previous estimate (windows that grow, as in Stan's warm-up); the last stretch tunes widths.
COVARIANCE_WINDOWS = (0.15, 0.3, 0.5, 0.8)
# Shrinkage of the window's covariance towards its diagonal: (n S + k diag S) / (n + k).
SHRINKAGE_DRAWS = 10
WIDTH_FACTOR_RANGE = (0.25, 4.0)


class Directions(StrEnum):
    """Along which directions the univariate slice updates move."""

    COORDINATE = "coordinate"
    FACTOR = "factor"
    HAMILTONIAN = "hamiltonian"  # along Hamiltonian trajectories: kernels.hamiltonian


def window_ends(warmup: int) -> list[int]:
    """The warm-up sweeps after which the covariance is re-estimated (none for short warm-ups)."""
    ends = sorted({round(f * warmup) for f in COVARIANCE_WINDOWS})
    return [e for i, e in enumerate(ends) if e - (ends[i - 1] if i else 0) >= 5]


def factor_basis(draws: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvectors (columns) and eigenvalues of the shrunk covariance of ``draws`` [n, P]."""
    n = draws.shape[0]
    cov = torch.cov(draws.T).reshape(draws.shape[1], draws.shape[1])
    cov = (n * cov + SHRINKAGE_DRAWS * torch.diag(torch.diagonal(cov))) / (n + SHRINKAGE_DRAWS)
    values, vectors = torch.linalg.eigh(cov)
    return vectors, values.clamp_min(0.0)


class SliceSampler:
    """Sweeps of slice updates over C chains; adapts during the first ``warmup`` sweeps.

    ``init_width``: the interval width before adaptation (unconstrained space); ``max_steps``:
    Neal's ``m``; ``adapt_every``: sweeps between width adjustments in warm-up;
    ``scale_moves``: scale moves (Liu & Sabatti 2000) at the end of each sweep, 0 for none;
    their width in ``log g`` starts at ``init_width`` and adapts like the others.
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
        self.generator = generator
        self.basis = torch.eye(dim, dtype=dtype, device=device)
        self.widths = torch.full((dim,), float(init_width), dtype=dtype, device=device)
        self.scale_moves, self.scale_width = scale_moves, float(init_width)
        self._scale_counts = [0.0, 0.0]  # expansions, shrinks of the scale moves in warm-up
        self.iteration = 0
        self.calls = self.updates = 0
        self._ends = window_ends(warmup) if self.directions is Directions.FACTOR else []
        self._window: list[Tensor] = []
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
        if self._ends and done <= self._ends[-1]:
            self._window.append(theta.clone())
        if done in self._ends:
            draws = torch.cat(self._window)
            self._window = []
            if draws.shape[0] > 2:
                self.basis, values = factor_basis(draws)
                self.widths = 3.0 * values.sqrt().clamp_min(1e-6)
