"""The evidence of a model with one scalar latent site integrated out by Gauss-Hermite
quadrature, each node's conditional evidence by annealed importance sampling."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor

from bayes_spheres.evidence.ais import annealed_importance_sampling
from bayes_spheres.evidence.tempering import Evidence


@dataclass
class SiteQuadrature:
    """``log p(y)`` of a model with one scalar latent site ``site`` integrated out by
    Gauss-Hermite quadrature: ``p(y) = sum_i c_i p(y | site = s_i)``, each conditional
    evidence by :func:`annealed_importance_sampling`. ``standard_error`` is the delta-method
    error from the nodes' own errors (the quadrature's error is not in it: compare
    ``nodes``)."""

    site: str
    values: Tensor  # the nodes s_i, constrained
    log_coefficients: Tensor  # log c_i (the quadrature weights of the site's prior)
    conditional: list[Evidence]

    @property
    def log_terms(self) -> Tensor:
        # on the CPU: the nodes' estimates are Python floats
        evidences = torch.tensor([e.log_evidence for e in self.conditional], dtype=torch.float64)
        return self.log_coefficients + evidences

    @property
    def log_evidence(self) -> float:
        return float(torch.logsumexp(self.log_terms, 0))

    @property
    def standard_error(self) -> float:
        share = torch.softmax(self.log_terms, 0)
        # on the CPU: the nodes' errors are Python floats
        errors = torch.tensor([e.standard_error for e in self.conditional], dtype=torch.float64)
        return float(torch.sqrt(((share * errors) ** 2).sum()))


def evidence_over_site(
    model: Callable[..., Any], site: str, *args: Any, nodes: int = 7, **settings: Any
) -> SiteQuadrature:
    """``log p(y)`` of ``model(*args)`` with its scalar latent site ``site`` (Normal or
    LogNormal prior, as the model states it) integrated out by ``nodes``-point Gauss-Hermite
    quadrature in the site's unconstrained coordinate; at each node
    :func:`annealed_importance_sampling` (``settings``) estimates the evidence with the site
    held at the node's value (``fixed``). For a hierarchical prior whose other
    latents are Gaussian given the scale (the study's hierarchical model), each conditional
    model is on the fast path."""
    if not (isinstance(nodes, int) and nodes >= 1):
        raise ValueError(f"nodes={nodes!r}: must be an integer >= 1")
    with torch.random.fork_rng():
        trace = poutine.trace(model).get_trace(*args)
    node = trace.nodes.get(site)
    if node is None or node["type"] != "sample" or node["is_observed"]:
        latent = [
            n for n, v in trace.nodes.items() if v["type"] == "sample" and not v["is_observed"]
        ]
        raise ValueError(f"site={site!r}: not a latent sample site of the model; it has {latent}")
    prior = node["fn"]
    if prior.batch_shape or prior.event_shape:
        raise ValueError(f"site={site!r}: has shape {tuple(prior.shape())}; must be a scalar")
    base = prior
    if isinstance(prior, dist.LogNormal):
        base = prior.base_dist
    if not isinstance(base, dist.Normal):
        raise ValueError(
            f"site={site!r}: prior {type(prior).__name__}; must be Normal or LogNormal"
        )
    points, weights = np.polynomial.hermite.hermgauss(nodes)
    like = node["value"]
    unconstrained = base.loc + math.sqrt(2.0) * base.scale * like.new_tensor(points)
    values = torch.exp(unconstrained) if base is not prior else unconstrained
    log_coefficients = torch.from_numpy(np.log(weights / math.sqrt(math.pi)))
    seed = settings.pop("seed", 0)
    conditional = [
        annealed_importance_sampling(
            model, *args, seed=seed * nodes + i, fixed={site: value}, **settings
        )
        for i, value in enumerate(values)
    ]  # each node its own random stream, so that their errors are independent
    return SiteQuadrature(site, values.detach().cpu(), log_coefficients, conditional)
