"""Draws from a fitted Pyro guide, turned into an :class:`~bayes_spheres.ensemble.Ensemble`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.models import SphereModel


def guide_ensemble(
    model: SphereModel, guide: Callable, data: SphereData, members: int
) -> tuple[Ensemble, dict[str, Tensor]]:
    """``members`` draws of the latent sites from ``guide``, and the ``w``, ``b`` they imply.

    Works for any guide: each draw is a guide trace replayed through the model on one dummy
    data point (only the latent and derived sites are needed). Returns the ensemble and the
    draws of every latent and derived site, shaped [1 chain, members, ...].
    """
    phi = data.phi_train[:1]
    draws: dict[str, list[Tensor]] = defaultdict(list)
    with torch.no_grad():
        for _ in range(members):
            guide_trace = poutine.trace(guide).get_trace(phi)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(phi)
            for name, node in model_trace.nodes.items():
                if node["type"] == "sample" and name != "y" and not site_is_subsample(node):
                    draws[name].append(node["value"])
    samples = {k: torch.stack(v)[None] for k, v in draws.items()}
    ensemble = Ensemble(samples["w"][0], samples["b"][0], data.features)
    return ensemble, samples
