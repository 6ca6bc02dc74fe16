"""Table 1's columns on a hand-made ensemble, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bayes_spheres import metrics as M
from bayes_spheres.attack import AdversarialPoints
from bayes_spheres.data import SquaredFeatures
from bayes_spheres.ensemble import Ensemble


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


IDENTITY = SquaredFeatures(t([0.0, 0.0]), t([1.0, 1.0]))  # phi(x) = x^2


@pytest.fixture
def two_members() -> Ensemble:
    # a_1 = x1^2 - x2^2,  a_2 = 2 x2^2 - 1
    return Ensemble(t([[1.0, -1.0], [0.0, 2.0]]), t([0.0, -1.0]), IDENTITY)


@pytest.fixture
def validation():
    x = t([[1.0, 0.5], [0.5, 1.0], [1.0, 1.0], [0.5, 0.0], [0.0, 0.5]])
    y = t([1.0, 0.0, 1.0, 0.0, 1.0])
    # p(y=1 | x) = mean of the two sigmoids, point by point
    p1 = [
        (sig(0.75) + sig(-0.5)) / 2,  # a = (0.75, -0.5)
        (sig(-0.75) + sig(1)) / 2,  # a = (-0.75, 1)
        (sig(0) + sig(1)) / 2,  # a = (0, 1)
        (sig(0.25) + sig(-1)) / 2,  # a = (0.25, -1)
        (sig(-0.25) + sig(-0.5)) / 2,  # a = (-0.25, -0.5)
    ]
    true = [p1[0], 1 - p1[1], p1[2], 1 - p1[3], p1[4]]
    return x, y, true


def test_avg_confidence(two_members, validation):
    x, y, true = validation
    assert M.avg_confidence(two_members, x, y) == pytest.approx(sum(true) / 5, rel=1e-14)
    assert M.avg_confidence(two_members, x, y, batch_size=2) == pytest.approx(
        sum(true) / 5, rel=1e-14
    )
    torch.testing.assert_close(M.true_class_prob(two_members, x, y), t(true), rtol=1e-14, atol=0)


def test_validation_error(two_members, validation):
    x, y, true = validation
    # true-class probabilities 0.528, 0.474, 0.616, 0.584, 0.408: two errors
    assert [p < 0.5 for p in true] == [False, True, False, False, True]
    assert M.validation_error(two_members, x, y) == pytest.approx(2 / 5, abs=1e-15)


@pytest.fixture
def points() -> AdversarialPoints:
    label = t([0.0, 0.0, 1.0, 1.0, 1.0])
    radius = torch.where(label == 1, 1.3, 1.0)
    x = radius[:, None] * t([[1.0, 0.0]] * 5)
    return AdversarialPoints(x, radius, label, t([0.1, 0.3, 0.8, 0.6, 0.2]))


def test_adversarial_error_mean_and_max(points):
    assert M.adversarial_error(points) == pytest.approx(2.0 / 5, rel=1e-15)
    assert M.adversarial_error_max(points) == 0.8


def test_adversarial_error_by_sphere(points):
    by = M.adversarial_error_by_sphere(points)
    assert set(by) == {"inner", "outer"}
    assert by["inner"]["mean"] == pytest.approx(0.2, rel=1e-15)
    assert by["inner"]["max"] == 0.3
    assert by["outer"]["mean"] == pytest.approx(1.6 / 3, rel=1e-15)
    assert by["outer"]["max"] == 0.8


def test_adversarial_error_by_sphere_with_one_sphere_missing(points):
    inner_only = AdversarialPoints(
        points.x[:2], points.radius[:2], points.label[:2], points.wrong_prob[:2]
    )
    by = M.adversarial_error_by_sphere(inner_only)
    assert by["inner"] == {"mean": pytest.approx(0.2), "max": 0.3}
    assert by["outer"] is None


def test_resampled_error(two_members):
    x = t([[1.0, 0.0], [0.0, 1.3], [1.0, 1.0]])
    label = t([0.0, 1.0, 1.0])
    first_scores = t([0.9, 0.9, 0.9])  # whatever the first ensemble said
    pts = AdversarialPoints(x, torch.ones(3, dtype=torch.float64), label, first_scores)
    # the second ensemble's wrong-class probabilities, by hand
    wrong = [
        (sig(1) + sig(-1)) / 2,  # label 0: p(y=1); a = (1, -1)
        1 - (sig(-1.69) + sig(2 * 1.69 - 1)) / 2,  # label 1: 1 - p(y=1)
        1 - (sig(0) + sig(1)) / 2,
    ]
    assert M.resampled_error(pts, two_members) == pytest.approx(sum(wrong) / 3, rel=1e-14)
    # rescoring does not touch the first ensemble's points
    assert torch.equal(pts.wrong_prob, first_scores)


def test_worst_case_by_sphere_two_members(two_members):
    out = M.worst_case_by_sphere(two_members, (1.0, 1.3))
    # inner (wrong class 1, activation a): vertices e1 -> a = (1, -1), e2 -> a = (-1, 1)
    assert out["inner"]["best_vertex"] == pytest.approx(0.5, rel=1e-14)
    assert out["inner"]["members_bound"] == pytest.approx(sig(1), rel=1e-14)
    # on the inner sphere's segment u = (s, 1 - s) the ensemble's probability is
    # (sig(2s - 1) + sig(1 - 2s)) / 2 = 1/2 throughout: the envelope's bound comes close
    assert 0.5 <= out["inner"]["certified_bound"] < 0.51
    # outer (wrong class 0, -a), r^2 = 1.69: e1 -> -a = (-1.69, 1), e2 -> -a = (1.69, -2.38)
    e1 = (sig(-1.69) + sig(1)) / 2
    e2 = (sig(1.69) + sig(-2.38)) / 2
    assert out["outer"]["best_vertex"] == pytest.approx(max(e1, e2), rel=1e-14)
    assert out["outer"]["members_bound"] == pytest.approx((sig(1.69) + sig(1)) / 2, rel=1e-14)
    for sphere in out.values():
        assert sphere["best_vertex"] <= sphere["certified_bound"] <= sphere["members_bound"]


def test_worst_case_by_sphere_one_member_bounds_coincide():
    one = Ensemble(t([[1.0, -1.0]]), t([0.5]), IDENTITY)
    out = M.worst_case_by_sphere(one, (1.0, 1.3))
    assert out["inner"]["best_vertex"] == out["inner"]["certified_bound"]
    assert out["inner"]["best_vertex"] == pytest.approx(sig(1 + 0.5), rel=1e-14)
    assert out["outer"]["best_vertex"] == out["outer"]["certified_bound"]
    assert out["outer"]["best_vertex"] == pytest.approx(sig(1.69 - 0.5), rel=1e-14)
