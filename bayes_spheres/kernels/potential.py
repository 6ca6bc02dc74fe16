"""The generic target: any potential ``theta [P] -> -log p`` (e.g. Pyro's ``potential_fn``
over a flat vector). Every candidate costs one call of the potential; works for any model."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from bayes_spheres.kernels.protocols import LogDensityAlong, Splitting


def unravel(theta: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    """Vector(s) [..., sum of sizes] -> site values [..., *shape], in ``shapes``' order."""
    out, i = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = theta[..., i : i + n].reshape(theta.shape[:-1] + shape)
        i += n
    return out


class PotentialTarget:
    """Log density ``-potential(theta)`` over unconstrained vectors, batched by a loop."""

    def __init__(self, potential: Callable[[Tensor], Tensor]) -> None:
        self.potential = potential

    def log_density(self, theta: Tensor) -> Tensor:
        with torch.no_grad():
            return -torch.stack([self.potential(row) for row in theta]).reshape(len(theta))

    def lines(self, theta: Tensor, directions: Tensor) -> PotentialLines:
        return PotentialLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        def logp(s: Tensor) -> Tensor:
            points = torch.exp(s)[..., None] * theta[:, None, :]  # [C, J, P]
            return self.log_density(points.reshape(-1, theta.shape[-1])).reshape(s.shape)

        return logp

    def splitting(self, like: Tensor) -> Splitting:
        """No Gaussian part: the whole log density is the rest, its gradient by autograd."""

        def rest(z: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                points = z.detach().requires_grad_(True)
                logp = -torch.stack([self.potential(row) for row in points]).reshape(len(z))
                (grad,) = torch.autograd.grad(logp.sum(), points)
            return logp.detach(), grad

        size = like.shape[-1]
        eye = torch.eye(size, dtype=like.dtype, device=like.device)
        return Splitting(rest, like.new_zeros(size), eye, gaussian=False)


class PotentialLines:
    """Chains of a :class:`PotentialTarget` moving along the columns of ``directions``."""

    def __init__(self, target: PotentialTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions

    def along(self, k: int) -> LogDensityAlong:
        direction = self.directions[:, k]

        def logp(t: Tensor) -> Tensor:
            points = self.theta[:, None, :] + t[..., None] * direction  # [C, J, P]
            flat = points.reshape(-1, direction.numel())
            return self.target.log_density(flat).reshape(t.shape)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        self.theta = self.theta + t[:, None] * self.directions[:, k]
