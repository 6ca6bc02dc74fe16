"""The fast path's plain form: the leapfrog of
:func:`~bayes_spheres.kernels.slice_trajectory.slice_trajectory` itself, with the likelihood's
value and gradient through two products with the design per step, ``X (L z)`` and
``L' (X' w)``, O(nnz(X) + nnz(L)) per chain: no Gram matrix, so no O(N^2) memory, and ``X``
kept sparse where most of its entries are zero (item response models: a few non-zeros per
row), which whitening ``A = X L`` would destroy unless ``L`` is diagonal (then it is folded
in). The form for large N or sparse designs (``kernels/fast/fast_cost.py`` chooses).

Symbols as in :mod:`~bayes_spheres.kernels.fast.logistic`: signed design ``X`` [N, P], whitening
``theta = m + L z``; ``a = X L z + (X m + sign a0)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.protocols import TrajectoryStep
from bayes_spheres.kernels.slice_trajectory import MAX_ENERGY, slice_trajectory


def to_csr(x: Tensor) -> Tensor:
    """``x`` [N, P] as a sparse CSR tensor (torch calls CSR support beta and warns once per
    process; the products used here are covered by this package's tests)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return x.to_sparse_csr()


def is_diagonal(matrix: Tensor) -> bool:
    return bool((matrix == torch.diag(torch.diagonal(matrix))).all())


@dataclass
class LinearProducts:
    """A rest ``power * sum_n log sigmoid(a_n)`` with ``a = design (chol z) + a_0``;
    ``design`` [N, P] dense or sparse CSR (then ``design_t``, its transpose as CSR, serves
    ``X' w``); ``chol`` [P, P] lower triangular, or None where it is diagonal and folded into
    ``design``."""

    design: Tensor
    a_0: Tensor
    chol: Tensor | None = None
    power: float = 1.0
    design_t: Tensor | None = None

    @classmethod
    def build(cls, x: Tensor, a_0: Tensor, chol: Tensor | None, sparse: bool) -> LinearProducts:
        """From the signed design ``x`` [N, P], the whitened offset ``a_0`` [N] and ``chol``
        [P, P] (None: the identity): dense, ``A = X L`` (one product per direction, whatever
        ``L``); ``sparse``, CSR storage, with ``L`` folded into the columns where it is
        diagonal (the zeros stay) and kept apart otherwise."""
        if not sparse:
            return cls(x if chol is None else x @ chol, a_0)
        if chol is not None and is_diagonal(chol):
            x, chol = x * torch.diagonal(chol), None
        return cls(to_csr(x), a_0, chol, design_t=to_csr(x.T.contiguous()))

    @property
    def sparse(self) -> bool:
        return self.design.layout == torch.sparse_csr

    def tempered(self, power: float) -> LinearProducts:
        """The same activations with the likelihood raised to ``power``."""
        return replace(self, power=float(power))

    def activations(self, z: Tensor) -> Tensor:
        """``a`` [C, N] at ``z`` [C, P]."""
        u = z if self.chol is None else z @ self.chol.T
        if self.sparse:
            return (self.design @ u.T).T + self.a_0
        return torch.addmm(self.a_0, u, self.design.T)

    def rest(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The rest's log density and its gradient at ``z`` [C, P]."""
        a = self.activations(z)
        weights = self.power * torch.sigmoid(-a)
        grad = (self.design_t @ weights.T).T if self.sparse else weights @ self.design
        if self.chol is not None:
            grad = grad @ self.chol
        return self.power * F.logsigmoid(a).sum(-1), grad


def slice_trajectory_products(
    z: Tensor,
    logp_rest: Tensor,
    grad: Tensor,
    eps: float,
    steps: int,
    max_energy: float = MAX_ENERGY,
    generator: torch.Generator | None = None,
    *,
    products: LinearProducts,
) -> TrajectoryStep:
    """:func:`~bayes_spheres.kernels.slice_trajectory.slice_trajectory` with a Gaussian part and
    the rest of ``products``: the generic integrator step for step (the same chain to
    rounding), behind the :class:`~bayes_spheres.kernels.protocols.Splitting` hook, so that
    the sampler treats every form of the fast path alike."""
    return slice_trajectory(
        z, logp_rest, grad, products.rest, eps, steps, True, max_energy, generator
    )
