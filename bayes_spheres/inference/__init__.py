"""Inference methods: each module's ``fit(model, data, members, seed, **settings)`` returns a
:class:`Posterior`, so every method feeds the same ensemble, attack and metrics code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from bayes_spheres.ensemble import Ensemble


@dataclass
class Posterior:
    """An ensemble plus what produced it.

    ``samples`` maps latent and derived site names to draws shaped [chain, draw, ...];
    ``info`` holds scalars worth keeping in ``metrics.json`` (iterations, jitter, ...);
    ``elbo`` the ELBO per step for variational methods; ``sample_stats`` per-draw statistics
    of MCMC shaped [chain, draw] (``lp``, ``diverging``) for ``posterior.nc``.
    """

    ensemble: Ensemble
    samples: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    elbo: np.ndarray | None = None
    sample_stats: dict[str, Tensor] = field(default_factory=dict)
