"""The branch-and-bound certificate (bayes_spheres/branch_bound.py) against exhaustive maxima:
small D, few members, ensembles drawn so that the worst point lies off the vertices and each
member's own worst case is far above the ensemble's. A bound below a point of the sphere is
not a bound; these tests fail if that ever happens."""

from __future__ import annotations

import itertools

import pytest
import torch

from bayes_spheres import branch_bound as B
from bayes_spheres.attack import vertex_logits
from bayes_spheres.branch_bound import (
    CertificateSettings,
    box_bound,
    certify_sphere,
    fill_box,
    tighten,
)
from bayes_spheres.certificate import Envelope
from bayes_spheres.checks import SettingError
from bayes_spheres.data import INNER, OUTER, SquaredFeatures
from bayes_spheres.ensemble import Ensemble
from tests.test_certificate import simplex_grid  # the brute-force grid both checks use

RADII = {INNER: 1.0, OUTER: 1.3}
QUICK = CertificateSettings(
    time_limit_s=120.0, tol=1e-4, max_nodes=400
)  # nodes, not seconds, decide


def hard_ensemble(seed: int, members: int, dim: int, scale: float) -> Ensemble:
    """Coefficients on ``x^2`` with a positive shared mean and a spread ``scale`` times larger:
    the members disagree at every vertex, as the paper's wide posteriors do, and the best
    point mixes vertices."""
    g = torch.Generator().manual_seed(seed)
    f = SquaredFeatures(torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))
    w = 1.0 + scale * torch.randn(members, dim, generator=g, dtype=torch.float64)
    b = -1.2 * scale / 6 + torch.randn(members, generator=g, dtype=torch.float64)
    return Ensemble(w, b, f)


GRID_STEPS = {2: 100_000, 3: 600, 4: 80}


def exhaustive(ensemble: Ensemble, label: int) -> float:
    """The largest wrong-class probability on a dense grid of the sphere: at most the true max."""
    r = RADII[label]
    x = r * simplex_grid(ensemble.dim, GRID_STEPS[ensemble.dim]).sqrt()
    return float(ensemble.wrong_prob(x, torch.full((len(x),), float(label), dtype=x.dtype)).max())


CASES = [  # (seed, dim, members, scale): steep members (scale 40) make the sigmoids step-like
    (0, 2, 3, 6.0),
    (1, 2, 9, 40.0),
    (2, 3, 5, 6.0),
    (3, 3, 12, 6.0),
    (4, 3, 8, 40.0),
    (5, 4, 8, 6.0),
    (6, 4, 6, 40.0),
]


@pytest.mark.parametrize(("seed", "dim", "members", "scale"), CASES)
@pytest.mark.parametrize("label", [INNER, OUTER])
def test_the_bound_is_never_below_the_exhaustive_maximum(seed, dim, members, scale, label):
    ensemble = hard_ensemble(seed, members, dim, scale)
    truth = exhaustive(ensemble, label)
    cert = certify_sphere(ensemble, RADII[label], label, settings=QUICK)
    assert cert.bound >= truth, (cert, truth)
    assert cert.found <= cert.bound
    assert cert.bound <= cert.root_bound <= cert.members_bound + 1e-9
    # and it closes on the maximum: the grid is within its resolution of the truth
    assert cert.bound - truth < 2e-3, (cert.bound, truth, cert.nodes)


def random_draws(count: int, seed: int) -> list[tuple[int, int, int, float, int, int]]:
    """``(seed, dim, members, scale, label, max_nodes)``: ensembles of every kind the study
    has (few or many members, mild or steep) stopped at every depth of the search."""
    g = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    return [
        (1000 + k, pick((2, 3, 3, 4)), pick((2, 5, 15, 40)), pick((1.0, 6.0, 40.0)),
         pick((INNER, OUTER)), pick((1, 2, 5, 25)))
        for k in range(count)
    ]  # fmt: skip


def _check_random(draw: tuple[int, int, int, float, int, int]) -> None:
    seed, dim, members, scale, label, max_nodes = draw
    ensemble = hard_ensemble(seed, members, dim, scale)
    cert = certify_sphere(ensemble, RADII[label], label, settings=replace_nodes(max_nodes))
    assert cert.bound >= exhaustive(ensemble, label), (draw, cert)


@pytest.mark.parametrize("draw", random_draws(16, seed=0))
def test_random_ensembles_stopped_anywhere_are_bounded(draw):
    _check_random(draw)


@pytest.mark.slow
@pytest.mark.parametrize("draw", random_draws(400, seed=1))
def test_many_random_ensembles_stopped_anywhere_are_bounded(draw):
    _check_random(draw)


def test_the_cases_are_hard():
    """Most cases' maxima lie off the vertices, and the envelope bound without branching is
    more than 0.02 above them: a search that did not use the shared ``u`` could not close."""
    off_vertex, loose = 0, 0
    for seed, dim, members, scale in CASES:
        ensemble = hard_ensemble(seed, members, dim, scale)
        for label in (INNER, OUTER):
            truth = exhaustive(ensemble, label)
            vertices = torch.sigmoid(vertex_logits(ensemble, RADII[label], label)).mean(0)
            root = certify_sphere(ensemble, RADII[label], label, settings=replace_nodes(1))
            off_vertex += truth - float(vertices.max()) > 1e-3
            loose += root.bound - truth > 0.02
    assert off_vertex >= 8
    assert loose >= 8


def replace_nodes(max_nodes: int) -> CertificateSettings:
    return CertificateSettings(time_limit_s=120.0, tol=1e-4, max_nodes=max_nodes)


def test_the_bound_falls_with_nodes_and_stays_valid():
    """Anytime: stopped at any node count the bound is valid, and more nodes never raise it."""
    ensemble = hard_ensemble(7, 10, 3, 6.0)
    truth = exhaustive(ensemble, OUTER)
    bounds = [
        certify_sphere(ensemble, RADII[OUTER], OUTER, settings=replace_nodes(n)).bound
        for n in (1, 3, 9, 27, 81)
    ]
    assert all(b >= truth for b in bounds), (bounds, truth)
    assert all(a >= b for a, b in itertools.pairwise(bounds)), bounds
    assert bounds[0] - bounds[-1] > 0.01


def test_a_time_limit_returns_the_root_bound():
    ensemble = hard_ensemble(8, 12, 4, 6.0)
    cert = certify_sphere(
        ensemble, RADII[INNER], INNER, settings=CertificateSettings(time_limit_s=1e-6)
    )
    assert cert.nodes == 1
    assert cert.bound == max(cert.root_bound, cert.found)
    assert cert.bound >= exhaustive(ensemble, INNER)


def test_the_check_has_teeth():
    """The sigmoid itself in place of its concave envelope (not concave: the Frank-Wolfe gap
    is then no bound) gives a 'bound' below the exhaustive maximum on these cases."""

    class NotAnEnvelope(Envelope):
        @classmethod
        def of(cls, lo, hi):
            return cls(lo.clone(), torch.sigmoid(lo) * torch.sigmoid(-lo))

        def value_and_derivative(self, z):
            return torch.sigmoid(z), torch.sigmoid(z) * torch.sigmoid(-z)

    below = 0
    original = B.Envelope
    B.Envelope = NotAnEnvelope
    try:
        for seed, dim, members, scale in CASES:
            ensemble = hard_ensemble(seed, members, dim, scale)
            for label in (INNER, OUTER):
                cert = certify_sphere(ensemble, RADII[label], label, settings=replace_nodes(1))
                below += cert.bound < exhaustive(ensemble, label) - 1e-3
    finally:
        B.Envelope = original
    assert below >= 5


def test_one_member_the_bound_is_its_best_vertex():
    ensemble = hard_ensemble(9, 1, 6, 6.0)
    for label, r in RADII.items():
        exact = float(torch.sigmoid(vertex_logits(ensemble, r, label)).max())
        cert = certify_sphere(ensemble, r, label, settings=QUICK)
        assert cert.nodes == 1
        assert cert.bound == pytest.approx(exact, abs=2e-9)
        assert cert.found == pytest.approx(exact, rel=1e-15)


def test_the_greedy_fill_is_the_linear_maximum_on_a_box_simplex():
    g = torch.Generator().manual_seed(10)
    lower = torch.tensor([0.0, 0.1, 0.0, 0.2], dtype=torch.float64)
    upper = torch.tensor([0.3, 0.5, 1.0, 0.6], dtype=torch.float64)
    lower, upper = tighten(lower, upper)
    grid = simplex_grid(4, 60)
    inside = grid[((grid >= lower - 1e-12) & (grid <= upper + 1e-12)).all(1)]
    for _ in range(20):
        c = torch.randn(4, generator=g, dtype=torch.float64)
        u = fill_box(c, lower, upper)
        assert float(u.sum()) == pytest.approx(1.0)
        assert bool(((u >= lower - 1e-15) & (u <= upper + 1e-15)).all())
        assert float(c @ u) >= float((inside @ c).max()) - 1e-12


@pytest.mark.parametrize("label", [INNER, OUTER])
def test_a_box_bound_is_never_below_the_boxs_exhaustive_maximum(label):
    """One region alone (``box_bound``): at least every grid point in it, and tighter as the
    box shrinks around a point."""
    ensemble = hard_ensemble(11, 10, 3, 40.0)
    r = RADII[label]
    grid = simplex_grid(3, 600)
    centre = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    bounds = []
    for half in (0.5, 0.1, 0.02, 0.004):
        lower, upper = (centre - half).clamp(min=0.0), centre + half
        inside = grid[((grid >= lower) & (grid <= upper)).all(1)]
        x = r * inside.sqrt()
        labels = torch.full((len(x),), float(label), dtype=x.dtype)
        truth = float(ensemble.wrong_prob(x, labels).max())
        bounds.append(box_bound(ensemble, r, label, lower, upper))
        assert bounds[-1] >= truth
    assert bounds[-1] - truth < 5e-3  # steep members: 0.008 of mass moves them by about 1
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(bounds))


def test_an_empty_box_is_none():
    assert tighten(torch.full((3,), 0.4), torch.ones(3)) is None
    assert tighten(torch.zeros(3), torch.full((3,), 0.3)) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("time_limit_s", 0), ("max_nodes", 0), ("tol", -1.0), ("fw_iterations", 1.5), ("fw_tol", "x")],
)
def test_bad_settings_fail_when_made(key, value):
    with pytest.raises(SettingError, match=f"^{key}="):
        CertificateSettings(**{key: value})
