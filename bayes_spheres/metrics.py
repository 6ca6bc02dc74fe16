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
from bayes_spheres.branch_bound import CertificateSettings, certify_sphere
from bayes_spheres.data import INNER, OUTER, SquaredFeatures
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


def adversarial_error_summary(points: AdversarialPoints) -> dict[str, object]:
    """``{"mean", "max", "by_sphere"}``: the three readings above of one set of points."""
    return {
        "mean": adversarial_error(points),
        "max": adversarial_error_max(points),
        "by_sphere": adversarial_error_by_sphere(points),
    }


def worst_case_by_sphere(
    ensemble: Ensemble,
    radii: tuple[float, float],
    found: AdversarialPoints | None = None,
    settings: CertificateSettings | None = None,
    timed: bool = False,
) -> dict[str, dict[str, object]]:
    """Per sphere: the best vertex for the ensemble, and certified upper bounds.

    ``best_vertex`` is the ensemble's wrong-class probability at its worst vertex ``r e_j``
    (a lower bound on the worst case; exact for one model). ``members_bound`` is the mean
    over members of each member's own worst case, an upper bound because the max of a mean
    is at most the mean of the maxima. ``envelope_bound`` is the concave envelopes' bound on
    the whole simplex (``bayes_spheres/certificate.py``'s relaxation, no branching) and
    ``certified_bound`` what branch and bound (``bayes_spheres/branch_bound.py``, under
    ``settings``) brought it down to, started from the best of ``found`` on that sphere;
    ``certificate_history`` how it fell (``[nodes, bound]``; with ``timed``,
    ``[seconds, nodes, bound]`` and ``certificate_seconds``). For one model all bounds equal
    the best vertex.
    Raises if a bound is below a point that was found (a bound that is not one).
    """
    # The bound in float64 whatever the run's dtype; a found point may exceed it by the
    # run's rounding only.
    exact = Ensemble(
        ensemble.w.double(), ensemble.b.double(), SquaredFeatures(
            ensemble.features.mean.double(), ensemble.features.std.double()
        )
    )  # fmt: skip
    rounding = 64 * torch.finfo(ensemble.w.dtype).eps
    out = {}
    for (name, label), r in zip(SPHERES.items(), radii, strict=True):
        p = torch.sigmoid(vertex_logits(ensemble, r, label))  # [S, D]
        best_vertex = float(p.mean(0).max())
        start, best_found = None, best_vertex
        if found is not None and bool((found.label == label).any()):
            mine = found.label == label
            k = int(found.wrong_prob[mine].argmax())
            start = found.x[mine][k].double()
            best_found = max(best_vertex, float(found.wrong_prob[mine][k]))
        bound = certify_sphere(exact, r, label, start=start, settings=settings)
        if bound.bound < best_found - rounding:
            raise RuntimeError(
                f"certificate on the {name} sphere: bound {bound.bound} below a point found "
                f"({best_found}): the bound is wrong"
            )
        out[name] = {"best_vertex": best_vertex, **bound.as_dict(timed)}
    return out
