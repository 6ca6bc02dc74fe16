"""The certified bound (bayes_spheres/certificate.py): the envelope majorises the sigmoid, and
the bound is never below the true maximum, found by exhaustive search where the dimension is
small enough, and by the attacks where it is not."""

from __future__ import annotations

import itertools

import pytest
import torch

from bayes_spheres import attack as A
from bayes_spheres import metrics as M
from bayes_spheres.branch_bound import CertificateSettings
from bayes_spheres.certificate import Envelope, sphere_bound
from bayes_spheres.data import INNER, OUTER, SquaredFeatures
from bayes_spheres.ensemble import Ensemble

RADII = (1.0, 1.3)
BRIEF = CertificateSettings(time_limit_s=1.0)  # the bound is valid wherever it stops


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


INTERVALS = [(-30.0, 40.0), (-5.0, 0.5), (-3.0, -1.0), (0.5, 4.0), (-0.1, 0.1), (-200.0, 3.0)]


@pytest.mark.parametrize(("lo", "hi"), INTERVALS)
def test_the_envelope_is_a_concave_majorant_tight_at_the_ends(lo, hi):
    envelope = Envelope.of(t([lo]), t([hi]))
    z = torch.linspace(lo, hi, 20001, dtype=torch.float64)[:, None]
    value, derivative = envelope.value_and_derivative(z)
    assert (value >= torch.sigmoid(z) - 1e-15).all()
    second = value[2:] - 2 * value[1:-1] + value[:-2]
    assert (second <= 1e-12).all()  # concave on the grid
    assert (derivative[1:] <= derivative[:-1] + 1e-15).all()  # non-increasing slope
    for end in (lo, hi):  # no concave majorant can be lower at the ends
        assert float(envelope.value_and_derivative(t([[end]]))[0]) == pytest.approx(
            float(torch.sigmoid(t(end))), abs=1e-12
        )


def test_the_envelope_is_the_least_concave_majorant_where_it_has_a_tangent():
    """On [-30, 40] the envelope touches the sigmoid at its breakpoint and is a line through
    (lo, sigmoid(lo)) below it: any concave majorant is at least that line there."""
    lo, hi = -30.0, 40.0
    envelope = Envelope.of(t([lo]), t([hi]))
    point = float(envelope.breakpoint)
    assert 0 < point < hi
    at = float(envelope.value_and_derivative(t([[point]]))[0])
    assert at == pytest.approx(float(torch.sigmoid(t(point))), abs=1e-15)


def random_ensemble(seed: int, members: int, dim: int, scale: float = 6.0) -> Ensemble:
    """Members whose coefficients on ``x^2`` share a positive mean with a large spread: the
    ensemble's worst point lies off the vertices and the members' own worst cases near 1."""
    g = torch.Generator().manual_seed(seed)
    f = SquaredFeatures(torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))
    w = 1.0 + scale * torch.randn(members, dim, generator=g, dtype=torch.float64)
    b = -1.2 + torch.randn(members, generator=g, dtype=torch.float64)
    return Ensemble(w, b, f)


def simplex_grid(dim: int, steps: int) -> torch.Tensor:
    """Every point of the simplex ``sum u = 1`` with coordinates in multiples of 1 / steps."""
    points = [
        (*c, steps - sum(c)) for c in itertools.product(range(steps + 1), repeat=dim - 1)
        if sum(c) <= steps
    ]  # fmt: skip
    return torch.tensor(points, dtype=torch.float64) / steps


@pytest.mark.parametrize(("seed", "dim", "members"), [(0, 2, 3), (1, 3, 5), (2, 3, 12), (3, 4, 8)])
def test_the_bound_is_never_below_the_exhaustive_maximum(seed, dim, members):
    """Small D, few members: the ensemble's wrong-class probability on a fine grid of each
    sphere's simplex (the true maximum is at least the grid's) never exceeds the bound, and
    the bound improves on the members' bound by a margin the grid's maximum leaves room for."""
    ensemble = random_ensemble(seed, members, dim)
    grid = simplex_grid(dim, {2: 20000, 3: 400, 4: 60}[dim])
    for label, r in zip((INNER, OUTER), RADII, strict=True):
        x = r * grid.sqrt()
        labels = torch.full((len(x),), float(label), dtype=torch.float64)
        exhaustive = float(ensemble.wrong_prob(x, labels).max())
        bound = sphere_bound(ensemble, r, label, max_iterations=5000, tol=1e-7)
        assert bound.bound >= exhaustive, (label, bound, exhaustive)
        assert bound.bound <= bound.members_bound
        assert bound.found <= exhaustive + 1e-9  # a point of the sphere: not above the max


def test_one_model_the_bound_is_its_exact_worst_case():
    ensemble = random_ensemble(4, 1, 6)
    for label, r in zip((INNER, OUTER), RADII, strict=True):
        exact = float(torch.sigmoid(A.vertex_logits(ensemble, r, label)).max())
        bound = sphere_bound(ensemble, r, label)
        assert bound.bound == bound.members_bound == pytest.approx(exact, rel=1e-15)


def test_where_every_member_is_concave_the_bound_meets_the_maximum():
    """Activations positive everywhere on the sphere: each sigmoid is concave there, the
    envelope is the sigmoid itself, and Frank-Wolfe closes the gap to the true maximum."""
    g = torch.Generator().manual_seed(5)
    dim, members = 8, 30
    f = SquaredFeatures(torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))
    w = torch.randn(members, dim, generator=g, dtype=torch.float64)
    ensemble = Ensemble(w, 0.05 - w.min(1).values, f)  # a = w @ u + b >= 0.05 on the simplex
    bound = sphere_bound(ensemble, 1.0, INNER, max_iterations=20000, tol=1e-8)
    assert bound.relaxed == pytest.approx(bound.found, abs=1e-12)  # no relaxation at all
    assert 0 <= bound.gap < 1e-6, bound
    assert bound.bound < bound.members_bound - 1e-3  # and it says more than the members' bound


def test_the_attacks_points_are_never_above_the_bound():
    """D = 40, 300 members: PGD, the simplex attack and the strongest attack never exceed the
    bound (``worst_case_by_sphere`` also raises at run time if a found point does)."""
    ensemble = random_ensemble(6, 300, 40, scale=3.0)
    found = [
        A.pgd(ensemble, RADII, restarts_per_sphere=8, step_size=0.01),
        A.simplex(ensemble, RADII, restarts_per_sphere=8, vertex_starts=2),
    ]
    bounds = M.worst_case_by_sphere(ensemble, RADII, found=found[1], settings=BRIEF)
    for name, label in (("inner", INNER), ("outer", OUTER)):
        best = max(float(p.wrong_prob[p.label == label].max()) for p in found)
        assert best <= bounds[name]["certified_bound"]
        assert bounds[name]["certified_bound"] <= bounds[name]["members_bound"]


def test_a_bound_below_a_found_point_is_an_error():
    ensemble = random_ensemble(7, 20, 5)
    points = A.simplex(ensemble, RADII, restarts_per_sphere=2, vertex_starts=0)
    lying = A.AdversarialPoints(points.x, points.radius, points.label, points.wrong_prob + 1.0)
    with pytest.raises(RuntimeError, match="below a point found"):
        M.worst_case_by_sphere(ensemble, RADII, found=lying, settings=BRIEF)
