"""Inference methods: each method's settings object, called with ``(model, data, members,
seed)``, returns a :class:`Posterior`, so every method feeds the same ensemble,
attack and metrics code, and each posterior writes its own files into a run folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from bayes_spheres.artifacts import save_posterior
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.run_folder import ENSEMBLE_FILE, POSTERIOR_FILE

# Writes what a method has to show into a run folder (MCMC's trace plot, SVI's ELBO).
Artifact = Callable[[Path], None]


@dataclass
class Posterior:
    """An ensemble plus what produced it.

    ``samples`` maps latent and derived site names to draws shaped [chain, draw, ...];
    ``info`` holds scalars worth keeping in ``metrics.json`` (iterations, jitter, ...);
    ``elbo`` the ELBO per step for variational methods; ``sample_stats`` per-draw statistics
    of MCMC shaped [chain, draw] (``lp``, ``diverging``) for ``posterior.nc``; ``artifacts``
    what the method writes beside them (:meth:`save`).
    """

    ensemble: Ensemble
    samples: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    elbo: np.ndarray | None = None
    sample_stats: dict[str, Tensor] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()

    def save(
        self,
        out: Path,
        log_likelihood: dict[str, Tensor] | None = None,
        observed: dict[str, Tensor] | None = None,
        log_likelihood_dtype: str = "float64",
    ) -> None:
        """Write the ensemble, ``posterior.nc`` (with the pointwise ``log_likelihood`` of the
        ``observed`` data where given) and the method's own artifacts into the folder ``out``."""
        self.ensemble.save(out / ENSEMBLE_FILE)
        save_posterior(
            out / POSTERIOR_FILE, self.samples, self.sample_stats, log_likelihood, observed,
            log_likelihood_dtype=log_likelihood_dtype,
        )  # fmt: skip
        for write in self.artifacts:
            write(out)
