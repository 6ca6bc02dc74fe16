"""The strongest attack on an ensemble: per restart, the best point any attack run on it found,
polished by mirror ascent on the simplex ``u = x^2`` (``bayes_spheres/attack/mirror.py``).

Every attack starts restart ``k`` from the same random point (``points.ensemble_starts``, one
seed), so row ``k`` of each attack's :class:`AdversarialPoints` is one restart: the strongest
attack keeps, row by row, the point with the largest wrong-class probability, then ascends
the ensemble's objective from it (log mean sigmoid; one model: its logit). Mirror ascent
accepts only steps that raise the objective, so polishing never lowers a restart's value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bayes_spheres.attack.mirror import mirror_ascent
from bayes_spheres.attack.objectives import Objective, objective_in_u
from bayes_spheres.attack.points import AdversarialPoints, project
from bayes_spheres.ensemble import Ensemble


def best_of(found: Sequence[AdversarialPoints]) -> AdversarialPoints:
    """Row by row, the point with the largest wrong-class probability among ``found`` (the
    same restarts: equal radii and labels)."""
    first = found[0]
    for other in found[1:]:
        if not (torch.equal(other.radius, first.radius) and torch.equal(other.label, first.label)):
            raise ValueError(
                "best_of: the attacks' points are not the same restarts (radii or labels "
                f"differ: {len(first.radius)} against {len(other.radius)} rows)"
            )
    probs = torch.stack([p.wrong_prob for p in found])  # [A, K]
    pick = probs.argmax(0)
    rows = torch.arange(len(pick), device=pick.device)
    x = torch.stack([p.x for p in found])[pick, rows]
    return AdversarialPoints(x, first.radius, first.label, probs[pick, rows])


def polish(
    ensemble: Ensemble,
    points: AdversarialPoints,
    max_steps: int = 200,
    step_size: float = 0.1,
    tol: float = 1e-9,
    patience: int = 10,
) -> AdversarialPoints:
    """Mirror ascent from ``points`` on the ensemble's objective; each restart keeps the better
    of its start and its end. ``max_steps=0`` returns ``points``."""
    if max_steps == 0:
        return points
    objective = Objective.LOGIT if ensemble.size == 1 else Objective.LOG_MEAN_SIGMOID
    u, _ = mirror_ascent(
        objective_in_u(ensemble, points.label, objective),
        points.x.square(),
        points.radius,
        step_size=step_size,
        max_steps=max_steps,
        tol=tol,
        patience=patience,
        desc="polish",
    )
    x = project(torch.where(points.x < 0, -1.0, 1.0) * u.sqrt(), points.radius)
    prob = ensemble.wrong_prob(x, points.label)
    better = prob > points.wrong_prob
    return AdversarialPoints(
        torch.where(better[:, None], x, points.x),
        points.radius,
        points.label,
        torch.where(better, prob, points.wrong_prob),
    )


def strongest(
    ensemble: Ensemble, found: Sequence[AdversarialPoints], polish_steps: int = 200
) -> AdversarialPoints:
    """:func:`best_of` the attacks' points, then :func:`polish`."""
    return polish(ensemble, best_of(found), max_steps=polish_steps)
