"""Factor slice sampling (Tibbits et al. 2014) over C chains at once: sweeps of univariate
slice updates (Neal 2003) along a basis of directions, with the basis and the widths adapted
during warm-up.

Directions are the coordinates, or the eigenvectors of the posterior covariance estimated from
the warm-up draws (``factor``): along the eigenvectors a Gaussian posterior factorises, so one
sweep is then an independent draw however strongly the coordinates are correlated. The widths
follow Tibbits et al.'s rule: expansions and shrinks should balance (Sec. 3.3).
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import Tensor

from bayes_spheres.kernels.steps import slice_update
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
    Neal's ``m``; ``adapt_every``: sweeps between width adjustments in warm-up.
    """

    def __init__(
        self,
        dim: int,
        directions: Directions | str = Directions.FACTOR,
        warmup: int = 0,
        init_width: float = 1.0,
        max_steps: int = 20,
        adapt_every: int = 5,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if init_width <= 0 or max_steps < 1 or adapt_every < 1 or warmup < 0:
            raise ValueError(
                f"init_width={init_width}, max_steps={max_steps}, adapt_every={adapt_every}, "
                f"warmup={warmup}: need init_width > 0, max_steps, adapt_every >= 1, warmup >= 0"
            )
        self.directions = Directions(directions)
        self.warmup, self.max_steps, self.adapt_every = warmup, max_steps, adapt_every
        self.generator = generator
        self.basis = torch.eye(dim, dtype=dtype, device=device)
        self.widths = torch.full((dim,), float(init_width), dtype=dtype, device=device)
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

    def sweep(self, target: Target, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        """One update along every direction, in random order; returns ``(theta, logp)``."""
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
        if self.warming_up:
            self._adapt(theta)
        self.iteration += 1
        return theta, logp

    def _adapt(self, theta: Tensor) -> None:
        done = self.iteration + 1
        if done % self.adapt_every == 0:
            # Tibbits et al. (2014), Sec. 3.3: w <- 2 w E / (E + S), smoothed and bounded.
            ratio = 2.0 * (self._expansions + 1) / (self._expansions + self._shrinks + 2)
            self.widths = self.widths * ratio.clamp(*WIDTH_FACTOR_RANGE)
            self._expansions.zero_()
            self._shrinks.zero_()
        if self._ends and done <= self._ends[-1]:
            self._window.append(theta.clone())
        if done in self._ends:
            draws = torch.cat(self._window)
            self._window = []
            if draws.shape[0] > 2:
                self.basis, values = factor_basis(draws)
                self.widths = 3.0 * values.sqrt().clamp_min(1e-6)
