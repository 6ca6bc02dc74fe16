"""Attacks on the spheres: each takes an ensemble and the radii, returns AdversarialPoints.

- :mod:`.gradient`: the paper's projected gradient ascent in ``x`` (Appendix B), ``pgd``.
- :mod:`.vertices`: the best vertex ``r e_j``, exact for one model, ``vertex``.
- :mod:`.mirror`: mirror ascent on the simplex ``u = x^2``, ``simplex``.
- :mod:`.points`: the result type and the random starts every attack shares.

An attack ``name`` with settings may have a ``check_<name>_settings(**settings)`` beside it in
its module: :func:`bayes_spheres.config.validate` calls it with the configured settings before
any work (a ValueError ``"key=value: what is allowed"`` becomes a one-line config error).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from bayes_spheres.attack.gradient import (
    Objective,
    ScoreFn,
    check_pgd_settings,
    ensemble_score,
    pgd,
    projected_gradient_ascent,
)
from bayes_spheres.attack.mirror import check_simplex_settings, simplex
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
    "ScoreFn",
    "check_pgd_settings",
    "check_simplex_settings",
    "ensemble_score",
    "pgd",
    "project",
    "projected_gradient_ascent",
    "random_starts",
    "simplex",
    "vertex",
    "vertex_logits",
]
