"""The fast path: Bernoulli-logistic likelihoods whose logits are linear in the latents, under
a Gaussian prior, found by probing the Pyro model itself.

Symbols: the latents ``theta`` [P] (Pyro's unconstrained sites, flattened); logits
``a = X theta + a0`` [N]; labels ``y`` and signs ``sign = 2 y - 1``, so the log likelihood is
``sum_n log sigmoid(sign_n a_n)``; the prior ``log p(theta) = c + h.theta - theta' Q theta / 2``
(precision ``Q``, shift ``h``). :func:`linear_logistic_target` reads ``X``, ``a0``, ``Q``, ``h``
off any Pyro model of that kind (the study's flat and shared-mean models, or a user's own) and
checks the result against Pyro's potential; any other model raises :class:`NotLinearLogistic`
and the kernel takes the generic path.

Along a direction ``d`` the logits move as ``a + t (X d)`` and the prior is a quadratic in
``t``, so a univariate slice update costs O(N), not O(N P); along a Hamiltonian trajectory the
activations rotate with the state
(:func:`~bayes_spheres.kernels.fast.linear_trajectory.slice_trajectory_linear`), or, where that
would cost more (large N, sparse designs), the likelihood is taken through products with the
design (:mod:`~bayes_spheres.kernels.fast.linear_products`): the target's ``form``, chosen at
set-up from counts (:func:`~bayes_spheres.kernels.fast.fast_cost.choose_form`; ``form_reason``
gives the numbers).
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.fast.fast_cost import (
    MAX_GRAM_BYTES,
    Form,
)
from bayes_spheres.kernels.fast.gram import LinearLogistic, LowRankGram, StoredGram
from bayes_spheres.kernels.fast.linear_products import (
    LinearProducts,
    slice_trajectory_products,
    to_csr,
)
from bayes_spheres.kernels.fast.linear_trajectory import slice_trajectory_linear
from bayes_spheres.kernels.protocols import LogDensityAlong, Splitting


class NotLinearLogistic(ValueError):
    """The model is not a logistic likelihood linear in its latents under a Gaussian prior."""


class LogisticTarget:
    """Bernoulli-logistic likelihood with logits ``a = X theta + a0`` and a Gaussian prior
    ``log p(theta) = c + h.theta - theta' Q theta / 2`` (module docstring).

    For a basis ``E`` the matrices ``sign * (X E)`` and ``E' Q E`` are computed once; one update
    then keeps the per-chain signed logits [C, N] and ``theta Q E`` current in O(N + K).
    ``form``: how :meth:`splitting` integrates (:class:`~bayes_spheres.kernels.fast.fast_cost.Form`;
    None: ``gram`` where ``A A'`` fits ``MAX_GRAM_BYTES``, else ``rows``);
    :func:`linear_logistic_target` chooses it by cost and says why in ``form_reason``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        prior_precision: Tensor,
        prior_shift: Tensor,
        offset: Tensor,
        prior_constant: float = 0.0,
        form: Form | str | None = None,
    ) -> None:
        if form is None:
            gram_bytes = len(x) ** 2 * x.element_size()
            form = Form.GRAM if gram_bytes <= MAX_GRAM_BYTES else Form.ROWS
            self.form_reason = f"A A' {gram_bytes} bytes, limit {MAX_GRAM_BYTES}"
        else:
            self.form_reason = f"form={Form(form).value!r} given"
        self.form: str = Form(form).value
        sign = 2.0 * y - 1.0
        self.signed_x = sign[:, None] * x  # [N, P]
        self.signed_offset = sign * offset  # [N]
        self.precision, self.shift = prior_precision, prior_shift
        self.prior_constant = prior_constant  # c (samplers need only the shape)
        # the latent sites whose flattened values, in this order, are theta (where known)
        self.sites: dict[str, torch.Size] = {}
        self._basis: Tensor | None = None
        self._signed_csr: Tensor | None = None  # X in CSR, for the sparse form
        self._whitened: tuple[Tensor, Tensor, LinearLogistic | LinearProducts] | None = None
        # on the CPU: placeholders until setup
        self._signed_x_basis = self._basis_precision = self._basis_shift = torch.empty(0)

    @classmethod
    def standard(cls, x: Tensor, y: Tensor, offset: Tensor) -> LogisticTarget:
        """The prior ``N(0, I)`` (``c = -P log(2 pi) / 2``): already whitened, so
        :meth:`splitting` needs no inverse or Cholesky factor (the conditional path builds
        one such target per chain and update, ``kernels/conditional.py``)."""
        size = x.shape[1]
        eye = torch.eye(size, dtype=x.dtype, device=x.device)
        zero = x.new_zeros(size)
        target = cls(x, y, eye, zero, offset, -0.5 * size * math.log(2.0 * math.pi))
        target._whitened = (zero, eye, target._integrand(None, target.signed_offset))
        return target

    def with_form(self, form: Form | str) -> LogisticTarget:
        """The same target integrated in another ``form`` (whitening and ``A A'`` rebuilt
        at the next :meth:`splitting`)."""
        other = copy.copy(self)
        other.form = Form(form).value
        other.form_reason = f"form={other.form!r} given"
        other._whitened = None
        return other

    def signed_logits(self, theta: Tensor) -> Tensor:
        """``sign * (X theta)`` [C, N] at ``theta`` [C, P]: through a CSR copy of ``X`` in
        the ``sparse`` form (O(nnz) instead of O(N P): at N = 30,012 and P = 501 with 3
        non-zeros a row, a dense product once per update would cost a fifth of the
        trajectory)."""
        if self.form != Form.SPARSE:
            return theta @ self.signed_x.T
        if self._signed_csr is None:
            self._signed_csr = to_csr(self.signed_x)
        return (self._signed_csr @ theta.T).T

    def log_likelihood(self, theta: Tensor) -> Tensor:
        return F.logsigmoid(self.signed_logits(theta) + self.signed_offset).sum(-1)

    def log_prior(self, theta: Tensor) -> Tensor:
        return theta @ self.shift - 0.5 * ((theta @ self.precision) * theta).sum(-1)

    def log_density(self, theta: Tensor) -> Tensor:
        return self.log_likelihood(theta) + self.log_prior(theta)

    def splitting(self, like: Tensor | None = None, beta: float = 1.0) -> Splitting:
        """The prior as the Gaussian part: ``theta = m + L z``, ``L L' = Q^-1``, ``m = Q^-1 h``;
        the rest is the likelihood, ``a = (sign X L) z + sign (X m + a0)``, raised to the
        power ``beta`` (1: the posterior; less: a tempered target, as annealed importance
        sampling needs, :mod:`bayes_spheres.evidence`). The whitening, and ``A A'`` where the
        ``form`` holds it, are computed once per target and shared by every ``beta``."""
        if self._whitened is None:
            cov = torch.linalg.inv(self.precision)
            chol = torch.linalg.cholesky(0.5 * (cov + cov.T))
            mean = cov @ self.shift
            a_0 = self.signed_x @ mean + self.signed_offset
            self._whitened = (mean, chol, self._integrand(chol, a_0))
        mean, chol, integrand = self._whitened
        integrand = integrand.tempered(beta)
        if isinstance(integrand, LinearProducts):
            trajectory = partial(slice_trajectory_products, products=integrand)
        else:
            trajectory = partial(slice_trajectory_linear, linear=integrand)
        return Splitting(integrand.rest, mean, chol, gaussian=True, trajectory=trajectory)

    def _integrand(self, chol: Tensor | None, a_0: Tensor) -> LinearLogistic | LinearProducts:
        """The likelihood in whitened coordinates in this target's ``form``: ``A = X L`` with
        ``A A'`` held (gram) or computed by rows, or products with ``X`` and ``L`` (None:
        the identity, a prior already white)."""
        if self.form in (Form.PRODUCTS, Form.SPARSE):
            sparse = self.form == Form.SPARSE
            return LinearProducts.build(self.signed_x, a_0, chol, sparse)
        a_z = self.signed_x if chol is None else self.signed_x @ chol  # [N, P]
        gram = StoredGram(a_z) if self.form == Form.GRAM else LowRankGram(a_z)
        return LinearLogistic(a_z, a_0, gram=gram)

    def lines(self, theta: Tensor, directions: Tensor) -> LogisticLines:
        if self._basis is not directions:
            self._basis = directions
            self._signed_x_basis = (self.signed_x @ directions).T.contiguous()  # [K, N]
            self._basis_precision = directions.T @ self.precision @ directions  # [K, K]
            self._basis_shift = self.shift @ directions  # [K]
        return LogisticLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        """O(N) per chain and candidate: the signed logits ``e^s (sign X theta) + sign a0``
        (the offset does not scale) and the prior ``e^s h.theta - e^(2s) theta' Q theta / 2``."""
        logits = self.signed_logits(theta)[:, None, :]  # [C, 1, N]
        linear = (theta @ self.shift)[:, None]
        quadratic = 0.5 * ((theta @ self.precision) * theta).sum(-1)[:, None]

        def logp(s: Tensor) -> Tensor:
            g = torch.exp(s)
            ll = F.logsigmoid(torch.addcmul(self.signed_offset, g[..., None], logits)).sum(-1)
            return ll + g * (linear - quadratic * g)

        return logp


class LogisticLines:
    """Chains of a :class:`LogisticTarget` along the columns of ``directions``: the signed
    logits [C, N], the prior's slope along each direction [C, K] and its value [C] move with
    them."""

    def __init__(self, target: LogisticTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions
        self.logits = target.signed_logits(theta) + target.signed_offset  # [C, N]
        # log prior along E_k: lp + t (h.E_k - theta' Q E_k) - t^2 E_k' Q E_k / 2
        self.slope = target._basis_shift - theta @ target.precision @ directions  # [C, K]
        self.log_prior = target.log_prior(theta)  # [C]

    def along(self, k: int) -> LogDensityAlong:
        column = self.target._signed_x_basis[k]
        slope, curvature = self.slope[:, k : k + 1], 0.5 * self.target._basis_precision[k, k]
        logits, log_prior = self.logits[:, None, :], self.log_prior[:, None]

        def logp(t: Tensor) -> Tensor:
            ll = F.logsigmoid(torch.addcmul(logits, t[..., None], column)).sum(-1)
            return ll + log_prior + t * (slope - curvature * t)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        row = self.target._basis_precision[k]
        self.log_prior = self.log_prior + t * (self.slope[:, k] - 0.5 * row[k] * t)
        self.slope = self.slope - t[:, None] * row
        self.logits = torch.addcmul(self.logits, t[:, None], self.target._signed_x_basis[k])
        self.theta = torch.addcmul(self.theta, t[:, None], self.directions[:, k])
