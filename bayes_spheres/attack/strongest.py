"""The strongest attack on an ensemble: per restart, the best point any attack run on it found,
polished by mirror ascent on the simplex ``u = x^2`` (``bayes_spheres/attack/mirror.py``).

Every attack starts restart ``k`` from the same random point (``points.ensemble_starts``, one
seed), so row ``k`` of each attack's :class:`AdversarialPoints` is one restart: the strongest
attack keeps, row by row, the point with the largest wrong-class probability, then ascends
the ensemble's objective from it (log mean sigmoid; one model: its logit).

**Continuation.** A sampled ensemble's members are nearly step functions on the spheres
(at the strongest points of the flat MCMC row the median ``|a_s|`` is about 400), so the
objective is a staircase: flat almost everywhere, and an ascent stops on the first plateau.
The polish therefore first ascends smoothed objectives, every activation divided by a
temperature ``T`` (``log mean_s sigmoid(a_s / T)``), for each ``T`` of ``temperatures`` in
turn, then the objective itself: graduated non-convexity (Blake & Zisserman 1987, "Visual
Reconstruction"), a homotopy from a smooth function to the real one (Mobahi & Fisher 2015).
After each stage a restart keeps its new point only where the *real* wrong-class probability
rose, so polishing never lowers a restart's value, whatever the smoothing does. One model
skips the smoothed stages: its logit is linear in ``u``, and dividing it by ``T`` does not
move its maximiser. Measured on the flat MCMC row (``docs/adversarial-error.md``,
"Continuation"): the worst points rise by 0.04-0.09.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from bayes_spheres import checks
from bayes_spheres.attack.mirror import mirror_ascent
from bayes_spheres.attack.objectives import Objective, objective_in_u
from bayes_spheres.attack.points import AdversarialPoints, project
from bayes_spheres.ensemble import Ensemble


@dataclass(frozen=True)
class PolishSettings:
    """The strongest attack's polish, checked when made: at most ``steps`` mirror-ascent steps
    (first step ``step_size``; a restart stops after ``patience`` steps without a rise above
    ``tol``) at each of ``temperatures`` (module docstring; empty: none) and then on the
    objective itself. ``steps=0``: no polish."""

    steps: int = 200
    temperatures: tuple[float, ...] = (100.0, 30.0, 10.0, 3.0)
    step_size: float = 0.1
    tol: float = 1e-9
    patience: int = 10

    def __post_init__(self) -> None:
        checks.integer("steps", self.steps, minimum=0)
        if isinstance(self.temperatures, str | bytes) or not hasattr(self.temperatures, "__len__"):
            raise checks.SettingError(
                "temperatures", self.temperatures, "must be a list of numbers > 0"
            )
        temperatures = tuple(self.temperatures)
        for i, temperature in enumerate(temperatures):
            checks.positive(f"temperatures[{i}]", temperature)
        object.__setattr__(self, "temperatures", tuple(float(t) for t in temperatures))
        checks.positive("step_size", self.step_size)
        checks.at_least("tol", self.tol, 0.0)
        checks.integer("patience", self.patience, minimum=1)


def polish_of_run(config: Mapping[str, Any]) -> PolishSettings:
    """The polish a run ran, from its saved config (``.hydra/config.yaml``): its ``polish``
    node, or, in a folder written before that node existed, ``polish_steps`` steps (200 if
    absent) without the smoothed stages."""
    node = config.get("polish")
    if node is None:
        return PolishSettings(steps=int(config.get("polish_steps", 200)), temperatures=())
    names = {f.name for f in fields(PolishSettings)}
    return PolishSettings(**{k: v for k, v in node.items() if k in names})


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


def _ascend(
    ensemble: Ensemble, points: AdversarialPoints, temperature: float, settings: PolishSettings
) -> AdversarialPoints:
    """Mirror ascent from ``points`` on the objective at ``temperature`` (activations divided
    by it); each restart keeps the point with the larger real wrong-class probability."""
    smoothed = ensemble
    if temperature != 1.0:
        smoothed = replace(ensemble, w=ensemble.w / temperature, b=ensemble.b / temperature)
    objective = Objective.LOGIT if ensemble.size == 1 else Objective.LOG_MEAN_SIGMOID
    u, _ = mirror_ascent(
        objective_in_u(smoothed, points.label, objective),
        points.x.square(),
        points.radius,
        step_size=settings.step_size,
        max_steps=settings.steps,
        tol=settings.tol,
        patience=settings.patience,
        desc="polish" if temperature == 1.0 else f"polish (T = {temperature:g})",
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


def polish(
    ensemble: Ensemble, points: AdversarialPoints, settings: PolishSettings | None = None
) -> AdversarialPoints:
    """Mirror ascent from ``points``, through ``settings.temperatures`` (ensembles only) to the
    objective itself (module docstring); no restart's wrong-class probability falls."""
    settings = settings or PolishSettings()
    if settings.steps == 0:
        return points
    temperatures = settings.temperatures if ensemble.size > 1 else ()
    for temperature in (*temperatures, 1.0):
        points = _ascend(ensemble, points, temperature, settings)
    return points


def strongest(
    ensemble: Ensemble,
    found: Sequence[AdversarialPoints],
    settings: PolishSettings | None = None,
) -> AdversarialPoints:
    """:func:`best_of` the attacks' points, then :func:`polish`."""
    return polish(ensemble, best_of(found), settings)
