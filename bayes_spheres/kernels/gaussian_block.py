"""The conditional path's Gaussian block given the hyper-parameters (``kernels/conditional.py``):
``z ~ N(0, I)`` under a logistic likelihood with logits ``X_c z + a0_c``, one matrix per chain
``c``, a target for :class:`~bayes_spheres.kernels.hamiltonian.HamiltonianSliceSampler` on the
fast integrator (:func:`~bayes_spheres.kernels.fast.linear_trajectory.slice_trajectory_linear`)
that moves all C chains as one batch.

One such target is built per update, for all chains (:class:`ChainsLinearLogistic`: the
integrator's reads of ``A``, ``a_0`` and ``A A'`` taken row-wise per chain). Where ``X(H)`` is
a fixed matrix with a factor per Gaussian site (``X_g(H) = r_g(H) X_g``, the hierarchical
prior: ``r = s`` for ``w``, 10 for ``b``; :class:`ScaledDesign`), each chain's
``A A' = sum_g r_g^2 X_g X_g'`` comes from per-site Gram matrices computed once
(:class:`SiteGrams`), the rows the integrator asks for summed with each chain's weights
(:class:`SiteGram`): not ``O(N^2 Pz)`` per chain and update, nor an ``N x N`` sum. Otherwise
``A A'`` is never formed (:class:`ChainsLowRankGram`).

Cost at the paper's scale (N = 1,000, Pz = 501, 8 chains, one thread): the batch's ``A``
[C, N, Pz] is 32 MB in float64, rebuilt each update; a leapfrog step of the batch costs about
what one of the flat model's fast path does (``bench/hierarchical.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.fast.fast_cost import MAX_GRAM_BYTES
from bayes_spheres.kernels.fast.linear_trajectory import slice_trajectory_linear
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

    def gram(self, factors: Tensor) -> SiteGram:
        """Each chain's ``A A'`` for factors [C, S]."""
        return SiteGram(self.matrices, factors * factors)


class SiteGram:
    """Each chain's ``A A' = sum_g r_g^2 X_g X_g'`` (``weights`` [C, S]: ``r_g^2``) as the
    integrator reads it (:class:`~bayes_spheres.kernels.fast.gram.StoredGram`'s ``rows``,
    ``block`` and ``rows_at``, row ``c`` of an index being chain ``c``'s): the few rows and
    blocks it asks for gathered from each part and summed, never a whole N x N sum."""

    form = "gram"
    gathers = True

    def __init__(self, parts: list[Tensor], weights: Tensor) -> None:
        self.parts, self.weights = parts, weights
        self.size = len(parts[0])

    def rows(self, index: Tensor) -> Tensor:
        """``(A_c A_c')_index[c]`` [C, K, N] of ``index`` [C, K]."""
        flat = index.reshape(-1)
        out = sum(
            self.weights[:, g, None, None] * part.index_select(0, flat).reshape(*index.shape, -1)
            for g, part in enumerate(self.parts)
        )
        return out

    def block(self, index: Tensor) -> Tensor:
        """``(A_c A_c')`` at ``index[c]`` x ``index[c]``: [C, J, J]."""
        pairs = index[:, :, None] * self.size + index[:, None, :]
        return sum(
            self.weights[:, g, None, None] * part.reshape(-1).take(pairs)
            for g, part in enumerate(self.parts)
        )

    def rows_at(self, chain: Tensor, point: Tensor) -> Tensor:
        """Row ``point[m]`` of chain ``chain[m]``'s ``A A'``: [M, N]."""
        return sum(
            self.weights[chain, g, None] * part.index_select(0, point)
            for g, part in enumerate(self.parts)
        )


class ChainsLowRankGram:
    """Each chain's ``A_c A_c'`` never formed (as
    :class:`~bayes_spheres.kernels.fast.gram.LowRankGram`, per chain): rows ``A_J A'`` by
    batched products."""

    form = "rows"
    gathers = False  # the integrator then takes products, never rows_at

    def __init__(self, a_z: Tensor) -> None:
        self.a_z = a_z  # [C, N, P]
        self.size = a_z.shape[1]

    def _rows(self, index: Tensor) -> Tensor:
        return self.a_z.gather(1, index[..., None].expand(-1, -1, self.a_z.shape[2]))

    def rows(self, index: Tensor) -> Tensor:
        """``(A_c A_c')_index[c]`` [C, K, N] of ``index`` [C, K]."""
        return torch.bmm(self._rows(index), self.a_z.transpose(1, 2))

    def block(self, index: Tensor) -> Tensor:
        """``(A_c A_c')`` at ``index[c]`` x ``index[c]``: [C, J, J]."""
        rows = self._rows(index)
        return torch.bmm(rows, rows.transpose(1, 2))

    def rows_at(self, chain: Tensor, point: Tensor) -> Tensor:
        """Row ``point[m]`` of chain ``chain[m]``'s ``A A'``: [M, N]."""
        rows = self.a_z[chain, point]  # [M, P]
        return torch.stack([self.a_z[c] @ r for c, r in zip(chain.tolist(), rows, strict=True)])


@dataclass
class ChainsLinearLogistic:
    """A logistic rest ``sum_n log sigmoid(a_cn)`` with activations ``a_c = A_c z_c + a_0c``
    for each chain ``c``: what :func:`~bayes_spheres.kernels.fast.linear_trajectory.
    slice_trajectory_linear` reads of :class:`~bayes_spheres.kernels.fast.gram.LinearLogistic`
    (one ``A`` for all chains), with one ``A`` per chain."""

    a_z: Tensor  # [C, N, P]
    a_0: Tensor  # [C, N]
    gram: SiteGram | ChainsLowRankGram | None = field(default=None, repr=False)
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.gram is None:
            self.gram = ChainsLowRankGram(self.a_z)

    @property
    def points(self) -> int:
        return self.a_z.shape[1]

    @property
    def size(self) -> int:
        return self.a_z.shape[2]

    def offsets(self, chains: int) -> Tensor:
        """``a_0`` of each chain: [C, N]."""
        return self.a_0.expand(chains, -1)

    def activations(self, z: Tensor) -> Tensor:
        """``A_c z_c`` [C, N] of ``z`` [C, P] (no offset; one chain's ``A`` broadcasts)."""
        return torch.matmul(self.a_z, z[:, :, None])[:, :, 0]

    def pullback(self, w: Tensor) -> Tensor:
        """``w_c A_c`` [C, P] of ``w`` [C, N]."""
        return torch.matmul(w[:, None, :], self.a_z)[:, 0]

    def rows(self, index: Tensor) -> Tensor:
        """Rows ``A_c index[c]`` [C, K, P] of ``index`` [C, K]."""
        return self.a_z.gather(1, index[..., None].expand(-1, -1, self.size))

    def rows_at(self, chain: Tensor, point: Tensor) -> Tensor:
        """Row ``point[m]`` of chain ``chain[m]``'s ``A``: [M, P]."""
        return self.a_z[chain, point]

    def rest(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The rest's log density and its gradient at ``z`` [C, P]."""
        a = self.activations(z) + self.a_0
        return self.power * F.logsigmoid(a).sum(-1), self.power * self.pullback(torch.sigmoid(-a))


@dataclass
class ScaledLinearLogistic:
    """:class:`ChainsLinearLogistic` where each chain's ``A_c = A diag(r_c)`` is one matrix
    ``a_ref`` [N, P] with per-chain column factors ``scale`` [C, P] (:class:`ScaledDesign`):
    ``A`` is read once per product for all chains, as on the flat model's fast path, where
    ``C`` matrices would be read C times."""

    a_ref: Tensor  # [N, P]
    scale: Tensor  # [C, P]
    a_0: Tensor  # [C, N]
    gram: SiteGram
    power: float = 1.0

    @property
    def points(self) -> int:
        return self.a_ref.shape[0]

    @property
    def size(self) -> int:
        return self.a_ref.shape[1]

    def offsets(self, chains: int) -> Tensor:
        """``a_0`` of each chain: [C, N]."""
        return self.a_0.expand(chains, -1)

    def activations(self, z: Tensor) -> Tensor:
        """``A_c z_c`` [C, N] of ``z`` [C, P] (no offset; one chain's factors broadcast)."""
        return (z * self.scale) @ self.a_ref.T

    def pullback(self, w: Tensor) -> Tensor:
        """``w_c A_c`` [C, P] of ``w`` [C, N]."""
        return (w @ self.a_ref) * self.scale

    def rows(self, index: Tensor) -> Tensor:
        """Rows ``A_c index[c]`` [C, K, P] of ``index`` [C, K]."""
        rows = self.a_ref.index_select(0, index.reshape(-1)).reshape(*index.shape, self.size)
        return rows * self.scale[:, None, :]

    def rows_at(self, chain: Tensor, point: Tensor) -> Tensor:
        """Row ``point[m]`` of chain ``chain[m]``'s ``A``: [M, P]."""
        return self.a_ref.index_select(0, point) * self.scale[chain]

    def rest(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The rest's log density and its gradient at ``z`` [C, P]."""
        a = self.activations(z) + self.a_0
        return self.power * F.logsigmoid(a).sum(-1), self.power * self.pullback(torch.sigmoid(-a))


class WhitenedLogistic:
    """``log p(z_c) = sum_n log sigmoid((A_c z_c + a_0c)_n) - |z_c|^2 / 2`` over ``z`` [C, Pz]
    (``A_c`` the signed logits' matrix of chain ``c``, ``linear`` [C, N, Pz])."""

    def __init__(self, linear: ChainsLinearLogistic | ScaledLinearLogistic) -> None:
        self.linear = linear

    def signed_logits(self, z: Tensor) -> Tensor:
        """``A_c z_c + a_0c`` [C, N] (each row of ``z`` with its chain's matrix)."""
        return self.linear.activations(z) + self.linear.a_0

    def log_likelihood(self, z: Tensor) -> Tensor:
        return F.logsigmoid(self.signed_logits(z)).sum(-1)

    def log_density(self, z: Tensor) -> Tensor:
        return self.log_likelihood(z) - 0.5 * (z * z).sum(-1)

    def splitting(self, like: Tensor | None = None) -> Splitting:
        """The prior as the exact Gaussian part (already white: ``z = 0 + I z``)."""
        like = self.linear.a_0
        eye = torch.eye(self.linear.size, dtype=like.dtype, device=like.device)
        trajectory = partial(slice_trajectory_linear, linear=self.linear)
        return Splitting(self.linear.rest, eye.new_zeros(len(eye)), eye, True, trajectory)

    def scaling_ray(self, z: Tensor) -> LogDensityAlong:
        """``s [C, J] -> log p(e^s z)`` in O(N) per candidate: the offset does not scale."""
        logits = self.linear.activations(z)[:, None, :]
        offsets = self.linear.a_0[:, None, :]
        half_norm = 0.5 * (z * z).sum(-1)[:, None]

        def logp(s: Tensor) -> Tensor:
            g = torch.exp(s)
            ll = F.logsigmoid(torch.addcmul(offsets, g[..., None], logits)).sum(-1)
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

    def block(self, factors: Tensor, values: Tensor, z: Tensor) -> WhitenedLogistic:
        """The targets of ``z`` [C, Pz] given each chain's ``H``, from the factors [C, S] and
        the logits ``values`` [C, N] at ``z``: ``a0 = values - X(H) z``."""
        columns = torch.stack([self.per_column(f) for f in factors])  # [C, Pz]
        offsets = self.sign * values - (z * columns) @ self.signed_ref.T
        if self.grams is not None:
            gram = self.grams.gram(factors)
            return WhitenedLogistic(ScaledLinearLogistic(self.signed_ref, columns, offsets, gram))
        a_z = self.signed_ref * columns[:, None, :]  # [C, N, Pz]: A A' never formed
        return WhitenedLogistic(ChainsLinearLogistic(a_z, offsets))
