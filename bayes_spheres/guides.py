"""SVI guides: the paper's full-covariance Gaussian, and direction x scale for the
hierarchical model (paper, "Hierarchical model"; cf. Ranganath et al. 2016)."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoGuide,
    AutoGuideList,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import init_to_mean, init_to_median
from pyro.nn import PyroParam
from torch import Tensor, nn


class InitLoc(StrEnum):
    """Where the guide's mean starts: the prior mean (deterministic) or Pyro's default, the
    median of a few prior draws (random, of the prior's size)."""

    MEAN = "mean"
    MEDIAN = "median"


INIT_LOC_FNS = {InitLoc.MEAN: init_to_mean, InitLoc.MEDIAN: init_to_median}


class GuideName(StrEnum):
    FULL_COVARIANCE = "full_covariance"
    DIRECTION_SCALE = "direction_scale"


class NoiseCachedNormal(TorchDistribution):
    """``N(loc, L L^T)`` with ``L = diag(scale) (I + strict_lower)``, ``strict_lower`` strictly
    lower triangular: the parameterisation of Pyro's ``AutoMultivariateNormal``.

    ``rsample`` draws ``z = loc + L eps`` without forming ``L`` and keeps ``eps``, so the log
    density of that very draw is ``log N(eps; 0, I) - sum log scale``: no triangular solve,
    and in autograd a function of the parameters identical to ``MultivariateNormal.log_prob``
    at ``z(params, eps)``. Any other value falls back to the triangular solve.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, strict_lower: Tensor) -> None:
        self.loc, self.scale, self.strict_lower = loc, scale, strict_lower
        self._draw: tuple[Tensor, Tensor] | None = None  # (value, eps) of the last rsample
        batch_shape = torch.broadcast_shapes(loc.shape, scale.shape)[:-1]
        super().__init__(batch_shape, loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> NoiseCachedNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        return NoiseCachedNormal(
            self.loc.expand(shape), self.scale.expand(shape), self.strict_lower
        )

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        # torch.randn draws the same numbers as MultivariateNormal.rsample for a given seed
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        # mv's backward is an outer product; matmul's (for a batch of draws) a matrix product
        lower_eps = (
            torch.mv(self.strict_lower, eps) if eps.dim() == 1 else eps @ self.strict_lower.T
        )
        value = self.loc + self.scale * (eps + lower_eps)
        self._draw = (value, eps)
        return value

    def log_prob(self, value: Tensor) -> Tensor:
        if self._draw is not None and value is self._draw[0]:
            eps = self._draw[1]
        else:
            centred = ((value - self.loc) / self.scale).unsqueeze(-1)
            unit = self.strict_lower.expand(centred.shape[:-2] + self.strict_lower.shape)
            eps = torch.linalg.solve_triangular(unit, centred, upper=False, unitriangular=True)
            eps = eps.squeeze(-1)
        dim = self.event_shape[0]
        return (
            -0.5 * eps.square().sum(-1)
            - self.scale.log().sum(-1)
            - 0.5 * dim * math.log(2 * math.pi)
        )

    @property
    def mean(self) -> Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    def to_multivariate_normal(self) -> dist.MultivariateNormal:
        eye = torch.eye(self.event_shape[0], dtype=self.loc.dtype, device=self.loc.device)
        return dist.MultivariateNormal(
            self.loc, scale_tril=self.scale[..., None] * (self.strict_lower + eye)
        )


class AutoFullCovarianceNormal(AutoContinuous):
    """A full-covariance Gaussian over all (unconstrained) latents, fast to train.

    The same family and parameterisation as Pyro's ``AutoMultivariateNormal`` (Cholesky
    factor = positive softplus diagonal ``scale`` times a unit lower-triangular matrix, at
    ``init_scale * I`` to start), so for the same seed SVI follows the same path; the latent
    is drawn from :class:`NoiseCachedNormal`, whose log density of its own draw needs no
    triangular solve.

    The unit lower factor's strictly lower part is the parameter ``strict_lower``, a full
    matrix whose upper triangle and diagonal start at zero and stay there: a gradient hook
    zeroes their gradient, so any optimiser whose update is zero for a zero gradient (SGD
    with momentum, Adam; not weight decay) leaves them at zero. That spares a mask or
    ``tril`` of the 501 x 501 matrix in every forward and backward pass (about half of the
    matrix work of a step at D = 500).
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self, model: Callable, init_loc_fn: Callable = init_to_median, init_scale: float = 0.1
    ) -> None:
        if not isinstance(init_scale, float) or not init_scale > 0:
            raise ValueError(f"Expected init_scale > 0. but got {init_scale}")
        self._init_scale = init_scale
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        # The prototype's values only give shapes and the starting point. Detached, a value
        # drawn through a learnt prior (Hier. SVI's p(s)) is no longer a tensor that requires
        # grad, which the jit's tracer cannot hold as a constant.
        for site in self.prototype_trace.nodes.values():
            if site["type"] == "sample":
                site["value"] = site["value"].detach()
        self.loc = nn.Parameter(self._init_loc())
        self.scale = PyroParam(torch.full_like(self.loc, self._init_scale), self.scale_constraint)
        dim = self.latent_dim
        strict_lower = nn.Parameter(self.loc.new_zeros(dim, dim))
        mask = torch.ones_like(strict_lower.data).tril(-1)
        strict_lower.register_hook(lambda grad: grad * mask)  # a multiply: tril is slower
        self.strict_lower = strict_lower

    def _noise_cached(self) -> NoiseCachedNormal:
        return NoiseCachedNormal(self.loc, self.scale, self.strict_lower)

    def sample_latent(self, *args, **kwargs) -> Tensor:
        return pyro.sample(
            f"_{self._pyro_name}_latent", self._noise_cached(), infer={"is_auxiliary": True}
        )

    def get_posterior(self, *args, **kwargs) -> dist.MultivariateNormal:
        """The guide as a ``MultivariateNormal`` (for analysis; training does not use it)."""
        return self._noise_cached().to_multivariate_normal()

    def get_base_dist(self) -> dist.Distribution:
        return dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)

    def get_transform(self, *args, **kwargs) -> dist.transforms.Transform:
        return dist.transforms.LowerCholeskyAffine(
            self.loc, scale_tril=self.get_posterior().scale_tril
        )

    def _loc_scale(self, *args, **kwargs) -> tuple[Tensor, Tensor]:
        return self.loc, self.get_posterior().scale_tril.square().sum(-1).sqrt()


def full_covariance(
    model: Callable,
    init_scale: float = 0.1,
    init_loc: InitLoc = InitLoc.MEAN,
    pyro_mvn: bool = False,
) -> AutoGuide:
    """One full-covariance Gaussian over all (unconstrained) latents; the Cholesky factor is
    a positive (softplus) diagonal times a unit lower-triangular matrix.

    ``pyro_mvn=True`` builds Pyro's ``AutoMultivariateNormal`` instead (the reference: same
    family, parameterisation and, for a seed, draws; slower to train)."""
    init = INIT_LOC_FNS[InitLoc(init_loc)]
    cls = AutoMultivariateNormal if pyro_mvn else AutoFullCovarianceNormal
    return cls(model, init_loc_fn=init, init_scale=init_scale)


def direction_scale(
    model: Callable,
    init_scale: float = 0.1,
    init_loc: InitLoc = InitLoc.MEAN,
    pyro_mvn: bool = False,
) -> AutoGuide:
    """``q(v, b) q(s)``: a full-covariance Gaussian over the direction ``v`` (the
    non-centered model's ``w_decentered``) and the bias, times a log-normal over the scale
    ``s`` (a Normal over ``log s``, Pyro's unconstrained space for a positive site).
    ``pyro_mvn`` as for :func:`full_covariance`."""
    init = INIT_LOC_FNS[InitLoc(init_loc)]
    guide = AutoGuideList(model)
    direction = poutine.block(model, hide=["s"])
    guide.append(full_covariance(direction, init_scale, init_loc, pyro_mvn))
    scale = poutine.block(model, expose=["s"])
    guide.append(AutoNormal(scale, init_loc_fn=init, init_scale=init_scale))
    return guide


GUIDES: dict[GuideName, Callable[..., AutoGuide]] = {
    GuideName.FULL_COVARIANCE: full_covariance,
    GuideName.DIRECTION_SCALE: direction_scale,
}
