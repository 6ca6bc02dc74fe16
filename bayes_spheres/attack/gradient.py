"""The paper's attack (Appendix B): projected gradient ascent on each sphere.

The attack is projected gradient ascent over a score function (cleverhans' shape): take a
plain gradient step on ``x``, then project back onto the sphere, ``x <- r x / |x|``.
Each restart stops by itself once its best score has not improved by more than ``tol`` for
``patience`` steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres.attack.points import AdversarialPoints, project, random_starts
from bayes_spheres.ensemble import Ensemble, log_mean_sigmoid, wrong_class_sign

log = logging.getLogger(__name__)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x [k, D], rows [k]) -> [k]``: what the attacker maximises at restarts ``rows``."""


class Objective(StrEnum):
    LOGIT = "logit"  # one model: the wrong-class logit (the sigmoid saturates)
    JENSEN = "jensen"  # ensembles, warm-up: mean_s log sigmoid(+-a_s), a lower bound
    LOG_MEAN_SIGMOID = "log_mean_sigmoid"  # ensembles: log mean_s sigmoid(+-a_s)


def projected_gradient_ascent(
    score: ScoreFn,
    x0: Tensor,
    radius: Tensor,
    step_size: float,
    max_steps: int,
    tol: float = 0.0,
    patience: int | None = 10,
    backtrack: bool = True,
    desc: str | None = None,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Maximise ``score`` over spheres, all restarts as one batch; returns best ``x`` and scores.

    A restart whose step does not increase its score keeps its point and halves its step
    size (``backtrack``); with ``backtrack=False`` every step is taken, as in the paper.
    ``patience=None`` runs all ``max_steps`` (used for the warm-up).
    """
    k = x0.shape[0]
    rows = torch.arange(k, device=x0.device)
    x = project(x0.detach(), radius)
    with torch.no_grad():
        f = score(x, rows)
    best_x, best = x.clone(), f.clone()
    eta = torch.full_like(f, step_size)
    since = torch.zeros(k, dtype=torch.long, device=x.device)
    active = torch.ones(k, dtype=torch.bool, device=x.device)
    bar = tqdm(range(max_steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for _ in bar:
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        xa = x[idx].requires_grad_(True)
        (g,) = torch.autograd.grad(score(xa, idx).sum(), xa)
        with torch.no_grad():
            x_new = project(xa + eta[idx, None] * g, radius[idx])
            f_new = score(x_new, idx)
            ok = f_new > f[idx] if backtrack else torch.ones_like(f_new, dtype=torch.bool)
            x[idx[ok]], f[idx[ok]] = x_new[ok], f_new[ok]
            eta[idx[~ok]] *= 0.5
            fa = f[idx]
            better = fa > best[idx]
            noticeable = fa > best[idx] + tol
            best_x[idx[better]] = x[idx[better]]
            best[idx[better]] = fa[better]
            since[idx] = torch.where(noticeable, 0, since[idx] + 1)
            if patience is not None:
                active[idx] = since[idx] < patience
        bar.set_postfix(active=int(active.sum()), refresh=False)
    bar.close()
    return best_x.detach(), best


def ensemble_score(ensemble: Ensemble, label: Tensor, objective: Objective) -> ScoreFn:
    """The attacker's objective for the wrong class of each restart's sphere."""
    sign = wrong_class_sign(label)

    def score(x: Tensor, rows: Tensor) -> Tensor:
        a = sign[rows, None] * ensemble.logits(x)  # wrong-class activations [k, S]
        if objective is Objective.LOGIT:
            return a.mean(-1)
        if objective is Objective.JENSEN:
            return F.logsigmoid(a).mean(-1)
        return log_mean_sigmoid(a)

    return score


def pgd(
    ensemble: Ensemble,
    radii: tuple[float, float],
    restarts_per_sphere: int = 100,
    step_size: float = 0.01,
    warmup_steps: int = 300,
    max_steps: int = 5000,
    tol: float = 1e-6,
    patience: int = 10,
    backtrack: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> AdversarialPoints:
    """The paper's attack: random restarts on each sphere, projected gradient ascent.

    One model maximises its wrong-class logit. An ensemble maximises ``log_mean_sigmoid`` of
    the wrong class after ``warmup_steps`` on the Jensen bound ``mean_s log sigmoid``.
    """
    gen = torch.Generator().manual_seed(seed)
    dtype, device = ensemble.w.dtype, ensemble.w.device
    x0, radius, label = (
        t.to(device) for t in random_starts(restarts_per_sphere, ensemble.dim, radii, gen, dtype)
    )
    common = dict(
        radius=radius, step_size=step_size, tol=tol, backtrack=backtrack, progress=progress
    )
    # (objective, steps, patience): one model ascends its logit; an ensemble warms up on the
    # Jensen bound for a fixed number of steps, then ascends log mean sigmoid.
    if ensemble.size == 1:
        stages = [(Objective.LOGIT, max_steps, patience)]
    else:
        stages = [(Objective.JENSEN, warmup_steps, None)] if warmup_steps > 0 else []
        stages.append((Objective.LOG_MEAN_SIGMOID, max_steps, patience))
    x = x0
    for objective, steps, stop_after in stages:
        x, _ = projected_gradient_ascent(
            ensemble_score(ensemble, label, objective),
            x,
            max_steps=steps,
            patience=stop_after,
            desc=f"attack ({objective.value})",
            **common,
        )
    return AdversarialPoints(x, radius, label, ensemble.wrong_prob(x, label))
