"""A Pyro model's negative log joint as a function of one flat unconstrained vector.

Built on :func:`pyro.infer.mcmc.util.initialize_model`, as Pyro's HMC is, so constrained
sites (e.g. a positive scale) are handled through Pyro's own transforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor

from bayes_spheres.kernels.potential import unravel


@dataclass
class FlatPotential:
    """``U(theta) = -log p(theta, data)`` over unconstrained latents packed into one vector."""

    potential_fn: Callable[[dict[str, Tensor]], Tensor]
    transforms: dict
    shapes: dict[str, torch.Size]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def from_model(
        cls, model: Callable, *model_args: object, **model_kwargs: object
    ) -> FlatPotential:
        init, potential_fn, transforms, _ = initialize_model(
            model, model_args=model_args, model_kwargs=model_kwargs
        )
        some = next(iter(init.values()))
        shapes = {k: v.shape for k, v in init.items()}
        return cls(potential_fn, transforms, shapes, some.dtype, some.device)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def unravel(self, theta: Tensor) -> dict[str, Tensor]:
        return unravel(theta, self.shapes)

    def ravel(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[k].reshape(-1) for k in self.shapes])

    def constrain(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {
            k: self.transforms[k].inv(v) if k in self.transforms else v for k, v in params.items()
        }

    def __call__(self, theta: Tensor) -> Tensor:
        return self.potential_fn(self.unravel(theta))
