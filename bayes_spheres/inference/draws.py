"""Draws from a fitted Pyro guide, turned into an :class:`~bayes_spheres.ensemble.Ensemble`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.models import SphereModel, prior_trace


def guide_ensemble(
    model: SphereModel, guide: Callable, data: SphereData, members: int
) -> tuple[Ensemble, dict[str, Tensor]]:
    """``members`` draws of the latent sites from ``guide``, and the ``w``, ``b`` they imply.

    Works for any guide. An autoguide draws all members at once inside a ``pyro.plate``
    (autoguides broadcast over plates, as in ``Predictive(parallel=True)``), and the
    model's prior, which broadcasts over leading batch dimensions, derives ``w`` and ``b``
    from them; any other guide is traced ``members`` times, each draw replayed through the
    model on one dummy data point. Returns the ensemble and the draws of every latent and
    derived site, shaped [1 chain, members, ...].
    """
    with torch.no_grad():
        if isinstance(guide, AutoGuide):
            samples = _vectorised_draws(model, guide, data, members)
        else:
            samples = _sequential_draws(model, guide, data, members)
    ensemble = Ensemble(samples["w"][0], samples["b"][0], data.features)
    return ensemble, samples


def _vectorised_draws(
    model: SphereModel, guide: AutoGuide, data: SphereData, members: int
) -> dict[str, Tensor]:
    phi = data.phi_train[:1]
    with pyro.plate("members", members, dim=-1):
        latents = guide(phi)
    prior = prior_trace(model, latents, data.dim)
    samples = {}
    for name, node in prior.nodes.items():
        if node["type"] != "sample":
            continue
        value = node["value"]
        if value.dim() == node["fn"].event_dim:  # a constant site, e.g. ``b`` without bias
            value = value.expand(members, *value.shape)
        if value.shape[0] != members:
            raise ValueError(
                f"site {name!r}: draws shaped {tuple(value.shape)}, not [{members}, ...]"
            )
        samples[name] = value[None]
    return samples


def _sequential_draws(
    model: SphereModel, guide: Callable, data: SphereData, members: int
) -> dict[str, Tensor]:
    phi = data.phi_train[:1]
    draws: dict[str, list[Tensor]] = defaultdict(list)
    for _ in range(members):
        guide_trace = poutine.trace(guide).get_trace(phi)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(phi)
        for name, node in model_trace.nodes.items():
            if node["type"] == "sample" and name != "y" and not site_is_subsample(node):
                draws[name].append(node["value"])
    return {k: torch.stack(v)[None] for k, v in draws.items()}
