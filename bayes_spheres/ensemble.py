"""An ensemble of S logistic models on squared features: probabilities, logits, saving.

Predictive probability is the mean of the members' sigmoids (paper, Appendix B). Everything
is batched over points so that no S x N x D tensor is ever built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.data import SquaredFeatures
from bayes_spheres.io import atomic_save_npz


def log_mean_sigmoid(a: Tensor, dim: int = -1) -> Tensor:
    """``log mean_s sigmoid(a_s)`` = ``logsumexp(logsigmoid(a)) - log S``, stable when saturated."""
    return torch.logsumexp(F.logsigmoid(a), dim=dim) - math.log(a.shape[dim])


def wrong_class_sign(label: Tensor) -> Tensor:
    """+1 where the true class is 0 (the wrong class is 1), -1 where it is 1."""
    return 1.0 - 2.0 * label


@dataclass(frozen=True)
class Ensemble:
    """S weight vectors ``w`` [S, D] and biases ``b`` [S], with the feature map they were fit on."""

    w: Tensor
    b: Tensor
    features: SquaredFeatures

    def __post_init__(self) -> None:
        if self.w.dim() != 2 or self.b.shape != self.w.shape[:1]:
            raise ValueError(
                f"Ensemble needs w [S, D] and b [S]; got w {tuple(self.w.shape)} "
                f"and b {tuple(self.b.shape)}"
            )
        if self.features.mean.shape != self.w.shape[1:]:
            raise ValueError(
                f"feature map has dim {tuple(self.features.mean.shape)}, "
                f"weights have D = {self.w.shape[1]}"
            )
        if not (torch.isfinite(self.w).all() and torch.isfinite(self.b).all()):
            raise ValueError("Ensemble weights contain NaN or inf")

    @property
    def size(self) -> int:
        return self.w.shape[0]

    @property
    def dim(self) -> int:
        return self.w.shape[1]

    def logits(self, x: Tensor) -> Tensor:
        """Activations ``a`` [N, S] of every member at points ``x`` [N, D] (differentiable)."""
        return self.features(x) @ self.w.T + self.b

    def prob(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        """Predictive ``p(y = 1 | x)`` [N]: mean over members of ``sigmoid(a_s)``."""
        return (
            torch.cat([torch.sigmoid(self.logits(xb)).mean(-1) for xb in x.split(batch_size)])
            if len(x)
            else x.new_zeros(0)
        )

    def wrong_prob(self, x: Tensor, label: Tensor, batch_size: int = 4096) -> Tensor:
        """Probability of the wrong class [N] for points with true ``label`` [N]."""
        p1 = self.prob(x, batch_size)
        return torch.where(label > 0.5, 1.0 - p1, p1)

    def to(self, device: torch.device | str) -> Ensemble:
        return Ensemble(self.w.to(device), self.b.to(device), self.features.to(device))

    def save(self, path: str | Path) -> None:
        atomic_save_npz(
            path,
            w=self.w.cpu().numpy(),
            b=self.b.cpu().numpy(),
            feature_mean=self.features.mean.cpu().numpy(),
            feature_std=self.features.std.cpu().numpy(),
        )

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float64) -> Ensemble:
        with np.load(path) as f:
            t = {k: torch.as_tensor(f[k], dtype=dtype) for k in f.files}
        return cls(t["w"], t["b"], SquaredFeatures(t["feature_mean"], t["feature_std"]))
