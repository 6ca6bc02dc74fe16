"""Table 1's columns (docs/paper.md, "Metrics") and the exact worst case the attack is checked
against.

``adversarial_error`` is the mean, over all restarts on both spheres, of the ensemble's
probability of the wrong class at the points the attack found; ``docs/adversarial-error.md``
measures the other readings and says why this one is reported. Each sphere is reported too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayes_spheres.attack import AdversarialPoints, vertex_logits
from bayes_spheres.data import INNER, OUTER
from bayes_spheres.ensemble import Ensemble

SPHERES = {"inner": INNER, "outer": OUTER}


def true_class_prob(ensemble: Ensemble, x: Tensor, y: Tensor, batch_size: int = 4096) -> Tensor:
    return 1.0 - ensemble.wrong_prob(x, y, batch_size)


def avg_confidence(ensemble: Ensemble, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Mean over the validation set of the ensemble's probability of the true class."""
    return float(true_class_prob(ensemble, x, y, batch_size).mean())


def validation_error(ensemble: Ensemble, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Fraction of validation points whose true class gets probability below one half."""
    return float((true_class_prob(ensemble, x, y, batch_size) < 0.5).double().mean())


def adversarial_error(points: AdversarialPoints) -> float:
    """Mean wrong-class probability at the attack's points, over restarts on both spheres."""
    return float(points.wrong_prob.mean())


def adversarial_error_max(points: AdversarialPoints) -> float:
    return float(points.wrong_prob.max())


def adversarial_error_by_sphere(points: AdversarialPoints) -> dict[str, dict[str, float]]:
    """``{"inner": {"mean", "max"}, "outer": {...}}`` of the wrong-class probability."""
    out = {}
    for name, label in SPHERES.items():
        p = points.wrong_prob[points.label == label]
        out[name] = {"mean": float(p.mean()), "max": float(p.max())} if p.numel() else None
    return out


def resampled_error(points: AdversarialPoints, second: Ensemble) -> float:
    """Adversarial error of an independent second ensemble at the first one's points."""
    return adversarial_error(points.rescore(second))


def worst_case_by_sphere(
    ensemble: Ensemble, radii: tuple[float, float]
) -> dict[str, dict[str, float]]:
    """Per sphere: the best vertex for the ensemble, and a certified upper bound.

    ``best_vertex`` is the ensemble's wrong-class probability at its worst vertex ``r e_j``
    (a lower bound on the worst case; exact for one model). ``certified_bound`` is the mean
    over members of each member's own worst case, an upper bound because the max of a mean
    is at most the mean of the maxima. For one model the two are equal.
    """
    out = {}
    for (name, label), r in zip(SPHERES.items(), radii, strict=True):
        p = torch.sigmoid(vertex_logits(ensemble, r, label))  # [S, D]
        out[name] = {
            "best_vertex": float(p.mean(0).max()),
            "certified_bound": float(p.max(1).values.mean()),
        }
    return out
