"""Adversarial spheres (Gilmer et al. 2018) and the squared-feature map of the paper, Sec. 3.

Class 0 lives on the inner sphere (radius ``r_inner``), class 1 on the outer one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bayes_spheres import checks

INNER, OUTER = 0, 1


def sample_sphere(
    n: int, dim: int, radius: float, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``n`` points uniform on the sphere of ``radius`` in ``dim`` dimensions: ``r g / |g|``."""
    # on the CPU: one seeded stream on every device; moved by load_spheres
    g = torch.randn(n, dim, generator=generator, dtype=dtype)
    return radius * g / g.norm(dim=-1, keepdim=True)


def make_spheres(
    n: int,
    dim: int,
    r_inner: float,
    r_outer: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """``n`` labelled points, half on each sphere (the inner one takes the odd point), shuffled.

    Returns ``x`` [n, dim] and labels ``y`` [n] (float, 0 = inner, 1 = outer).
    """
    n_outer = n // 2
    n_inner = n - n_outer
    x = torch.cat(
        [
            sample_sphere(n_inner, dim, r_inner, generator, dtype),
            sample_sphere(n_outer, dim, r_outer, generator, dtype),
        ]
    )
    # on the CPU: moved by load_spheres
    y = torch.cat([torch.zeros(n_inner, dtype=dtype), torch.ones(n_outer, dtype=dtype)])
    # on the CPU: moved by load_spheres
    perm = torch.randperm(n, generator=generator)
    return x[perm], y[perm]


@dataclass(frozen=True)
class SquaredFeatures:
    """``phi(x) = (x^2 - mean) / std``: squared features standardised with training statistics.

    This is part of the model's forward map (Appendix A), so gradients flow back to ``x``.
    """

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> SquaredFeatures:
        sq = x.square()
        return cls(mean=sq.mean(0), std=sq.std(0))

    def __call__(self, x: Tensor) -> Tensor:
        return (x.square() - self.mean) / self.std

    def to(self, device: torch.device | str) -> SquaredFeatures:
        return SquaredFeatures(self.mean.to(device), self.std.to(device))


@dataclass(frozen=True)
class SphereData:
    """Training and validation sets, and the feature map fitted on the training set."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    features: SquaredFeatures
    r_inner: float
    r_outer: float

    @property
    def dim(self) -> int:
        return self.x_train.shape[-1]

    @property
    def phi_train(self) -> Tensor:
        return self.features(self.x_train)

    @property
    def radii(self) -> tuple[float, float]:
        return (self.r_inner, self.r_outer)


def load_spheres(
    dim: int,
    n_train: int,
    n_val: int,
    r_inner: float = 1.0,
    r_outer: float = 1.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> SphereData:
    """Draw the training and validation sets from one seeded generator (CPU, then moved)."""
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = make_spheres(n_train, dim, r_inner, r_outer, gen, dtype)
    x_va, y_va = make_spheres(n_val, dim, r_inner, r_outer, gen, dtype)
    x_tr, y_tr, x_va, y_va = (t.to(device) for t in (x_tr, y_tr, x_va, y_va))
    return SphereData(x_tr, y_tr, x_va, y_va, SquaredFeatures.fit(x_tr), r_inner, r_outer)


@dataclass(frozen=True)
class SpheresSettings:
    """The data set's settings (``conf/data/spheres.yaml`` builds it as the ``data`` node),
    checked when made: dimension, training and validation points, the two radii (inner
    smaller) and the seed of the one generator both sets are drawn from. The paper's scale
    (D = 500, 1,000 and 100,000 points) is ``conf/scale/paper.yaml``'s."""

    dim: int = 500
    n_train: int = 1000
    n_val: int = 100_000
    r_inner: float = 1.0
    r_outer: float = 1.3
    seed: int = 0

    def __post_init__(self) -> None:
        checks.integer("dim", self.dim, minimum=1)
        checks.integer("n_train", self.n_train, minimum=2)
        checks.integer("n_val", self.n_val, minimum=1)
        checks.integer("seed", self.seed)
        object.__setattr__(self, "r_inner", checks.positive("r_inner", self.r_inner))
        object.__setattr__(self, "r_outer", checks.positive("r_outer", self.r_outer))
        if self.r_inner >= self.r_outer:
            rule = f"must be smaller than r_outer={self.r_outer!r}"
            raise checks.SettingError("r_inner", self.r_inner, rule)

    def load(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> SphereData:
        """The data set (:func:`load_spheres`)."""
        return load_spheres(
            self.dim, self.n_train, self.n_val, self.r_inner, self.r_outer, self.seed, dtype,
            device,
        )  # fmt: skip
