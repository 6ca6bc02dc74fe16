"""The tempered model and the estimate: :class:`Tempering` raises a Pyro model's likelihood to
a power ``beta``; :class:`Evidence` is ``log p(y)`` from weighted particles
(``bayes_spheres/evidence/__init__.py`` describes the estimator)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor


class Tempering(Messenger):
    """A Pyro handler that scales the log density of the sites the model observes by
    ``beta`` (mutable): the likelihood's power on the path from prior (``beta = 0``) to
    posterior (``beta = 1``). ``Tempering(beta)(model)`` is the tempered model. Sites
    conditioned from outside (``poutine.condition``) and deterministic sites are not data:
    wrapped inside any conditioning, the handler sees the model's own ``obs=`` only."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def _pyro_sample(self, msg: dict) -> None:
        if (
            msg["is_observed"]
            and not msg["infer"].get("_deterministic", False)
            and not site_is_subsample(msg)
        ):
            msg["scale"] = msg["scale"] * self.beta


@dataclass
class Evidence:
    """``log p(y)`` estimated from ``particles`` weighted particles.

    ``standard_error`` is the delta-method error of ``log mean(w)``:
    ``sd(w) / (sqrt(particles) mean(w))``; ``effective_particles`` Kish's
    ``(sum w)^2 / sum w^2``. Both are only as good as the spread of the weights they see: a
    handful of effective particles means the error bar itself is unreliable.
    """

    log_evidence: float
    standard_error: float
    effective_particles: float
    log_weights: Tensor
    temperatures: int
    info: dict = field(default_factory=dict)  # the transition and its settings

    @property
    def particles(self) -> int:
        return len(self.log_weights)

    @classmethod
    def of(cls, log_weights: Tensor, temperatures: int, info: dict) -> Evidence:
        """The estimate from the particles' final log weights."""
        particles = len(log_weights)
        top = log_weights.max()
        weights = torch.exp(log_weights - top)
        mean = weights.mean()
        standard_error = float(weights.std(unbiased=True) / (math.sqrt(particles) * mean))
        if particles == 1:
            standard_error = math.inf
        return cls(
            log_evidence=float(top + torch.log(mean)),
            standard_error=standard_error,
            effective_particles=float(weights.sum() ** 2 / (weights**2).sum()),
            log_weights=log_weights,
            temperatures=temperatures,
            info=info,
        )
