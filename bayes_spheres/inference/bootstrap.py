"""Bootstrap ensemble (Hastie et al. 2001, sec. 8.4): MAP fits on resamples of the training set.

A resample is expressed as integer weights (how often each training point was drawn), so all
fits share the same feature matrix and are solved together by :func:`batched_lbfgs`: one
dense matrix product evaluates every fit's objective.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import Tensor

from bayes_spheres import checks
from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.batched_lbfgs import batched_lbfgs
from bayes_spheres.inference.potential import unravel
from bayes_spheres.models import SphereModel, activation, prior_trace

log = logging.getLogger(__name__)


def resample_counts(n: int, fits: int, generator: torch.Generator) -> Tensor:
    """How often each of ``n`` points is drawn in each of ``fits`` resamples: [fits, n]."""
    # on the CPU: one seeded stream on every device; BatchedObjective moves the counts
    idx = torch.randint(n, (fits, n), generator=generator)
    # on the CPU: as above
    ones = torch.ones(fits, n, dtype=torch.float64)
    # on the CPU: as above
    return torch.zeros(fits, n, dtype=torch.float64).scatter_add_(1, idx, ones)


class BatchedObjective:
    """Negative log joint of B independent fits, ``[B, P] -> [B]``, with weighted data.

    Both terms come from the Pyro model: its ``prior`` conditioned on batched latents, and
    its ``likelihood`` at every training point, weighted by the resample counts.
    """

    def __init__(self, model: SphereModel, phi: Tensor, y: Tensor, counts: Tensor) -> None:
        self.model, self.phi, self.y, self.counts = model, phi, y, counts.to(phi).T  # [N, B]
        proto = poutine.trace(model.prior).get_trace(phi.shape[1], phi)
        self.shapes = {}
        for name, node in proto.nodes.items():
            if node["type"] != "sample" or node["is_observed"]:
                continue
            support = node["fn"].support
            while isinstance(support, constraints.independent):
                support = support.base_constraint
            if support is not constraints.real:
                raise ValueError(
                    f"bootstrap needs real-valued latents; site {name!r} has support "
                    f"{node['fn'].support} (use a model with only real latents)"
                )
            self.shapes[name] = node["value"].shape
        self.size = sum(math.prod(s) for s in self.shapes.values())

    def unravel(self, theta: Tensor) -> dict[str, Tensor]:
        return unravel(theta, self.shapes)

    def weights(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(w [B, D], b [B], log prior [B])`` at ``theta``."""
        trace = prior_trace(self.model, self.unravel(theta), self.phi.shape[1])
        log_prior = sum(
            node["fn"].log_prob(node["value"])
            for name, node in trace.nodes.items()
            if node["type"] == "sample" and name in self.shapes
        )
        w, b = trace.nodes["_RETURN"]["value"]
        return w, b.expand(theta.shape[0]), log_prior

    def __call__(self, theta: Tensor, rows: Tensor) -> Tensor:
        """Negative log joint of fits ``rows`` at ``theta`` [k, P]: [k]."""
        w, b, log_prior = self.weights(theta)
        log_lik = self.model.likelihood(activation(self.phi, w, b)).log_prob(self.y[:, None])
        return -(self.counts[:, rows] * log_lik).sum(0) - log_prior


class Start(StrEnum):
    """Where every resample's fit starts: the full data's MAP, or the origin."""

    MAP = "map"
    ZERO = "zero"


@dataclass(frozen=True)
class BootstrapSettings:
    """A bootstrap fit's settings, checked when made (``conf/inference/bootstrap.yaml`` builds
    it as the ``inference`` node); calling it fits (:func:`fit`). ``max_iter``,
    ``history_size``, ``tolerance_grad``: the batched L-BFGS's
    (:mod:`~bayes_spheres.inference.batched_lbfgs`); ``init``: :class:`Start`."""

    max_iter: int = 1000
    history_size: int = 10
    tolerance_grad: float = 1e-8
    init: Start = Start.MAP

    def __post_init__(self) -> None:
        checked = {
            "max_iter": checks.integer("max_iter", self.max_iter, minimum=1),
            "history_size": checks.integer("history_size", self.history_size, minimum=1),
            "tolerance_grad": checks.positive("tolerance_grad", self.tolerance_grad),
            "init": checks.choice("init", self.init, Start),
        }
        for name, value in checked.items():  # frozen: the checked, normalised values
            object.__setattr__(self, name, value)

    def __call__(
        self, model: SphereModel, data: SphereData, members: int = 1000, seed: int = 0
    ) -> Posterior:
        return fit(model, data, members, seed, self)


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    settings: BootstrapSettings | None = None,
    **overrides: Any,
) -> Posterior:
    """``members`` MAP fits of ``model`` on bootstrap resamples, solved as one batch, with
    ``settings`` (:class:`BootstrapSettings`; keyword ``overrides`` replace single ones).

    ``init="map"`` starts every fit at the full data's MAP (fitted first; each resample's
    MAP lies near it), ``"zero"`` at the origin, as a fit from scratch would; the two agree
    once the fits converge, and differ when ``max_iter`` stops them early. No progress bar
    (one batched fit; its iterations are logged)."""
    config = replace(settings or BootstrapSettings(), **overrides)
    tolerance_grad = config.tolerance_grad
    gen = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    lbfgs = dict(
        max_iter=config.max_iter, history_size=config.history_size, tolerance_grad=tolerance_grad
    )
    counts = resample_counts(n, members, gen)
    objective = BatchedObjective(model, data.phi_train, data.y_train, counts)
    start = data.phi_train.new_zeros(1, objective.size)
    if config.init is Start.MAP:
        # on the CPU: counts, moved to the data by BatchedObjective
        full = BatchedObjective(model, data.phi_train, data.y_train, torch.ones(1, n))
        start, _ = batched_lbfgs(full, start, **lbfgs)
    theta, info = batched_lbfgs(objective, start.expand(members, -1), **lbfgs)
    if info["converged"] < members:
        log.warning(
            "bootstrap: %d of %d fits converged (|grad| <= %g)",
            info["converged"],
            members,
            tolerance_grad,
        )
    log.info("bootstrap: %d fits in %d batched L-BFGS iterations", members, info["iterations"])
    with torch.no_grad():
        w, b, _ = objective.weights(theta)
    samples = {k: v[None] for k, v in objective.unravel(theta).items()}
    samples.update(w=w[None], b=b[None])
    return Posterior(Ensemble(w, b, data.features), samples, {"bootstrap": info})
