"""A certified upper bound on an ensemble's worst wrong-class probability on each sphere.

On a sphere of radius ``r`` the point ``u = x^2`` ranges over the simplex
``{u >= 0, sum u = r^2}`` and every member's wrong-class activation ``z_s(u)`` is linear in
``u`` (docs/paper.md, "Attack"), so the attacker maximises

    F(u) = mean_s sigmoid(z_s(u))

over a simplex. ``z_s`` takes its extremes ``[lo_s, hi_s]`` at vertices. Replacing each
sigmoid by a concave function ``env_s >= sigmoid`` on ``[lo_s, hi_s]`` (its concave envelope:
a tangent line through ``(lo_s, sigmoid(lo_s))`` up to the tangent point, the sigmoid beyond)
gives a concave ``G >= F``. Frank-Wolfe ascends ``G`` over the simplex; at every iterate
``u_k`` concavity gives ``max G <= G(u_k) + max_v grad G(u_k) . (v - u_k)`` (the duality gap,
``v`` over the vertices), a bound valid whether or not the ascent has converged
(Jaggi 2013, "Revisiting Frank-Wolfe"). The bound reported is the least of these and of the
mean over members of each member's own worst case (``bayes_spheres/metrics.py``), which
``G``'s bound can only improve on.

Why the envelope majorises: with ``h(t) = sigmoid'(t) (t - lo) - (sigmoid(t) - sigmoid(lo))``,
decreasing on ``t >= 0``, any ``t >= 0`` with ``h(t) <= 0`` has a tangent line that lies above
``(lo, sigmoid(lo))`` and above the sigmoid on ``[0, t]`` (concave there) and on ``[lo, 0]``
(the sigmoid minus the line is convex there and not positive at either end). Bisection keeps
such a ``t`` (the bracket's upper end). Where ``h(hi) >= 0`` the chord from ``lo`` to ``hi``
is the envelope: the chord's slope from ``lo`` rises with its end up to ``hi``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bayes_spheres.attack.objectives import linear_in_u
from bayes_spheres.attack.vertices import vertex_logits
from bayes_spheres.ensemble import Ensemble

BISECTIONS = 80  # bracket width (hi - lo) / 2**80: below float64's resolution
MARGIN = 1e-9  # added to the envelope's bound: float64 rounding in its sums is far below it


def _slope(z: Tensor) -> Tensor:
    return torch.sigmoid(z) * torch.sigmoid(-z)


@dataclass(frozen=True)
class Envelope:
    """A concave majorant of the sigmoid on ``[lo, hi]``, per member: the line
    ``sigmoid(t) + slope (z - t)`` below the breakpoint ``t``, the sigmoid above it."""

    breakpoint: Tensor  # [S]
    slope: Tensor  # [S]

    @classmethod
    def of(cls, lo: Tensor, hi: Tensor) -> Envelope:
        """The concave envelope of the sigmoid on each ``[lo_s, hi_s]`` (module docstring)."""

        def h(t: Tensor) -> Tensor:
            return _slope(t) * (t - lo) - (torch.sigmoid(t) - torch.sigmoid(lo))

        left, right = lo.clamp(min=0.0), hi.clone()
        for _ in range(BISECTIONS):
            mid = 0.5 * (left + right)
            above = h(mid) > 0  # the root lies beyond mid
            left, right = torch.where(above, mid, left), torch.where(above, right, mid)
        chord = (lo < 0) & (h(hi) >= 0)
        span = (hi - lo).clamp(min=torch.finfo(hi.dtype).tiny)
        chord_slope = (torch.sigmoid(hi) - torch.sigmoid(lo)) / span
        breakpoint = torch.where(chord, hi, torch.where(lo >= 0, lo, right))
        slope = torch.where(chord, chord_slope, _slope(breakpoint))
        return cls(breakpoint, slope)

    def value_and_derivative(self, z: Tensor) -> tuple[Tensor, Tensor]:
        line = z <= self.breakpoint  # the chord at its end: its slope, not the sigmoid's
        value = torch.where(
            line,
            torch.sigmoid(self.breakpoint) + self.slope * (z - self.breakpoint),
            torch.sigmoid(z),
        )
        return value, torch.where(line, self.slope, _slope(z))


@dataclass(frozen=True)
class SphereBound:
    """The certificate on one sphere: ``bound`` (no point of the sphere has a larger
    ensemble wrong-class probability), ``members_bound`` (the mean of each member's own worst
    case), ``found`` (the ensemble's probability at the best Frank-Wolfe iterate, a point of
    the sphere), ``relaxed`` (the envelope's best value found: ``bound - relaxed`` is what
    more Frank-Wolfe steps could still gain, ``relaxed - found`` what the envelope loses)
    and ``gap`` (``bound - found``)."""

    bound: float
    members_bound: float
    found: float
    relaxed: float
    iterations: int

    @property
    def gap(self) -> float:
        return self.bound - self.found

    def as_dict(self) -> dict[str, float]:
        return {
            "certified_bound": self.bound,
            "members_bound": self.members_bound,
            "certificate_point": self.found,
            "certificate_relaxed": self.relaxed,
            "certificate_gap": self.gap,
            "certificate_iterations": self.iterations,
        }


def sphere_bound(
    ensemble: Ensemble,
    radius: float,
    label: int,
    start: Tensor | None = None,
    max_iterations: int = 300,
    tol: float = 1e-3,
    line_search_steps: int = 40,
) -> SphereBound:
    """Frank-Wolfe on the envelope ``G`` over the sphere's simplex, from ``start`` (a point
    ``x`` on the sphere, e.g. the best an attack found; default the best vertex), until the
    bound is within ``tol`` of ``G``'s value or after ``max_iterations``."""
    w_u, c = linear_in_u(ensemble)  # a = u @ w_u + c, w_u [D, S]
    sign = 1.0 - 2.0 * label  # wrong_class_sign for one label
    r2 = radius**2
    at_vertices = vertex_logits(ensemble, radius, label).T  # z at u = r^2 e_j: [D, S]
    lo, hi = at_vertices.min(0).values, at_vertices.max(0).values
    members_bound = float(torch.sigmoid(hi).mean())
    envelope = Envelope.of(lo, hi)
    n = ensemble.size

    if start is None:
        u = torch.zeros(ensemble.dim, dtype=w_u.dtype, device=w_u.device)
        u[int(torch.sigmoid(at_vertices).mean(1).argmax())] = r2
    else:
        u = start.square() * (r2 / start.square().sum())
    z = sign * (u @ w_u + c)
    envelope_bound, found, relaxed = float("inf"), float(torch.sigmoid(z).mean()), 0.0
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        value, derivative = envelope.value_and_derivative(z)
        grad = sign * (w_u @ derivative) / n  # dG/du [D]
        best = int(grad.argmax())
        g_value = float(value.mean())
        gap = float(r2 * grad[best] - grad @ u)
        envelope_bound = min(envelope_bound, g_value + max(gap, 0.0))
        found = max(found, float(torch.sigmoid(z).mean()))
        relaxed = max(relaxed, g_value)
        if envelope_bound - g_value <= tol:
            break
        step = _line_search(envelope, z, at_vertices[best], line_search_steps)
        u = (1 - step) * u
        u[best] += step * r2
        z = (1 - step) * z + step * at_vertices[best]
    bound = min(members_bound, envelope_bound + MARGIN)
    return SphereBound(bound, members_bound, found, relaxed, iterations)


def _line_search(envelope: Envelope, z: Tensor, z_vertex: Tensor, steps: int) -> float:
    """The step in [0, 1] towards the vertex that maximises the concave ``G`` on the segment
    (bisection on the sign of its derivative)."""
    left, right = 0.0, 1.0
    for _ in range(steps):
        mid = 0.5 * (left + right)
        _, derivative = envelope.value_and_derivative((1 - mid) * z + mid * z_vertex)
        if float(derivative @ (z_vertex - z)) > 0:
            left = mid
        else:
            right = mid
    return 0.5 * (left + right)
