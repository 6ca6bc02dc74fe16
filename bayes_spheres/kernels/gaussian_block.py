"""The conditional path's Gaussian block given the hyper-parameters (``kernels/conditional.py``):
``z ~ N(0, I)`` under a logistic likelihood with logits ``X z + a0``, a target for
:class:`~bayes_spheres.kernels.hamiltonian.HamiltonianSliceSampler` on the fast integrator
(:func:`~bayes_spheres.kernels.fast.linear_trajectory.slice_trajectory_linear`).

One such target is built per chain and update. Where ``X(H)`` is a fixed matrix with a
factor per Gaussian site (``X_g(H) = r_g(H) X_g``, the hierarchical prior: ``r = s`` for
``w``, 10 for ``b``; :class:`ScaledDesign`), the integrator's ``A A' = sum_g r_g^2 X_g X_g'``
comes from per-site Gram matrices computed once (:class:`SiteGrams`), its rows summed as the
integrator asks for them (:class:`SiteGram`): not ``O(N^2 Pz)`` per update (44 ms of the
0.13 s of one chain's update at the paper's scale), nor an ``N x N`` sum.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.fast.fast_cost import MAX_GRAM_BYTES
from bayes_spheres.kernels.fast.gram import Gram
from bayes_spheres.kernels.fast.linear_trajectory import LinearLogistic, slice_trajectory_linear
from bayes_spheres.kernels.protocols import LogDensityAlong, Splitting


class SiteGrams:
    """``X_g X_g'`` [N, N] of the signed columns of each Gaussian site (``columns``: each
    site's slice of ``z``), computed once: ``A A' = sum_g r_g^2 X_g X_g'``."""

    def __init__(self, signed_x: Tensor, columns: list[slice]) -> None:
        self.matrices = [signed_x[:, cols] @ signed_x[:, cols].T for cols in columns]

    @staticmethod
    def fit(rows: int, sites: int, itemsize: int) -> bool:
        """Whether the per-site matrices fit in the fast path's memory for ``A A'``."""
        return rows * rows * itemsize * sites <= MAX_GRAM_BYTES

    def gram(self, factors: list[float]) -> SiteGram:
        return SiteGram(self.matrices, factors)


class SiteGram:
    """``A A' = sum_g r_g^2 X_g X_g'`` as the integrator reads it
    (:class:`~bayes_spheres.kernels.fast.gram.StoredGram`'s ``rows`` and ``block``): the few rows
    and blocks it asks for gathered from each part and summed, never the whole N x N sum."""

    form = "gram"
    gathers = True

    def __init__(self, parts: list[Tensor], factors: list[float]) -> None:
        self.terms = [(part, f * f) for part, f in zip(parts, factors, strict=True)]
        self.size = len(parts[0])

    def rows(self, index: Tensor) -> Tensor:
        """``(A A')_index`` [*index.shape, N]."""
        flat = index.reshape(-1)
        out = sum(weight * part.index_select(0, flat) for part, weight in self.terms)
        return out.reshape(*index.shape, self.size)

    def block(self, index: Tensor) -> Tensor:
        """``(A A')`` at ``index`` [C, J] x ``index``: [C, J, J]."""
        pairs = index[:, :, None] * self.size + index[:, None, :]
        return sum(weight * part.reshape(-1).take(pairs) for part, weight in self.terms)


class WhitenedLogistic:
    """``log p(z) = sum_n log sigmoid(sign_n (X z + a0)_n) - |z|^2 / 2`` over ``z`` [C, Pz]
    (``signed_x = sign X``, ``signed_offset = sign a0``); ``gram``: ``A A'`` if known (else
    the integrator's own rule builds or avoids it)."""

    def __init__(
        self, signed_x: Tensor, signed_offset: Tensor, gram: Gram | SiteGram | None = None
    ) -> None:
        self.signed_x, self.signed_offset = signed_x, signed_offset
        self.linear = LinearLogistic(signed_x, signed_offset, gram=gram)

    def log_likelihood(self, z: Tensor) -> Tensor:
        return F.logsigmoid(z @ self.signed_x.T + self.signed_offset).sum(-1)

    def log_density(self, z: Tensor) -> Tensor:
        return self.log_likelihood(z) - 0.5 * (z * z).sum(-1)

    def splitting(self, like: Tensor | None = None) -> Splitting:
        """The prior as the exact Gaussian part (already white: ``z = 0 + I z``)."""
        size = self.signed_x.shape[1]
        eye = torch.eye(size, dtype=self.signed_x.dtype, device=self.signed_x.device)
        trajectory = partial(slice_trajectory_linear, linear=self.linear)
        return Splitting(self.linear.rest, eye.new_zeros(size), eye, True, trajectory)

    def scaling_ray(self, z: Tensor) -> LogDensityAlong:
        """``s [C, J] -> log p(e^s z)`` in O(N) per candidate: the offset does not scale."""
        logits = (z @ self.signed_x.T)[:, None, :]
        half_norm = 0.5 * (z * z).sum(-1)[:, None]

        def logp(s: Tensor) -> Tensor:
            g = torch.exp(s)
            ll = F.logsigmoid(torch.addcmul(self.signed_offset, g[..., None], logits)).sum(-1)
            return ll - half_norm * g * g

        return logp


class ScaledDesign:
    """Logits' matrices ``X(H) = X_ref diag(r(H))`` with one factor ``r_g`` per Gaussian site
    (``columns``: each site's slice of ``z``; ``x_ref`` [N, Pz] at the chains' first point),
    with two random probes ``v_g``, ``v_g'`` per site, supported on its columns. From the
    products ``X(H) v`` (one forward-mode pass through the model), :meth:`factors` reads
    ``r_g`` off ``v_g`` and checks both probes, to ``sqrt(eps)`` relative, so a model whose
    matrix is not of this form at some ``H`` is caught there (the caller then computes
    ``X(H)`` whole)."""

    def __init__(
        self, x_ref: Tensor, labels: Tensor, columns: list[slice], generator: torch.Generator
    ) -> None:
        self.sign = 2.0 * labels - 1.0
        self.signed_ref = self.sign[:, None] * x_ref
        self.columns = columns
        size = x_ref.shape[1]
        probes = torch.zeros(2 * len(columns), size, dtype=torch.float64, device=generator.device)
        for g, cols in enumerate(columns):
            width = cols.stop - cols.start
            probes[2 * g : 2 * g + 2, cols] = torch.randn(
                2, width, generator=generator, device=generator.device
            ).double()
        self.probes = probes.to(x_ref)
        self.products = self.probes @ x_ref.T  # [2S, N]
        self.norms = (self.products[0::2] ** 2).sum(-1)
        self.x_ref = x_ref
        small = len(columns) < size  # else one A A' per update costs no more than the parts
        fits = SiteGrams.fit(len(x_ref), len(columns), x_ref.element_size())
        self.grams = SiteGrams(self.signed_ref, columns) if small and fits else None

    def per_column(self, factors: Tensor) -> Tensor:
        """The factors [S] repeated over each site's columns: [Pz]."""
        widths = [cols.stop - cols.start for cols in self.columns]
        return torch.repeat_interleave(factors, torch.tensor(widths, device=factors.device))

    def factors(self, products: Tensor) -> Tensor | None:
        """``r`` [S] from ``X(H) v`` [2S, N] for this design's probes, or None where ``X(H)``
        is not ``X_ref diag(r)`` along them."""
        ref = self.products
        found = (products[0::2] * ref[0::2]).sum(-1) / self.norms.clamp_min(1e-300)
        found = torch.where(self.norms > 0, found, torch.zeros_like(found))
        expected = ref * torch.repeat_interleave(found, 2)[:, None]
        tolerance = math.sqrt(torch.finfo(products.dtype).eps)
        scale = 1.0 + products.abs().amax(-1) + expected.abs().amax(-1)
        if bool(((products - expected).abs().amax(-1) > tolerance * scale).any()):
            return None
        return found

    def block(self, factors: Tensor, value: Tensor, z: Tensor) -> WhitenedLogistic:
        """The target of ``z`` given ``H`` from its factors and the logits ``value`` [N] at
        ``z``: ``a0 = value - X(H) z``."""
        columns = self.per_column(factors)
        offset = value - self.x_ref @ (columns * z)
        gram = None if self.grams is None else self.grams.gram(factors.tolist())
        return WhitenedLogistic(self.signed_ref * columns, self.sign * offset, gram)
