"""What every attack returns, and where every attack starts: random points on the spheres."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bayes_spheres.attack.objectives import Objective
from bayes_spheres.data import INNER, OUTER, sample_sphere
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.io import atomic_save_npz


@dataclass(frozen=True)
class AdversarialPoints:
    """Points found by an attack: ``x`` [K, D] on spheres ``radius`` [K], true ``label`` [K],
    and the ensemble's probability of the wrong class there, ``wrong_prob`` [K]."""

    x: Tensor
    radius: Tensor
    label: Tensor
    wrong_prob: Tensor

    def save(self, path: str | Path) -> None:
        atomic_save_npz(path, **{k: v.detach().cpu().numpy() for k, v in vars(self).items()})

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float64) -> AdversarialPoints:
        with np.load(path) as f:
            return cls(**{k: torch.as_tensor(f[k], dtype=dtype) for k in f.files})

    def rescore(self, ensemble: Ensemble) -> AdversarialPoints:
        """The same points scored by another ensemble (resampled error)."""
        return AdversarialPoints(
            self.x, self.radius, self.label, ensemble.wrong_prob(self.x, self.label)
        )


def project(x: Tensor, radius: Tensor) -> Tensor:
    """Nearest point on the sphere of ``radius`` [K]: ``r x / |x|`` row by row."""
    return radius.unsqueeze(-1) * x / x.norm(dim=-1, keepdim=True)


def random_starts(
    restarts_per_sphere: int,
    dim: int,
    radii: tuple[float, float],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform starting points on each sphere: ``x0`` [K, D], ``radius`` [K], ``label`` [K]."""
    x0 = torch.cat([sample_sphere(restarts_per_sphere, dim, r, generator, dtype) for r in radii])
    # on the CPU: moved by ensemble_starts
    radius = torch.tensor(radii, dtype=dtype).repeat_interleave(restarts_per_sphere)
    # on the CPU: moved by ensemble_starts
    label = torch.tensor([INNER, OUTER], dtype=dtype).repeat_interleave(restarts_per_sphere)
    return x0, radius, label


def ensemble_starts(
    ensemble: Ensemble, restarts_per_sphere: int, radii: tuple[float, float], seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`random_starts` from ``seed``, in the ensemble's dtype, on its device."""
    generator = torch.Generator().manual_seed(seed)
    starts = random_starts(restarts_per_sphere, ensemble.dim, radii, generator, ensemble.w.dtype)
    x0, radius, label = (t.to(ensemble.w.device) for t in starts)
    return x0, radius, label


def stages(
    ensemble: Ensemble, warmup_steps: int, max_steps: int
) -> list[tuple[Objective, int, bool]]:
    """The attack's stages, ``(objective, steps, warm-up?)``: one model ascends its wrong-class
    logit; an ensemble first the Jensen bound for ``warmup_steps`` (none if 0), then log mean
    sigmoid (paper, Appendix B)."""
    if ensemble.size == 1:
        return [(Objective.LOGIT, max_steps, False)]
    warmup = [(Objective.JENSEN, warmup_steps, True)] if warmup_steps > 0 else []
    return [*warmup, (Objective.LOG_MEAN_SIGMOID, max_steps, False)]


class Patience:
    """Per restart, the best value so far and whether it still improves: a restart stops once
    its best has not risen by more than ``tol`` for ``patience`` steps (None: never)."""

    def __init__(self, value: Tensor, tol: float, patience: int | None) -> None:
        self.best, self.tol, self.patience = value.clone(), tol, patience
        self.since = torch.zeros(len(value), dtype=torch.long, device=value.device)
        self.active = torch.ones(len(value), dtype=torch.bool, device=value.device)

    def update(self, rows: Tensor, value: Tensor) -> Tensor:
        """Record ``value`` at ``rows``; returns where it beat the best."""
        better = value > self.best[rows]
        noticeable = value > self.best[rows] + self.tol
        self.best[rows] = torch.maximum(self.best[rows], value)
        self.since[rows] = torch.where(noticeable, 0, self.since[rows] + 1)
        if self.patience is not None:
            self.active[rows] = self.since[rows] < self.patience
        return better
