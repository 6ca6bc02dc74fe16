"""What an attacker maximises on the spheres, as a function of ``x`` or of ``u = x^2``.

Every member's activation is linear in ``u``: ``a = u @ W' + c`` (docs/paper.md, "Attack"), so each
objective's gradient is two ``[k, D] x [D, S]`` matmuls without autograd: in ``u`` it is
``(df/da) @ W'^T``, in ``x`` (chain rule through ``u = x^2``) ``2 x`` times that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.ensemble import Ensemble, log_mean_sigmoid, wrong_class_sign

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x [k, D], rows [k]) -> [k]``: what the attacker maximises at restarts ``rows``."""


ValueGradFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``f(p [k, D], rows [k]) -> (value [k], gradient [k, D])`` at points ``p`` (``x`` or ``u``)
of restarts ``rows``."""


class Objective(StrEnum):
    LOGIT = "logit"  # one model: the wrong-class logit (the sigmoid saturates)
    JENSEN = "jensen"  # ensembles, warm-up: mean_s log sigmoid(+-a_s), a lower bound
    LOG_MEAN_SIGMOID = "log_mean_sigmoid"  # ensembles: log mean_s sigmoid(+-a_s)


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


def linear_in_u(ensemble: Ensemble) -> tuple[Tensor, Tensor]:
    """``W'`` [D, S] and ``c`` [S] with activations ``a = u @ W' + c`` at ``u = x^2``."""
    f = ensemble.features
    w_std = ensemble.w / f.std
    return w_std.T.contiguous(), ensemble.b - w_std @ f.mean


def objective_in_u(ensemble: Ensemble, label: Tensor, objective: Objective) -> ValueGradFn:
    """The attacker's objective (same values as ``ensemble_score``) and its gradient in ``u``.

    With wrong-class activations ``z = sign * a`` [k, S] the derivatives in ``z`` are
    ``1/S`` (logit), ``sigmoid(-z)/S`` (Jensen bound) and ``softmax_s(log sigmoid z)
    sigmoid(-z)`` (log mean sigmoid); the chain rule through ``a = u @ W' + c`` gives
    ``sign * (df/dz) @ W'^T``.
    """
    w_u, c = linear_in_u(ensemble)
    sign = wrong_class_sign(label)
    n = ensemble.size

    def value_and_grad(u: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        s = sign[rows, None]
        z = s * (u @ w_u + c)  # [k, S]
        if objective is Objective.LOGIT:
            value = z.mean(-1)
            dz = torch.full_like(z, 1.0 / n)
        else:
            log_sig = F.logsigmoid(z)
            if objective is Objective.JENSEN:
                value = log_sig.mean(-1)
                dz = torch.sigmoid(-z) / n
            else:
                value = torch.logsumexp(log_sig, dim=-1) - math.log(n)
                dz = torch.softmax(log_sig, dim=-1) * torch.sigmoid(-z)
        return value, s * (dz @ w_u.T)

    return value_and_grad


def objective_in_x(ensemble: Ensemble, label: Tensor, objective: Objective) -> ValueGradFn:
    """``ensemble_score`` and its gradient in ``x``, without autograd: ``2 x * grad_u``."""
    in_u = objective_in_u(ensemble, label, objective)

    def value_and_grad(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        value, grad_u = in_u(x.square(), rows)
        return value, 2.0 * x * grad_u

    return value_and_grad


def autograd_value_and_grad(score: ScoreFn) -> ValueGradFn:
    """Any ``score`` and its gradient by autograd (for objectives without a closed form)."""

    def value_and_grad(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            value = score(xg, rows)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        return value.detach(), grad

    return value_and_grad
