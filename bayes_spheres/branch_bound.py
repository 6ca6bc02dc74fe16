"""Branch and bound over the simplex: a certified upper bound on an ensemble's worst
wrong-class probability on one sphere that tightens the longer it runs (the scheme of Udell &
Boyd 2013, "Maximizing a sum of sigmoids": concave envelopes on regions, best-first search).

The problem. With ``u = x^2 / r^2`` on the unit simplex ``Delta`` and ``Z_ds`` member ``s``'s
wrong-class activation at vertex ``d`` (``bayes_spheres/attack/vertices.py``), member ``s``'s
activation at ``u`` is the ``u``-weighted mean ``z_s(u) = sum_d u_d Z_ds`` (docs/paper.md,
"Attack"), and the attacker maximises ``F(u) = mean_s sigmoid(z_s(u))``. All members share
one ``u``: a region of ``u`` narrows every member's range at once.

Each step, and why it keeps the bound valid:

1. **Regions.** A node is a box-simplex ``R = {u in Delta : L <= u <= U}``. A node is split
   on one coordinate at ``c`` into ``u_d <= c`` and ``u_d >= c``, whose union is ``R``; so at
   any moment the open nodes and the discarded ones cover ``Delta``. Before use a box is
   tightened by ``U_d <= 1 - sum_{j != d} L_j`` and ``L_d >= 1 - sum_{j != d} U_j`` (every
   ``u`` in ``R`` obeys both); a node with ``sum L > 1`` or ``sum U < 1`` is empty.
2. **Ranges.** On ``R`` each ``z_s`` lies in ``[lo_s, hi_s]``, its least and greatest value
   there: a linear function on a box-simplex is maximised by giving the mass ``1 - sum L``
   to the coordinates in decreasing order of their coefficient, each up to ``U_d - L_d``
   (the exchange argument of the fractional knapsack, Dantzig 1957), minimised likewise in
   increasing order. Both are widened by ``PAD`` times ``D`` times the largest ``|Z|``,
   more than float64 rounding in sums of ``D`` terms can move them.
3. **Envelope.** ``env_s``, the concave envelope of the sigmoid on ``[lo_s, hi_s]``
   (``bayes_spheres/certificate.py`` proves it majorises the sigmoid there), so on ``R``
   ``F <= G_R(u) = mean_s env_s(z_s(u))``, concave (concave functions of affine maps,
   averaged). Where the ranges shrink, ``env_s`` meets the sigmoid: the relaxation tightens
   as the regions shrink, for all members together.
4. **Node bound.** Frank-Wolfe ascends ``G_R`` on ``R`` (its linear step is the greedy fill
   of step 2); at every iterate ``u_k``, ``max_R G_R <= G_R(u_k) + max_{v in R} g . (v - u_k)``
   with ``g`` a supergradient of ``G_R`` at ``u_k`` (a concave function lies below its tangent
   planes; Jaggi 2013, "Revisiting Frank-Wolfe"): valid at any iterate, converged or not.
   The node's bound is the least of these, of ``mean_s sigmoid(hi_s)`` (each member at its
   own worst on ``R``) and of its parent's bound (``R`` lies in the parent), each plus
   ``MARGIN`` for rounding in the means (a bound without it was found 1e-16 below a grid's
   maximum computed by another path in float64).
5. **Search.** Best-first on the node bound. ``found`` is the largest ``F(u)`` at any point
   evaluated (the attack's point, the best vertex, every Frank-Wolfe iterate): points of
   the sphere, so ``found <= max F``. A node is discarded when its bound is at most
   ``found``: no point in it beats one already found. Hence at every moment
   ``max F <= max(found, largest open bound)``: the anytime bound, returned when the search
   closes the gap to ``tol``, or at the node or time limit.

Branching: the coordinate ``d`` with the largest ``(U_d - L_d) sum_s gap_s |Z_ds - z_s|`` at
the node's relaxed optimum, where ``gap_s = env_s(z_s) - sigmoid(z_s)`` is what member ``s``
loses to its envelope and ``(U_d - L_d) |Z_ds - z_s|`` how far ``u_d`` alone can move its
activation (Udell & Boyd branch on the largest envelope gap); split at the box's midpoint, so
every box side that matters halves.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bayes_spheres import checks
from bayes_spheres.attack.vertices import vertex_logits
from bayes_spheres.certificate import MARGIN, Envelope
from bayes_spheres.ensemble import Ensemble

PAD = 4 * torch.finfo(torch.float64).eps  # per term of a sum of D float64 products
EMPTY = 1e-12  # a box is empty when its lower sides sum above 1 by more than rounding can


@dataclass(frozen=True)
class CertificateSettings:
    """Settings of :func:`certify_sphere`, checked when made.

    :param time_limit_s: seconds per sphere; the best valid bound so far is returned (a
        safety: where it ends the search, the bound depends on the machine's speed).
    :param max_nodes: most regions whose bound is computed (the root is one). The default
        ends the search in a study's runs, so that the same seed gives the same bound
        anywhere, at a cost of a few seconds per region at the paper's scale; more regions
        pay only where members' activation ranges are narrow (``docs/adversarial-error.md``:
        ``scripts/certify.py RUN_DIR --max-nodes N`` rechecks a saved ensemble longer).
    :param tol: stop once the bound is within this of the best point found.
    :param fw_iterations: most Frank-Wolfe steps per region.
    :param fw_tol: stop a region's Frank-Wolfe once its bound is this close to ``G_R``.
    """

    time_limit_s: float = 600.0
    max_nodes: int = 8
    tol: float = 1e-3
    fw_iterations: int = 100
    fw_tol: float = 1e-4

    def __post_init__(self) -> None:
        checked = {
            "time_limit_s": checks.positive("time_limit_s", self.time_limit_s),
            "max_nodes": checks.integer("max_nodes", self.max_nodes, minimum=1),
            "tol": checks.positive("tol", self.tol),
            "fw_iterations": checks.integer("fw_iterations", self.fw_iterations, minimum=1),
            "fw_tol": checks.positive("fw_tol", self.fw_tol),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class SphereCertificate:
    """The certificate on one sphere: no point of it has an ensemble wrong-class probability
    above ``bound``. ``root_bound`` is the envelope's bound on the whole simplex (no branching),
    ``members_bound`` the mean of each member's own worst case, ``found`` the best ``F`` at a
    point the search evaluated, ``x`` that point; ``history`` holds ``(seconds, nodes, bound)``
    as the bound fell (at node counts 1, 2, 4, ... and at the end)."""

    bound: float
    members_bound: float
    root_bound: float
    found: float
    x: Tensor
    nodes: int
    open_nodes: int
    seconds: float
    history: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.bound - self.found

    def as_dict(self, timed: bool = False) -> dict[str, object]:
        """The numbers a run reports; with ``timed``, the seconds too (which differ from run
        to run: without them the same ensemble and settings give the same dict when the node
        limit, not the time limit, ends the search)."""
        out: dict[str, object] = {
            "certified_bound": self.bound,
            "members_bound": self.members_bound,
            "envelope_bound": self.root_bound,
            "certificate_point": self.found,
            "certificate_gap": self.gap,
            "certificate_nodes": self.nodes,
            "certificate_open_nodes": self.open_nodes,
            "certificate_history": [[n, b] for _, n, b in self.history],
        }
        if timed:
            out["certificate_seconds"] = self.seconds
            out["certificate_history"] = [list(h) for h in self.history]
        return out


class _Problem:
    """``Z`` [D, S] with each member's vertex activations presorted, and the greedy fill."""

    def __init__(self, z: Tensor) -> None:
        self.z = z
        self.members = z.shape[1]
        self.order = z.argsort(dim=0, descending=True)  # [D, S]
        self.sorted = z.gather(0, self.order)
        self.pad = PAD * z.shape[0] * (float(z.abs().max()) + 1.0)

    def ranges(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """Each member's least and greatest activation on the box-simplex (step 2), padded."""
        base = lower @ self.z
        free = 1.0 - float(lower.sum())
        cap = (upper - lower)[self.order]  # [D, S], in each member's descending order

        def fill(c: Tensor) -> Tensor:
            before = c.cumsum(0) - c
            return torch.minimum((free - before).clamp(min=0.0), c)

        hi = base + (fill(cap) * self.sorted).sum(0)
        lo = base + (fill(cap.flip(0)) * self.sorted.flip(0)).sum(0)
        return lo - self.pad, hi + self.pad

    def value(self, u: Tensor) -> float:
        return float(torch.sigmoid(u @ self.z).mean())


def fill_box(g: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """The point of ``{u in Delta : lower <= u <= upper}`` maximising ``g . u`` (step 2)."""
    order = g.argsort(descending=True)
    cap = (upper - lower)[order]
    before = cap.cumsum(0) - cap
    take = torch.minimum((1.0 - float(lower.sum()) - before).clamp(min=0.0), cap)
    u = lower.clone()
    u[order] += take
    return u


def tighten(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor] | None:
    """The box with each side cut to what the simplex allows, or None where it is empty
    (beyond rounding: a box that only rounding empties is kept, its ranges padded)."""
    if float(lower.sum()) > 1.0 + EMPTY or float(upper.sum()) < 1.0 - EMPTY:
        return None
    upper = torch.minimum(upper, 1.0 - (lower.sum() - lower))
    lower = torch.maximum(lower, 1.0 - (upper.sum() - upper))
    return lower, upper


@dataclass
class _Node:
    lower: Tensor
    upper: Tensor
    bound: float
    u: Tensor  # the relaxation's last iterate
    envelope: Envelope


def _frank_wolfe(
    problem: _Problem,
    lower: Tensor,
    upper: Tensor,
    envelope: Envelope,
    start: Tensor,
    settings: CertificateSettings,
    stop_below: float,
) -> tuple[float, Tensor, float, Tensor]:
    """Step 4 on one region: ``(bound on max_R G_R, last iterate, best F seen, its u)``.
    Stops early once the bound is at most ``stop_below`` (the region will be discarded)."""
    u, bound = start, float("inf")
    z = u @ problem.z
    found, found_u = -1.0, u
    for _ in range(settings.fw_iterations):
        value, derivative = envelope.value_and_derivative(z)
        grad = problem.z @ derivative / problem.members
        v = fill_box(grad, lower, upper)
        g_value = float(value.mean())
        bound = min(bound, g_value + max(float(grad @ (v - u)), 0.0))
        f_value = float(torch.sigmoid(z).mean())
        if f_value > found:
            found, found_u = f_value, u
        if bound - g_value <= settings.fw_tol or bound <= stop_below:
            break
        z_v = v @ problem.z
        step = _line_search(envelope, z, z_v)
        u, z = (1 - step) * u + step * v, (1 - step) * z + step * z_v
    return bound, u, found, found_u


def _line_search(envelope: Envelope, z: Tensor, z_v: Tensor, points: int = 24) -> float:
    """The step in [0, 1] maximising the concave ``G`` on the segment, to 1 / points^2: the
    last of ``points + 1`` steps where ``G`` still rises, twice (a batched bisection)."""
    left, width = 0.0, 1.0
    for _ in range(2):
        steps = left + width * torch.linspace(0.0, 1.0, points + 1, dtype=z.dtype, device=z.device)
        _, derivative = envelope.value_and_derivative(z + steps[:, None] * (z_v - z))
        rising = (derivative @ (z_v - z)) > 0
        last = int(rising.nonzero().max()) if bool(rising.any()) else 0
        left, width = float(steps[min(last, points - 1)]), width / points
    return left + 0.5 * width


def _branch(problem: _Problem, node: _Node) -> tuple[int, float]:
    """The coordinate to split and where (module docstring, "Branching")."""
    z = node.u @ problem.z
    value, _ = node.envelope.value_and_derivative(z)
    gap = value - torch.sigmoid(z)
    width = node.upper - node.lower
    score = width * ((problem.z - z).abs() @ gap)
    if float(score.max()) <= 0.0:
        score = width
    d = int(score.argmax())
    return d, float(0.5 * (node.lower[d] + node.upper[d]))


def _evaluate(
    problem: _Problem,
    lower: Tensor,
    upper: Tensor,
    parent_bound: float,
    u: Tensor,
    settings: CertificateSettings,
    found: float,
) -> tuple[_Node, float, Tensor]:
    """One region's bound (steps 2-4), Frank-Wolfe from ``u`` where it lies in the region;
    returns the node, and the best ``F`` seen and where."""
    lo, hi = problem.ranges(lower, upper)
    envelope = Envelope.of(lo, hi)
    inside = bool(((u >= lower) & (u <= upper)).all())
    begin = u if inside else fill_box(torch.sigmoid(problem.z).mean(1), lower, upper)
    bound, last, seen, seen_u = _frank_wolfe(
        problem, lower, upper, envelope, begin, settings, stop_below=found
    )
    bound = min(bound + MARGIN, float(torch.sigmoid(hi).mean()) + MARGIN, parent_bound)
    return _Node(lower, upper, bound, last, envelope), seen, seen_u


def box_bound(
    ensemble: Ensemble,
    radius: float,
    label: int,
    lower: Tensor,
    upper: Tensor,
    settings: CertificateSettings | None = None,
) -> float:
    """The bound of one region ``{u in Delta : lower <= u <= upper}``, no branching: how small
    a region must be for the relaxation to say something (docs/adversarial-error.md). Where
    the box holds no point of the simplex, ``-inf``."""
    problem = _Problem(vertex_logits(ensemble, radius, label).T.double())
    box = tighten(lower.double().cpu(), upper.double().cpu())
    if box is None:
        return float("-inf")
    start = fill_box(torch.sigmoid(problem.z).mean(1), *box)
    settings = settings or CertificateSettings()
    node, _, _ = _evaluate(problem, *box, 1.0 + MARGIN, start, settings, found=-1.0)
    return node.bound


def certify_sphere(
    ensemble: Ensemble,
    radius: float,
    label: int,
    start: Tensor | None = None,
    settings: CertificateSettings | None = None,
) -> SphereCertificate:
    """A certified upper bound on ``max_x mean_s P_s(wrong class | x)`` over the sphere of
    ``radius`` whose points have true class ``label``, by branch and bound (module
    docstring), from ``start`` (a point ``x`` on the sphere, e.g. the best an attack found)."""
    settings = settings or CertificateSettings()
    clock = time.perf_counter()
    problem = _Problem(vertex_logits(ensemble, radius, label).T.double())
    dim = problem.z.shape[0]
    members_bound = float(torch.sigmoid(problem.sorted[0]).mean())

    best_vertex = int(torch.sigmoid(problem.z).mean(1).argmax())
    best_u = torch.zeros(dim, dtype=torch.float64, device=problem.z.device)
    best_u[best_vertex] = 1.0
    found = problem.value(best_u)
    if start is not None:
        u0 = start.double().cpu().square()
        u0 = u0 / u0.sum()
        if problem.value(u0) > found:
            found, best_u = problem.value(u0), u0

    def evaluate(lower: Tensor, upper: Tensor, parent_bound: float, u: Tensor) -> _Node:
        nonlocal found, best_u
        node, seen, seen_u = _evaluate(problem, lower, upper, parent_bound, u, settings, found)
        if seen > found:
            found, best_u = seen, seen_u
        return node

    zeros = torch.zeros(dim, dtype=torch.float64, device=best_u.device)
    ones = torch.ones_like(zeros)
    root = evaluate(zeros, ones, members_bound + MARGIN, best_u)
    nodes, tie = 1, itertools.count()
    heap = [(-root.bound, next(tie), root)]
    history = [(time.perf_counter() - clock, 1, max(found, root.bound))]
    mark = 2  # the next node count at which the history records the bound

    def upper_bound() -> float:
        return max(found, -heap[0][0]) if heap else found

    while heap and upper_bound() - found > settings.tol:
        if nodes >= settings.max_nodes or time.perf_counter() - clock > settings.time_limit_s:
            break
        _, _, node = heapq.heappop(heap)
        if node.bound <= found:
            continue
        d, cut = _branch(problem, node)
        for side in ("below", "above"):
            lower, upper = node.lower.clone(), node.upper.clone()
            if side == "below":
                upper[d] = cut
            else:
                lower[d] = cut
            box = tighten(lower, upper)
            if box is None:
                continue
            child = evaluate(*box, node.bound, node.u)
            nodes += 1
            if child.bound > found:
                heapq.heappush(heap, (-child.bound, next(tie), child))
        if nodes >= mark:
            history.append((time.perf_counter() - clock, nodes, upper_bound()))
            mark *= 2
    seconds = time.perf_counter() - clock
    # one model: its best vertex is its maximum (docs/paper.md, "Attack"), found exactly
    bound = found if problem.members == 1 else min(upper_bound(), 1.0)  # F < 1
    history.append((seconds, nodes, bound))
    x = radius * best_u.sqrt()
    return SphereCertificate(
        bound, members_bound, root.bound, found, x, nodes, len(heap), seconds, history
    )
