"""The paper's attack (Appendix B): projected gradient ascent on each sphere.

The attack is projected gradient ascent over a score function (cleverhans' shape): take a
plain gradient step on ``x``, then project back onto the sphere, ``x <- r x / |x|``.
Each restart stops by itself once its best score has not improved by more than ``tol`` for
``patience`` steps. The ensemble objectives' gradients come in closed form
(:mod:`.objectives`): a step costs two ``[k, D] x [D, S]`` matmuls instead of autograd's
three (forward, backward, and the new point's score).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres import checks
from bayes_spheres.attack.objectives import (
    Objective,
    ScoreFn,
    ValueGradFn,
    autograd_value_and_grad,
    ensemble_score,
    objective_in_x,
)
from bayes_spheres.attack.points import (
    AdversarialPoints,
    Patience,
    ensemble_starts,
    project,
    stages,
)
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.progress import bars_disabled

__all__ = [
    "Objective",
    "PGDSettings",
    "ScoreFn",
    "ensemble_score",
    "pgd",
    "projected_gradient_ascent",
]

log = logging.getLogger(__name__)


def projected_gradient_ascent(
    score: ScoreFn | None,
    x0: Tensor,
    radius: Tensor,
    step_size: float,
    max_steps: int,
    tol: float = 0.0,
    patience: int | None = 10,
    backtrack: bool = True,
    desc: str | None = None,
    value_and_grad: ValueGradFn | None = None,
) -> tuple[Tensor, Tensor]:
    """Maximise ``score`` over spheres, all restarts as one batch; returns best ``x`` and scores.

    A restart whose step does not increase its score keeps its point and halves its step
    size (``backtrack``); with ``backtrack=False`` every step is taken, as in the paper.
    ``patience=None`` runs all ``max_steps`` (used for the warm-up). The gradient is
    autograd's unless ``value_and_grad`` gives score and gradient together (then ``score``
    may be None); either way a step evaluates one new point, whose gradient is kept for the
    next step.
    """
    if value_and_grad is None:
        if score is None:
            raise ValueError("projected_gradient_ascent needs score or value_and_grad")
        value_and_grad = autograd_value_and_grad(score)
    with torch.no_grad():  # autograd_value_and_grad turns it on for itself
        k = x0.shape[0]
        rows = torch.arange(k, device=x0.device)
        x = project(x0.detach(), radius)
        f, g = value_and_grad(x, rows)
        best_x = x.clone()
        restarts = Patience(f, tol, patience)
        eta = torch.full_like(f, step_size)
        bar = tqdm(
            range(max_steps), desc=desc, disable=bars_disabled(), leave=False, mininterval=1.0
        )
        for _ in bar:
            idx = restarts.active.nonzero().squeeze(-1)
            if idx.numel() == 0:
                break
            x_new = project(x[idx] + eta[idx, None] * g[idx], radius[idx])
            f_new, g_new = value_and_grad(x_new, idx)
            ok = f_new > f[idx] if backtrack else torch.ones_like(f_new, dtype=torch.bool)
            acc = idx[ok]
            x[acc], f[acc], g[acc] = x_new[ok], f_new[ok], g_new[ok]
            eta[idx[~ok]] *= 0.5
            better = restarts.update(idx, f[idx])
            best_x[idx[better]] = x[idx[better]]
            bar.set_postfix(active=int(restarts.active.sum()), refresh=False)
        bar.close()
    return best_x.detach(), restarts.best


@dataclass(frozen=True)
class PGDSettings:
    """The paper's attack's settings (``conf/attack/pgd.yaml`` builds it as the ``attack``
    node), checked when made; calling it attacks (:func:`pgd`). ``restarts_per_sphere``
    random starts per sphere; ``step_size`` (0.01; the paper's 1e-4 for SVI and MCMC);
    ``warmup_steps`` on the Jensen bound first (ensembles only); at most ``max_steps``; a
    restart stops once its best score has not improved by more than ``tol`` for
    ``patience`` steps; ``backtrack`` halves a restart's step when it does not increase its
    score."""

    name: ClassVar[str] = "pgd"
    restarts_per_sphere: int = 100
    step_size: float = 0.01
    warmup_steps: int = 300
    max_steps: int = 5000
    tol: float = 1e-6
    patience: int = 10
    backtrack: bool = True

    def __post_init__(self) -> None:
        checks.integer("restarts_per_sphere", self.restarts_per_sphere, minimum=1)
        checks.positive("step_size", self.step_size)
        checks.integer("warmup_steps", self.warmup_steps)
        checks.integer("max_steps", self.max_steps, minimum=1)
        checks.at_least("tol", self.tol, 0.0)
        checks.integer("patience", self.patience, minimum=1)
        checks.flag("backtrack", self.backtrack)

    def __call__(
        self, ensemble: Ensemble, radii: tuple[float, float], seed: int = 0
    ) -> AdversarialPoints:
        return pgd(ensemble, radii, seed, self)


def pgd(
    ensemble: Ensemble,
    radii: tuple[float, float],
    seed: int = 0,
    settings: PGDSettings | None = None,
    **overrides: Any,
) -> AdversarialPoints:
    """The paper's attack: random restarts on each sphere, projected gradient ascent, with
    ``settings`` (:class:`PGDSettings`; keyword ``overrides`` replace single ones).

    One model maximises its wrong-class logit. An ensemble maximises ``log_mean_sigmoid`` of
    the wrong class after ``warmup_steps`` on the Jensen bound ``mean_s log sigmoid``.
    """
    s = replace(settings or PGDSettings(), **overrides)
    restarts_per_sphere, step_size, tol, patience = (
        s.restarts_per_sphere, s.step_size, s.tol, s.patience
    )  # fmt: skip
    backtrack, warmup_steps, max_steps = s.backtrack, s.warmup_steps, s.max_steps
    x0, radius, label = ensemble_starts(ensemble, restarts_per_sphere, radii, seed)
    common = dict(radius=radius, step_size=step_size, tol=tol, backtrack=backtrack)
    x = x0
    for objective, steps, warmup in stages(ensemble, warmup_steps, max_steps):
        x, _ = projected_gradient_ascent(
            None,
            x,
            max_steps=steps,
            patience=None if warmup else patience,
            desc=f"attack ({objective.value})",
            value_and_grad=objective_in_x(ensemble, label, objective),
            **common,
        )
    return AdversarialPoints(x, radius, label, ensemble.wrong_prob(x, label))
