"""The vertices of the simplex ``u = x^2``: the exact single-model optimum (docs/paper.md,
"Attack")."""

from __future__ import annotations

import torch
from torch import Tensor

from bayes_spheres.attack.points import AdversarialPoints
from bayes_spheres.data import INNER, OUTER
from bayes_spheres.ensemble import Ensemble


def vertex_logits(ensemble: Ensemble, radius: float, label: int) -> Tensor:
    """Wrong-class activation of every member at every vertex ``r e_j`` of the sphere: [S, D].

    On a sphere ``u = x^2`` ranges over the simplex ``sum u = r^2`` and the activation is linear
    in ``u``, so one model's worst point is the best of these D vertices (docs/paper.md, "Attack").
    """
    f = ensemble.features
    a = (
        radius**2 * ensemble.w / f.std
        - (ensemble.w @ (f.mean / f.std))[:, None]
        + ensemble.b[:, None]
    )
    return (1.0 - 2.0 * label) * a


def vertex(ensemble: Ensemble, radii: tuple[float, float], seed: int = 0) -> AdversarialPoints:
    """The best vertex of each sphere for the ensemble: exact for one model, a bound otherwise.

    Returns one point per sphere (inner first). For S > 1 members the ensemble's probability
    is evaluated at all D vertices and the best is kept; the true ensemble optimum may lie
    off the vertices, so this is then a lower bound on the worst case.
    """
    del seed  # deterministic and instant
    dtype, device = ensemble.w.dtype, ensemble.w.device
    xs, labels = [], []
    for label, r in zip((INNER, OUTER), radii, strict=True):
        wrong = torch.sigmoid(vertex_logits(ensemble, r, label)).mean(0)  # [D]
        x = torch.zeros(ensemble.dim, dtype=dtype, device=device)
        x[int(wrong.argmax())] = r
        xs.append(x)
        labels.append(label)
    x = torch.stack(xs)
    radius = torch.tensor(radii, dtype=dtype, device=device)
    label = torch.tensor(labels, dtype=dtype, device=device)
    return AdversarialPoints(x, radius, label, ensemble.wrong_prob(x, label))
