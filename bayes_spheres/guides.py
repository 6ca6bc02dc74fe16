"""SVI guides: the paper's full-covariance Gaussian, and direction x scale for the
hierarchical model (paper, "Hierarchical model"; cf. Ranganath et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal


class GuideName(StrEnum):
    FULL_COVARIANCE = "full_covariance"
    DIRECTION_SCALE = "direction_scale"


def full_covariance(model: Callable, init_scale: float = 0.1) -> AutoGuide:
    """One full-covariance Gaussian over all (unconstrained) latents; the Cholesky factor is
    Pyro's positive diagonal (softplus) times a unit lower-triangular matrix."""
    return AutoMultivariateNormal(model, init_scale=init_scale)


def direction_scale(model: Callable, init_scale: float = 0.1) -> AutoGuide:
    """``q(v, b) q(s)``: a full-covariance Gaussian over the direction ``v`` (the
    non-centered model's ``w_decentered``) and the bias, times a log-normal over the scale
    ``s`` (a Normal over ``log s``, Pyro's unconstrained space for a positive site)."""
    guide = AutoGuideList(model)
    guide.append(AutoMultivariateNormal(poutine.block(model, hide=["s"]), init_scale=init_scale))
    guide.append(AutoNormal(poutine.block(model, expose=["s"]), init_scale=init_scale))
    return guide


GUIDES: dict[GuideName, Callable[..., AutoGuide]] = {
    GuideName.FULL_COVARIANCE: full_covariance,
    GuideName.DIRECTION_SCALE: direction_scale,
}
