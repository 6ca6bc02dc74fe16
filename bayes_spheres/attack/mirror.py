"""A structure-aware attack: mirror ascent on the simplex ``u = x^2``.

On a sphere of radius ``r`` the squared coordinates ``u = x^2`` range over the scaled simplex
``{u >= 0, sum_i u_i = r^2}`` and every member's activation is linear in ``u``:
``a_s(u) = sum_i w_si (u_i - m_i) / sd_i + b_s = u @ W' + c`` (paper, Appendix B; docs/paper.md,
Attack). So the attack ascends in ``u`` directly with exponentiated gradient (Kivinen &
Warmuth 1997), i.e. mirror ascent with the entropy as mirror map (Beck & Teboulle 2003):
``u <- u * exp(eta g) / Z``, renormalised to sum to ``r^2``. It needs no projection and no
autograd: the gradient in ``u`` is ``W'`` times the objective's derivative in the
activations, two ``[k, D] x [D, S]`` matmuls per step.

Stages follow the paper's attack: one model ascends its wrong-class logit (linear in ``u``,
so the ascent runs to the best vertex); an ensemble first ascends the Jensen bound
``mean_s log sigmoid(+-a_s)``, concave in ``u`` with one maximiser, then the real objective
``log mean_s sigmoid(+-a_s)``, which is not concave, so some restarts start near the
ensemble's best vertices instead. The point is mapped back with ``x = sign(x0) sqrt(u)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres import checks
from bayes_spheres.attack.objectives import ValueGradFn, objective_in_u
from bayes_spheres.attack.points import (
    AdversarialPoints,
    Patience,
    ensemble_starts,
    project,
    stages,
)
from bayes_spheres.attack.vertices import vertex_logits
from bayes_spheres.data import INNER, OUTER
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.progress import bars_disabled

# A step moves log(u_i / u_j) by at most ``eta``; past ~1e3 every coordinate behind the
# leader underflows to 0 in float64, so a larger step changes nothing but risks inf - inf.
_MAX_STEP = 1e3


def mirror_ascent(
    value_and_grad: ValueGradFn,
    u0: Tensor,
    radius: Tensor,
    step_size: float,
    max_steps: int,
    tol: float,
    patience: int,
    step_growth: float = 2.0,
    desc: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Maximise over simplices ``sum u = r^2`` by exponentiated gradient; returns ``u`` and values.

    Works on ``theta = log u`` (kept normalised), so ``u`` stays strictly positive and large
    steps cannot overflow. A step is ``theta += eta g / (max g - min g)``: the log-ratio of
    any two coordinates moves by at most ``eta``, whatever the gradient's scale (a constant
    added to ``g`` does not move ``u``, so the spread is the natural scale). A restart takes a
    step only if it increases its value, then multiplies its ``eta`` by ``step_growth``;
    otherwise it keeps its point and halves ``eta``. Every accepted step is an ascent step,
    and on a linear objective the growing steps run to the best vertex within float precision.
    A restart stops once its value has not improved by more than ``tol`` for ``patience``
    steps, or after ``max_steps``.
    """
    k = u0.shape[0]
    rows = torch.arange(k, device=u0.device)
    log_r2 = (2.0 * radius.log())[:, None]
    theta = torch.log(u0.clamp_min(torch.finfo(u0.dtype).tiny)) - log_r2
    theta = theta - torch.logsumexp(theta, -1, keepdim=True)
    f, g = value_and_grad(torch.exp(theta + log_r2), rows)
    restarts = Patience(f, tol, patience)
    eta = torch.full_like(f, step_size)
    bar = tqdm(range(max_steps), desc=desc, disable=bars_disabled(), leave=False, mininterval=1.0)
    for _ in bar:
        idx = restarts.active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        ga = g[idx]
        spread = (ga.max(-1).values - ga.min(-1).values).clamp_min(torch.finfo(ga.dtype).tiny)
        trial = theta[idx] + (eta[idx] / spread)[:, None] * ga
        trial = trial - torch.logsumexp(trial, -1, keepdim=True)
        f_new, g_new = value_and_grad(torch.exp(trial + log_r2[idx]), idx)
        ok = f_new > f[idx]
        acc = idx[ok]
        theta[acc], f[acc], g[acc] = trial[ok], f_new[ok], g_new[ok]
        eta[acc] = (eta[acc] * step_growth).clamp_max(_MAX_STEP)
        eta[idx[~ok]] *= 0.5
        restarts.update(idx, f[idx])
        bar.set_postfix(active=int(restarts.active.sum()), refresh=False)
    bar.close()
    return torch.exp(theta + log_r2), f


def vertex_starts_u(
    ensemble: Ensemble, radius: float, label: int, count: int, u_random: Tensor, blend: float
) -> Tensor:
    """``count`` starts [count, D] at the ensemble's best vertices of one sphere, moved
    slightly inside: ``(1 - blend) r^2 e_j + blend u_random`` (mirror ascent cannot leave a
    face where ``u_i = 0``, so no coordinate may start at exactly 0)."""
    wrong = torch.sigmoid(vertex_logits(ensemble, radius, label)).mean(0)  # [D]
    top = wrong.topk(count).indices
    corner = torch.zeros_like(u_random)
    corner[torch.arange(count, device=corner.device), top] = radius**2
    return (1.0 - blend) * corner + blend * u_random


@dataclass(frozen=True)
class SimplexSettings:
    """Mirror ascent's settings (``conf/attack/simplex.yaml``), checked when made; calling it
    attacks (:func:`simplex`). ``step_size``: the first step, the largest change of
    ``log(u_i / u_j)``, adapted per restart (times ``step_growth`` after an ascent step,
    halved after a rejected one); ``warmup_steps`` on the Jensen bound first (ensembles,
    random starts only); ``tol`` and ``patience`` as :class:`~.gradient.PGDSettings`'s;
    ``vertex_starts`` of the restarts per sphere start at the best vertices instead of
    random points (0: every restart starts where PGD's does, so the two compare; at the paper
    scale vertex starts ended lower than random ones, docs/adversarial-error.md), moved
    ``vertex_blend`` of the way towards a random start (``u_i = 0`` is a dead end)."""

    name: ClassVar[str] = "simplex"
    restarts_per_sphere: int = 100
    step_size: float = 1.0
    step_growth: float = 2.0
    warmup_steps: int = 500
    max_steps: int = 5000
    tol: float = 1e-9
    patience: int = 10
    vertex_starts: int = 0
    vertex_blend: float = 0.01

    def __post_init__(self) -> None:
        checks.integer("restarts_per_sphere", self.restarts_per_sphere, minimum=1)
        checks.positive("step_size", self.step_size)
        checks.at_least("step_growth", self.step_growth, 1.0)
        checks.integer("warmup_steps", self.warmup_steps)
        checks.integer("max_steps", self.max_steps, minimum=1)
        checks.at_least("tol", self.tol, 0.0)
        checks.integer("patience", self.patience, minimum=1)
        checks.integer("vertex_starts", self.vertex_starts)
        if self.vertex_starts > self.restarts_per_sphere:
            rule = f"must be between 0 and restarts_per_sphere={self.restarts_per_sphere}"
            raise checks.SettingError("vertex_starts", self.vertex_starts, rule)
        checks.fraction("vertex_blend", self.vertex_blend)

    def __call__(
        self, ensemble: Ensemble, radii: tuple[float, float], seed: int = 0
    ) -> AdversarialPoints:
        return simplex(ensemble, radii, seed, self)


def simplex(
    ensemble: Ensemble,
    radii: tuple[float, float],
    seed: int = 0,
    settings: SimplexSettings | None = None,
    **overrides: Any,
) -> AdversarialPoints:
    """Mirror ascent on ``u = x^2`` from random starts and near the best vertices.

    Per sphere (inner first, then outer, as ``pgd``) the first ``restarts_per_sphere -
    vertex_starts`` restarts start at ``pgd``'s random points (``u0 = x0^2``, same seed) and,
    for an ensemble, ascend the Jensen bound for up to ``warmup_steps`` before the real
    objective; the last ``vertex_starts`` start at the ensemble's best vertices of that
    sphere, blended into the interior by ``vertex_blend``, and ascend the real objective
    directly (the warm-up would pull them to the Jensen maximiser). One model ascends its
    wrong-class logit and ends at the best vertex, the exact optimum. ``x = sign(x0) sqrt(u)``.
    ``settings``: :class:`SimplexSettings` (keyword ``overrides`` replace single ones).
    """
    s = replace(settings or SimplexSettings(), **overrides)
    restarts_per_sphere, vertex_starts, vertex_blend = (
        s.restarts_per_sphere, s.vertex_starts, s.vertex_blend
    )  # fmt: skip
    step_size, step_growth, tol, patience = s.step_size, s.step_growth, s.tol, s.patience
    warmup_steps, max_steps = s.warmup_steps, s.max_steps
    if vertex_starts > ensemble.dim:  # the one check that needs the ensemble
        raise ValueError(
            f"vertex_starts={vertex_starts}: must be between 0 and min(restarts_per_sphere, "
            f"D) = {min(restarts_per_sphere, ensemble.dim)}"
        )
    x0, radius, label = ensemble_starts(ensemble, restarts_per_sphere, radii, seed)
    u = x0.square()
    n_random = restarts_per_sphere - vertex_starts
    from_vertex = torch.zeros_like(label, dtype=torch.bool)
    for i, (sphere, r) in enumerate(zip((INNER, OUTER), radii, strict=True)):
        rows = slice(i * restarts_per_sphere + n_random, (i + 1) * restarts_per_sphere)
        if vertex_starts:
            u[rows] = vertex_starts_u(ensemble, r, sphere, vertex_starts, u[rows], vertex_blend)
        from_vertex[rows] = True

    common = dict(step_size=step_size, tol=tol, patience=patience, step_growth=step_growth)
    everyone = torch.ones_like(from_vertex)
    for objective, steps, warmup in stages(ensemble, warmup_steps, max_steps):
        rows = ~from_vertex if warmup else everyone  # the warm-up would pull vertex starts away
        if steps > 0 and rows.any():
            u[rows], _ = mirror_ascent(
                objective_in_u(ensemble, label[rows], objective),
                u[rows],
                radius[rows],
                max_steps=steps,
                desc=f"simplex ({objective.value})",
                **common,
            )
    x = project(torch.where(x0 < 0, -1.0, 1.0) * u.sqrt(), radius)
    return AdversarialPoints(x, radius, label, ensemble.wrong_prob(x, label))
