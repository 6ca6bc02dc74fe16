"""SVI guides: the paper's full-covariance Gaussian, and direction x scale for the
hierarchical model (paper, "Hierarchical model"; cf. Ranganath et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_mean, init_to_median


class InitLoc(StrEnum):
    """Where the guide's mean starts: the prior mean (deterministic) or Pyro's default, the
    median of a few prior draws (random, of the prior's size)."""

    MEAN = "mean"
    MEDIAN = "median"


INIT_LOC_FNS = {InitLoc.MEAN: init_to_mean, InitLoc.MEDIAN: init_to_median}


class GuideName(StrEnum):
    FULL_COVARIANCE = "full_covariance"
    DIRECTION_SCALE = "direction_scale"


def full_covariance(
    model: Callable, init_scale: float = 0.1, init_loc: InitLoc = InitLoc.MEAN
) -> AutoGuide:
    """One full-covariance Gaussian over all (unconstrained) latents; the Cholesky factor is
    Pyro's positive diagonal (softplus) times a unit lower-triangular matrix."""
    init = INIT_LOC_FNS[InitLoc(init_loc)]
    return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=init_scale)


def direction_scale(
    model: Callable, init_scale: float = 0.1, init_loc: InitLoc = InitLoc.MEAN
) -> AutoGuide:
    """``q(v, b) q(s)``: a full-covariance Gaussian over the direction ``v`` (the
    non-centered model's ``w_decentered``) and the bias, times a log-normal over the scale
    ``s`` (a Normal over ``log s``, Pyro's unconstrained space for a positive site)."""
    init = INIT_LOC_FNS[InitLoc(init_loc)]
    guide = AutoGuideList(model)
    direction = poutine.block(model, hide=["s"])
    guide.append(AutoMultivariateNormal(direction, init_loc_fn=init, init_scale=init_scale))
    scale = poutine.block(model, expose=["s"])
    guide.append(AutoNormal(scale, init_loc_fn=init, init_scale=init_scale))
    return guide


GUIDES: dict[GuideName, Callable[..., AutoGuide]] = {
    GuideName.FULL_COVARIANCE: full_covariance,
    GuideName.DIRECTION_SCALE: direction_scale,
}
