"""Attacks on the spheres: each takes an ensemble and the radii, returns AdversarialPoints.

- :mod:`.gradient`: the paper's projected gradient ascent in ``x`` (Appendix B), ``pgd``.
- :mod:`.vertices`: the best vertex ``r e_j``, exact for one model, ``vertex``.
- :mod:`.mirror`: mirror ascent on the simplex ``u = x^2``, ``simplex``.
- :mod:`.points`: the result type and the random starts every attack shares.

An attack with settings has a settings object beside it (:class:`PGDSettings`,
:class:`SimplexSettings`) that holds its defaults, checks itself when made (so a bad value in
the config fails before any work, naming its full key) and attacks when called.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from bayes_spheres.attack.gradient import (
    Objective,
    PGDSettings,
    ScoreFn,
    ensemble_score,
    pgd,
    projected_gradient_ascent,
)
from bayes_spheres.attack.mirror import SimplexSettings, simplex
from bayes_spheres.attack.points import AdversarialPoints, project, random_starts
from bayes_spheres.attack.vertices import vertex, vertex_logits


class AttackName(StrEnum):
    PGD = "pgd"
    VERTEX = "vertex"
    SIMPLEX = "simplex"


ATTACKS: dict[AttackName, Callable[..., AdversarialPoints]] = {
    AttackName.PGD: pgd,
    AttackName.VERTEX: vertex,
    AttackName.SIMPLEX: simplex,
}

__all__ = [
    "ATTACKS",
    "AdversarialPoints",
    "AttackName",
    "Objective",
    "PGDSettings",
    "ScoreFn",
    "SimplexSettings",
    "ensemble_score",
    "pgd",
    "project",
    "projected_gradient_ascent",
    "random_starts",
    "simplex",
    "vertex",
    "vertex_logits",
]
