"""L-BFGS for many independent problems at once (Nocedal & Wright 2006, Alg. 7.4 and 7.5).

Each row of ``x`` [B, P] is its own problem with its own curvature history and its own
backtracking (Armijo) line search; only the objective's evaluation is shared, so one call
evaluates all B problems with dense matrix products.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _value_and_grad(objective: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f = objective(x)
        (g,) = torch.autograd.grad(f.sum(), x)
    return f.detach(), g


def two_loop_direction(
    g: Tensor, s: Tensor, y: Tensor, rho: Tensor, gamma: Tensor, order: list[int]
) -> Tensor:
    """``-H g`` for every row by the two-loop recursion; ``order`` lists history slots oldest
    first. A slot with ``rho == 0`` (empty or rejected pair) is a no-op."""
    q = g.clone()
    alpha = {}
    for i in reversed(order):
        alpha[i] = rho[:, i] * (s[:, i] * q).sum(-1)
        q -= alpha[i][:, None] * y[:, i]
    r = gamma[:, None] * q
    for i in order:
        beta = rho[:, i] * (y[:, i] * r).sum(-1)
        r += s[:, i] * (alpha[i] - beta)[:, None]
    return -r


def batched_lbfgs(
    objective: Callable[[Tensor], Tensor],
    x0: Tensor,
    max_iter: int = 1000,
    history_size: int = 10,
    tolerance_grad: float = 1e-8,
    c1: float = 1e-4,
    max_line_search: int = 40,
) -> tuple[Tensor, dict]:
    """Minimise ``objective(x) -> [B]`` row by row (row b of the output depends only on row b
    of ``x``). Returns the minimisers [B, P] and info (iterations, how many converged)."""
    b, p = x0.shape
    x = x0.detach().clone()
    f, g = _value_and_grad(objective, x)
    s = x.new_zeros(b, history_size, p)
    y = x.new_zeros(b, history_size, p)
    rho = x.new_zeros(b, history_size)
    gamma = 1.0 / g.abs().sum(-1).clamp(min=1.0)
    done = g.abs().amax(-1) <= tolerance_grad
    stalled = torch.zeros_like(done)
    it = 0
    for it in range(1, max_iter + 1):
        if done.all():
            it -= 1
            break
        order = [(it - 1 - k) % history_size for k in range(min(it - 1, history_size))][::-1]
        d = two_loop_direction(g, s, y, rho, gamma, order)
        gd = (g * d).sum(-1)
        uphill = gd >= 0
        d[uphill] = -g[uphill]
        gd = torch.where(uphill, -(g * g).sum(-1), gd)
        d[done] = 0.0
        t = torch.ones_like(f)
        for _ in range(max_line_search):
            x_new = x + t[:, None] * d
            f_new, g_new = _value_and_grad(objective, x_new)
            ok = done | (torch.isfinite(f_new) & (f_new <= f + c1 * t * gd))
            if ok.all():
                break
            t = torch.where(ok, t, 0.5 * t)
        step = ok & ~done
        stalled |= ~ok & ~done
        ds, dy = x_new - x, g_new - g
        sy, yy = (ds * dy).sum(-1), (dy * dy).sum(-1)
        keep = step & (sy > 1e-12 * yy.sqrt() * ds.norm(dim=-1))
        slot = (it - 1) % history_size
        s[:, slot] = torch.where(keep[:, None], ds, 0.0)
        y[:, slot] = torch.where(keep[:, None], dy, 0.0)
        rho[:, slot] = torch.where(keep, 1.0 / sy.where(keep, 1.0), 0.0)
        gamma = torch.where(keep, sy / yy.where(keep, 1.0), gamma)
        x = torch.where(step[:, None], x_new, x)
        f = torch.where(step, f_new, f)
        g = torch.where(step[:, None], g_new, g)
        done |= stalled | (g.abs().amax(-1) <= tolerance_grad)
    converged = g.abs().amax(-1) <= tolerance_grad
    return x, {
        "iterations": it,
        "converged": int(converged.sum()),
        "problems": b,
        "grad_norm_max": float(g.abs().amax()),
    }
