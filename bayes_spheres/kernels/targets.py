"""Log densities along lines, for the slice sampler's directional updates.

A target hands out :class:`Lines`: for chains at ``theta`` [C, P] and a basis of directions
``E`` [P, K] (columns), ``lines.along(k)`` is the callable ``t [C, J] -> log p(theta + t E_k)``
that :func:`~bayes_spheres.kernels.steps.slice_update` needs, and ``lines.move(k, t)`` moves the
chains. :class:`PotentialTarget` works for any potential (O(cost of the model) per call, one
call per chain and candidate); :class:`LogisticTarget` is the fast path for logistic models
whose activations are linear in the latents and whose prior is Gaussian: along ``d`` the
activations move as ``a + t (X d)``, so with ``X E`` precomputed a call costs O(N), not O(N P),
and the prior is a quadratic in ``t``. Both give the same log density up to a constant, so
the same random stream gives the same chain. ``target.scaling_ray(theta)`` is the log density
along ``e^s theta`` for the scale move (Liu & Sabatti 2000), O(N) per call on the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.hamiltonian import LinearLogistic, Splitting
from bayes_spheres.kernels.steps import LogDensityAlong


class Lines(Protocol):
    """Chains at ``theta`` [C, P] moving along the columns of a direction basis."""

    theta: Tensor

    def along(self, k: int) -> LogDensityAlong: ...

    def move(self, k: int, t: Tensor) -> None: ...


class Target(Protocol):
    """A log density over unconstrained vectors [P], batched over chains."""

    def log_density(self, theta: Tensor) -> Tensor: ...

    def lines(self, theta: Tensor, directions: Tensor) -> Lines: ...

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        """``s [C, J] -> log p(e^s theta)`` for chains at ``theta`` [C, P]: the density along
        the scaling group's orbit, for the scale move (Liu & Sabatti 2000)."""
        ...

    def splitting(self, like: Tensor) -> Splitting:
        """The target as an exact Gaussian part and a rest with gradients, for the
        ``hamiltonian`` mode (:mod:`bayes_spheres.kernels.hamiltonian`); ``like`` gives the
        size, dtype and device."""
        ...


class PotentialTarget:
    """Any ``potential(theta [P]) -> -log p`` (e.g. Pyro's ``potential_fn`` on a flat vector).

    The generic path: every candidate costs one call of the potential.
    """

    def __init__(self, potential: Callable[[Tensor], Tensor]) -> None:
        self.potential = potential

    def log_density(self, theta: Tensor) -> Tensor:
        with torch.no_grad():
            return -torch.stack([self.potential(th) for th in theta]).reshape(len(theta))

    def lines(self, theta: Tensor, directions: Tensor) -> _PotentialLines:
        return _PotentialLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        def logp(s: Tensor) -> Tensor:
            points = torch.exp(s)[..., None] * theta[:, None, :]  # [C, J, P]
            return self.log_density(points.reshape(-1, theta.shape[-1])).reshape(s.shape)

        return logp

    def splitting(self, like: Tensor) -> Splitting:
        """No Gaussian part: the whole log density is the rest, its gradient by autograd."""

        def rest(z: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                zz = z.detach().requires_grad_(True)
                logp = -torch.stack([self.potential(t) for t in zz]).reshape(len(zz))
                (grad,) = torch.autograd.grad(logp.sum(), zz)
            return logp.detach(), grad

        p = like.shape[-1]
        eye = torch.eye(p, dtype=like.dtype, device=like.device)
        return Splitting(rest, like.new_zeros(p), eye, gaussian=False)


class _PotentialLines:
    def __init__(self, target: PotentialTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions

    def along(self, k: int) -> LogDensityAlong:
        d = self.directions[:, k]

        def logp(t: Tensor) -> Tensor:
            points = self.theta[:, None, :] + t[..., None] * d  # [C, J, P]
            return self.target.log_density(points.reshape(-1, d.numel())).reshape(t.shape)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        self.theta = self.theta + t[:, None] * self.directions[:, k]


class LogisticTarget:
    """Bernoulli-logistic likelihood with activations ``a = X theta + a0`` and a Gaussian prior
    ``log p(theta) = c + h.theta - theta' Q theta / 2``; the fast path of the slice sampler.

    With signs ``s = 2y - 1`` the log likelihood is ``sum_n log sigmoid(s_n a_n)``. For a basis
    ``E`` the matrices ``s * (X E)`` and ``E' Q E`` are computed once; one update then keeps the
    per-chain activations ``z = s a`` [C, N] and ``theta Q E`` current in O(N + K) per chain.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        prior_precision: Tensor,
        prior_shift: Tensor,
        offset: Tensor,
        prior_constant: float = 0.0,
    ) -> None:
        self.sign = 2.0 * y - 1.0
        self.sx = self.sign[:, None] * x  # [N, P]
        self.sz0 = self.sign * offset  # [N]
        self.q, self.h = prior_precision, prior_shift
        self.prior_constant = prior_constant  # c (samplers need only the shape: 0 by default)
        self._basis: Tensor | None = None
        self._sxe = self._ge = self._he = torch.empty(0)

    def log_likelihood(self, theta: Tensor) -> Tensor:
        return F.logsigmoid(theta @ self.sx.T + self.sz0).sum(-1)

    def log_prior(self, theta: Tensor) -> Tensor:
        return theta @ self.h - 0.5 * ((theta @ self.q) * theta).sum(-1)

    def log_density(self, theta: Tensor) -> Tensor:
        return self.log_likelihood(theta) + self.log_prior(theta)

    def splitting(self, like: Tensor | None = None) -> Splitting:
        """The prior as the Gaussian part: ``theta = m + L z``, ``L L' = Q^-1``, ``m = Q^-1 h``;
        the rest is the likelihood, ``a = (s X L) z + s (X m + a0)``, O(N P) per chain."""
        cov = torch.linalg.inv(self.q)
        chol = torch.linalg.cholesky(0.5 * (cov + cov.T))
        mean = cov @ self.h
        a_z = self.sx @ chol  # [N, P]
        a_z_t = a_z.T.contiguous()
        a_0 = self.sx @ mean + self.sz0

        def rest(z: Tensor) -> tuple[Tensor, Tensor]:
            a = torch.addmm(a_0, z, a_z_t)
            return F.logsigmoid(a).sum(-1), torch.sigmoid(-a) @ a_z

        return Splitting(rest, mean, chol, gaussian=True, linear=LinearLogistic(a_z, a_0))

    def lines(self, theta: Tensor, directions: Tensor) -> _LogisticLines:
        if self._basis is not directions:
            self._basis = directions
            self._sxe = (self.sx @ directions).T.contiguous()  # [K, N]
            self._ge = directions.T @ self.q @ directions  # [K, K]
            self._he = self.h @ directions  # [K]
        return _LogisticLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        """O(N) per chain and candidate: ``z = e^s (s_n x_n . theta) + s_n a0_n`` (the offset
        does not scale) and the prior ``e^s h.theta - e^(2s) theta' Q theta / 2``."""
        z1 = (theta @ self.sx.T)[:, None, :]  # [C, 1, N]
        linear = (theta @ self.h)[:, None]
        quadratic = 0.5 * ((theta @ self.q) * theta).sum(-1)[:, None]

        def logp(s: Tensor) -> Tensor:
            g = torch.exp(s)
            ll = F.logsigmoid(torch.addcmul(self.sz0, g[..., None], z1)).sum(-1)
            return ll + g * (linear - quadratic * g)

        return logp


class _LogisticLines:
    def __init__(self, target: LogisticTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions
        self.z = theta @ target.sx.T + target.sz0  # [C, N]
        # log prior along E_k: lp + t (h.E_k - theta' Q E_k) - t^2 E_k' Q E_k / 2
        self.slope = target._he - theta @ target.q @ directions  # [C, K]
        self.lp = target.log_prior(theta)  # [C]

    def along(self, k: int) -> LogDensityAlong:
        qk = self.target._sxe[k]
        slope, curv = self.slope[:, k : k + 1], 0.5 * self.target._ge[k, k]
        z, lp = self.z[:, None, :], self.lp[:, None]

        def logp(t: Tensor) -> Tensor:
            ll = F.logsigmoid(torch.addcmul(z, t[..., None], qk)).sum(-1)
            return ll + lp + t * (slope - curv * t)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        g = self.target._ge[k]
        self.lp = self.lp + t * (self.slope[:, k] - 0.5 * g[k] * t)
        self.slope = self.slope - t[:, None] * g
        self.z = torch.addcmul(self.z, t[:, None], self.target._sxe[k])
        self.theta = torch.addcmul(self.theta, t[:, None], self.directions[:, k])
