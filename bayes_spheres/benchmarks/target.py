"""The record every published target is: a Pyro model with its data bound, the map from its
latent draws to the quantities the Inference Gym reports, and the gym's reference posterior
moments of those quantities (Stan runs by the gym's authors; :mod:`.gym` reads them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Samples = Mapping[str, np.ndarray]
Quantities = Callable[[Samples], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Reference:
    """The gym's ground truth for one quantity: posterior ``mean`` and ``sd`` per coordinate,
    and ``mean_se``, the Monte Carlo standard error of the reference mean itself (the gym
    publishes no error for ``sd``)."""

    mean: np.ndarray
    sd: np.ndarray
    mean_se: np.ndarray

    def __post_init__(self) -> None:
        shapes = {np.shape(self.mean), np.shape(self.sd), np.shape(self.mean_se)}
        if len(shapes) != 1:
            raise ValueError(f"mean, sd and mean_se differ in shape: {sorted(shapes)}")


@dataclass(frozen=True)
class Target:
    """A published benchmark posterior.

    :param name: the short name used by the tests and ``bench/published.py``.
    :param gym: the Inference Gym class the model and its ground truth come from.
    :param model: the Pyro model, data bound: ``model()`` runs it (float64 throughout).
    :param quantities: maps constrained draws of every latent site (``[..., *site shape]``,
        as ``MCMC.get_samples`` gives them) to the gym's reported quantities (``[...,
        *reference shape]``), keyed as :attr:`reference` is.
    :param reference: the gym's ground truth per quantity (its ``identity`` transformation;
        the key ``"identity"`` where the gym's parameter is one unnamed array).
    :param notes: how the model is written here, where that is not obvious.
    """

    name: str
    gym: str
    model: Callable[[], None]
    quantities: Quantities
    reference: dict[str, Reference]
    notes: str = ""

    @property
    def dim(self) -> int:
        """Number of scalar quantities (for every target here, the posterior's dimension)."""
        return int(sum(np.size(r.mean) for r in self.reference.values()))


def identity(*names: str) -> Quantities:
    """Quantities that are latent sites as they are: ``{name: samples[name]}``."""

    def quantities(samples: Samples) -> dict[str, np.ndarray]:
        return {name: np.asarray(samples[name]) for name in names}

    return quantities


def renamed(site: str, quantity: str = "identity") -> Quantities:
    """The quantity ``quantity`` is the latent site ``site`` (the gym's unnamed parameter)."""

    def quantities(samples: Samples) -> dict[str, np.ndarray]:
        return {quantity: np.asarray(samples[site])}

    return quantities
