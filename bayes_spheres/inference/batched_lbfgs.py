"""L-BFGS for many independent problems at once (Nocedal & Wright 2006, Alg. 7.4 and 7.5).

Each row of ``x`` [B, P] is its own problem with its own curvature history and its own
backtracking (Armijo) line search. Only the rows still working are evaluated: the objective
takes the rows' indices, so one call evaluates many problems with dense matrix products.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

BatchedObjectiveFn = Callable[[Tensor, Tensor], Tensor]
"""``objective(x [k, P], rows [k]) -> [k]``: the objectives of problems ``rows`` at ``x``."""


def value_and_grad(objective: BatchedObjectiveFn, x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f = objective(x, rows)
        (g,) = torch.autograd.grad(f.sum(), x)
    return f.detach(), g


def two_loop_direction(
    g: Tensor, s: Tensor, y: Tensor, rho: Tensor, gamma: Tensor, order: list[int]
) -> Tensor:
    """``-H g`` row by row by the two-loop recursion; ``order`` lists history slots oldest
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


def backtracking(
    objective: BatchedObjectiveFn,
    x: Tensor,
    f: Tensor,
    d: Tensor,
    gd: Tensor,
    rows: Tensor,
    c1: float,
    max_halvings: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Armijo backtracking from ``t = 1``, row by row; only rows still searching are evaluated.
    Returns ``(x_new, f_new, g_new, ok)``; rows with ``ok`` false found no decrease."""
    x_new, f_new, g_new = x.clone(), f.clone(), torch.zeros_like(x)
    t = torch.ones_like(f)
    ok = torch.zeros_like(f, dtype=torch.bool)
    todo = torch.arange(len(f), device=f.device)
    for _ in range(max_halvings):
        xt = x[todo] + t[todo, None] * d[todo]
        ft, gt = value_and_grad(objective, xt, rows[todo])
        moved = (xt != x[todo]).any(-1)  # a step lost to rounding is no decrease
        good = torch.isfinite(ft) & (ft <= f[todo] + c1 * t[todo] * gd[todo]) & moved
        done = todo[good]
        x_new[done], f_new[done], g_new[done], ok[done] = xt[good], ft[good], gt[good], True
        todo = todo[~good]
        if todo.numel() == 0:
            break
        t[todo] *= 0.5
    return x_new, f_new, g_new, ok


def batched_lbfgs(
    objective: BatchedObjectiveFn,
    x0: Tensor,
    max_iter: int = 1000,
    history_size: int = 10,
    tolerance_grad: float = 1e-8,
    c1: float = 1e-4,
    max_halvings: int = 30,
) -> tuple[Tensor, dict]:
    """Minimise every row's objective; returns the minimisers [B, P] and info.

    A row stops when its largest gradient entry is at most ``tolerance_grad``, or when its
    line search finds no decrease (it is then at the optimum to rounding, or stuck).
    """
    b, p = x0.shape
    x = x0.detach().clone()
    every = torch.arange(b, device=x.device)
    f, g = value_and_grad(objective, x, every)
    s = x.new_zeros(b, history_size, p)
    y = x.new_zeros(b, history_size, p)
    rho = x.new_zeros(b, history_size)
    gamma = 1.0 / g.abs().sum(-1).clamp(min=1.0)
    active = g.abs().amax(-1) > tolerance_grad
    evaluations = b
    it = 0
    while active.any() and it < max_iter:
        it += 1
        a = active.nonzero().squeeze(-1)
        order = [(it - 2 - k) % history_size for k in range(min(it - 1, history_size))][::-1]
        d = two_loop_direction(g[a], s[a], y[a], rho[a], gamma[a], order)
        ga = g[a]
        gd = (ga * d).sum(-1)
        uphill = gd >= 0
        d[uphill] = -ga[uphill]
        gd = torch.where(uphill, -(ga * ga).sum(-1), gd)
        x_new, f_new, g_new, ok = backtracking(objective, x[a], f[a], d, gd, a, c1, max_halvings)
        evaluations += len(a)
        ds, dy = x_new - x[a], g_new - ga
        sy, yy = (ds * dy).sum(-1), (dy * dy).sum(-1)
        keep = ok & (sy > 1e-12 * yy.sqrt() * ds.norm(dim=-1))
        slot = (it - 1) % history_size
        s[a, slot] = torch.where(keep[:, None], ds, 0.0)
        y[a, slot] = torch.where(keep[:, None], dy, 0.0)
        rho[a, slot] = torch.where(keep, 1.0 / sy.where(keep, 1.0), 0.0)
        gamma[a] = torch.where(keep, sy / yy.where(keep, 1.0), gamma[a])
        moved = a[ok]
        x[moved], f[moved], g[moved] = x_new[ok], f_new[ok], g_new[ok]
        active[a[~ok]] = False
        active[moved] = g[moved].abs().amax(-1) > tolerance_grad
    converged = g.abs().amax(-1) <= tolerance_grad
    return x, {
        "iterations": it,
        "converged": int(converged.sum()),
        "problems": b,
        "grad_max": float(g.abs().amax()),
    }
