"""The attack (paper, Appendix B) against the exact single-model optimum at a vertex."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayes_spheres import attack as A
from bayes_spheres.attack import objectives
from bayes_spheres.data import INNER, OUTER, SquaredFeatures
from bayes_spheres.ensemble import Ensemble

RADII = (1.0, 1.3)
D = 10


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def feature_map(seed: int = 0) -> SquaredFeatures:
    g = torch.Generator().manual_seed(seed)
    mean = 0.1 + 0.1 * torch.rand(D, generator=g, dtype=torch.float64)
    std = 0.05 + 0.1 * torch.rand(D, generator=g, dtype=torch.float64)
    return SquaredFeatures(mean, std)


def one_model(c: torch.Tensor, b: float, f: SquaredFeatures) -> Ensemble:
    """The model whose activation is ``sum_i c_i x_i^2 + const``: ``w = c std``."""
    return Ensemble((c * f.std)[None], t([b]), f)


def optimum(ens: Ensemble, label: int) -> float:
    """Exact worst-case wrong-class probability of one model on a sphere."""
    return float(torch.sigmoid(A.vertex_logits(ens, RADII[label], label).max()))


@pytest.fixture
def moderate_model() -> Ensemble:
    """Mixed-sign coefficients; the bias puts both spheres' exact optima between 0.05, 0.95."""
    f = feature_map()
    c = torch.randn(D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ens = one_model(c, 0.0, f)
    # inner: wrong logit = a, best at max c; outer: wrong logit = -a, best at min c.
    # Their sum does not depend on b; split it evenly.
    inner0 = float(A.vertex_logits(ens, RADII[0], INNER).max())
    outer0 = float(A.vertex_logits(ens, RADII[1], OUTER).max())
    b = (outer0 - inner0) / 2
    ens = one_model(c, b, f)
    for label in (INNER, OUTER):
        assert 0.05 < optimum(ens, label) < 0.95
    return ens


def test_project_keeps_radius_and_direction():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    r = 0.5 + torch.rand(8, generator=g, dtype=torch.float64)
    p = A.project(x, r)
    torch.testing.assert_close(p.norm(dim=-1), r, rtol=0, atol=1e-12)
    # same direction: p = lambda x with lambda > 0
    cos = (p * x).sum(-1) / (p.norm(dim=-1) * x.norm(dim=-1))
    torch.testing.assert_close(cos, torch.ones(8, dtype=torch.float64), rtol=0, atol=1e-12)
    # points already on the sphere stay put
    torch.testing.assert_close(A.project(p, r), p, rtol=1e-15, atol=1e-15)


def test_vertex_logits_match_activation_at_vertices(moderate_model):
    ens = moderate_model
    for label, r in zip((INNER, OUTER), RADII, strict=True):
        x = r * torch.eye(D, dtype=torch.float64)
        a = ens.logits(x)[:, 0]  # activation at r e_j
        sign = 1.0 - 2.0 * label
        torch.testing.assert_close(
            A.vertex_logits(ens, r, label)[0], sign * a, rtol=1e-12, atol=1e-12
        )


def test_projected_gradient_ascent_on_a_linear_score():
    # max c.x on the sphere of radius r is at r c / |c|
    c = t([1.0, -2.0, 0.5])
    radius = t([1.0, 2.0])
    x0 = t([[0.3, 0.8, -0.1], [-1.0, 0.2, 0.4]])
    x, f = A.projected_gradient_ascent(
        lambda x, rows: x @ c, x0, radius, step_size=0.5, max_steps=2000
    )
    best = radius[:, None] * c / c.norm()
    torch.testing.assert_close(x, best, rtol=0, atol=1e-6)
    torch.testing.assert_close(f, radius * c.norm(), rtol=0, atol=1e-10)


def test_pgd_one_model_reaches_exact_vertex_optimum(moderate_model):
    ens = moderate_model
    pts = A.pgd(ens, RADII, restarts_per_sphere=5, seed=0)
    k = 5
    assert pts.x.shape == (2 * k, D)
    torch.testing.assert_close(pts.label, t([0.0] * k + [1.0] * k), rtol=0, atol=0)
    torch.testing.assert_close(pts.radius, t([1.0] * k + [1.3] * k), rtol=0, atol=0)
    torch.testing.assert_close(pts.x.norm(dim=-1), pts.radius, rtol=0, atol=1e-12)
    torch.testing.assert_close(pts.wrong_prob, ens.wrong_prob(pts.x, pts.label), rtol=0, atol=0)
    for label in (INNER, OUTER):
        p = pts.wrong_prob[pts.label == label]
        best = optimum(ens, label)
        assert float(p.max()) == pytest.approx(best, abs=1e-3), label
        # nothing on the sphere beats the exact optimum
        assert float(p.max()) <= best + 1e-12


def stiff_outer_model() -> Ensemble:
    """Large coefficients c in [100, 200]; on the outer sphere the wrong-class coefficients
    are -c, so a plain step multiplies x_i by 1 - 2 eta c_i in [-3, -1]: it amplifies the
    coordinates with the *largest* c, which are the worst for the attacker. The bias puts the
    exact optimum (at argmin c) at wrong-class probability 1/2."""
    f = feature_map()
    g = torch.Generator().manual_seed(2)
    c = 100 + 100 * torch.rand(D, generator=g, dtype=torch.float64)
    ens = one_model(c, 0.0, f)
    b = float(A.vertex_logits(ens, RADII[1], OUTER).max())
    return one_model(c, b, f)


def test_backtracking_reaches_optimum_where_plain_steps_diverge():
    ens = stiff_outer_model()
    assert optimum(ens, OUTER) == pytest.approx(0.5, abs=1e-12)
    outer = slice(5, 10)

    plain = A.pgd(ens, RADII, restarts_per_sphere=5, backtrack=False, seed=0)
    # the paper's plain step never gets near the optimum: the best point seen is no better
    # than a random start, whose wrong-class logit is tens of units below the optimum
    assert float(plain.wrong_prob[outer].max()) < 1e-6

    backtracked = A.pgd(ens, RADII, restarts_per_sphere=5, backtrack=True, seed=0)
    torch.testing.assert_close(
        backtracked.wrong_prob[outer], torch.full((5,), 0.5), rtol=0, atol=1e-3
    )


def test_vertex_attack_one_model_is_exact(moderate_model):
    ens = moderate_model
    pts = A.vertex(ens, RADII)
    assert pts.x.shape == (2, D)
    torch.testing.assert_close(pts.label, t([0.0, 1.0]), rtol=0, atol=0)
    torch.testing.assert_close(pts.radius, t(RADII), rtol=0, atol=0)
    for i, (label, r) in enumerate(zip((INNER, OUTER), RADII, strict=True)):
        j = int(A.vertex_logits(ens, r, label)[0].argmax())
        expected = torch.zeros(D, dtype=torch.float64)
        expected[j] = r
        assert torch.equal(pts.x[i], expected)
        assert float(pts.wrong_prob[i]) == pytest.approx(optimum(ens, label), rel=1e-12)


def test_vertex_attack_is_an_upper_bound_for_pgd_on_one_model(moderate_model):
    ens = moderate_model
    v = A.vertex(ens, RADII)
    p = A.pgd(ens, RADII, restarts_per_sphere=3, max_steps=300, seed=1)
    for i, label in enumerate((INNER, OUTER)):
        assert float(p.wrong_prob[p.label == label].max()) <= float(v.wrong_prob[i]) + 1e-12


def random_ensemble(s: int = 5, seed: int = 3) -> Ensemble:
    f = feature_map()
    g = torch.Generator().manual_seed(seed)
    c = 2 * torch.randn(s, D, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(s, generator=g, dtype=torch.float64)
    return Ensemble(c * f.std, b, f)


@pytest.mark.parametrize("warmup_steps", [0, 300])
def test_pgd_on_an_ensemble_improves_on_the_random_starts(warmup_steps):
    ens = random_ensemble()
    k, seed = 6, 4
    pts = A.pgd(
        ens,
        RADII,
        restarts_per_sphere=k,
        warmup_steps=warmup_steps,
        max_steps=1000,
        seed=seed,
    )
    x0, radius, label = A.random_starts(k, D, RADII, torch.Generator().manual_seed(seed))
    start = ens.wrong_prob(x0, label)
    assert torch.equal(pts.radius, radius) and torch.equal(pts.label, label)
    torch.testing.assert_close(pts.x.norm(dim=-1), radius, rtol=0, atol=1e-12)
    assert float(pts.wrong_prob.mean()) > float(start.mean()) + 0.05
    if warmup_steps == 0:
        # without the Jensen warm-up the attack keeps the best point it has seen
        assert (pts.wrong_prob >= start - 1e-12).all()
    # never above the certified bound: the mean over members of each member's own optimum
    for label_, r in zip((INNER, OUTER), RADII, strict=True):
        bound = torch.sigmoid(A.vertex_logits(ens, r, label_)).max(1).values.mean()
        assert (pts.wrong_prob[pts.label == label_] <= bound + 1e-12).all()


def test_pgd_is_reproducible_with_a_seed():
    ens = random_ensemble()
    kw = dict(restarts_per_sphere=3, warmup_steps=50, max_steps=100)
    a = A.pgd(ens, RADII, seed=7, **kw)
    b = A.pgd(ens, RADII, seed=7, **kw)
    c = A.pgd(ens, RADII, seed=8, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.wrong_prob, b.wrong_prob)
    assert not torch.equal(a.x, c.x)


def test_adversarial_points_save_load_rescore(tmp_path):
    ens = random_ensemble()
    pts = A.pgd(ens, RADII, restarts_per_sphere=2, max_steps=50, seed=0)
    path = tmp_path / "adversarial_points.npz"
    pts.save(path)
    with np.load(path) as f:
        assert set(f.files) == {"x", "radius", "label", "wrong_prob"}
        assert f["x"].shape == (4, D)
        assert f["radius"].shape == f["label"].shape == f["wrong_prob"].shape == (4,)
    back = A.AdversarialPoints.load(path)
    for name in ("x", "radius", "label", "wrong_prob"):
        assert torch.equal(getattr(back, name), getattr(pts, name)), name
    other = random_ensemble(seed=11)
    re = pts.rescore(other)
    assert torch.equal(re.x, pts.x)
    torch.testing.assert_close(re.wrong_prob, other.wrong_prob(pts.x, pts.label), rtol=0, atol=0)


def test_random_starts_layout():
    x0, radius, label = A.random_starts(4, 3, RADII, torch.Generator().manual_seed(0))
    assert x0.shape == (8, 3)
    torch.testing.assert_close(x0.norm(dim=-1), radius, rtol=0, atol=1e-12)
    assert radius.tolist() == [1.0] * 4 + [1.3] * 4
    assert label.tolist() == [0.0] * 4 + [1.0] * 4
    assert math.isclose(float(radius[-1]), 1.3)


def test_attack_registry():
    assert A.ATTACKS[A.AttackName.PGD] is A.pgd
    assert A.ATTACKS[A.AttackName.VERTEX] is A.vertex


@pytest.mark.parametrize("objective", list(A.Objective))
def test_the_closed_form_gradient_in_x_is_autograds(objective):
    ens = random_ensemble()
    x0, _, label = A.random_starts(4, D, RADII, torch.Generator().manual_seed(2))
    rows = torch.arange(len(label))
    value, grad = objectives.objective_in_x(ens, label, objective)(x0, rows)
    ref_value, ref_grad = objectives.autograd_value_and_grad(
        A.ensemble_score(ens, label, objective)
    )(x0, rows)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert grad.abs().min() > 0


def test_pgd_with_closed_form_gradients_takes_autograds_path():
    """The same ascent with autograd's gradient: the same points, to rounding."""
    ens = random_ensemble()
    x0, radius, label = A.random_starts(5, D, RADII, torch.Generator().manual_seed(6))
    objective = A.Objective.LOG_MEAN_SIGMOID
    kw = dict(step_size=0.05, max_steps=300, tol=1e-9)
    x_auto, f_auto = A.projected_gradient_ascent(
        A.ensemble_score(ens, label, objective), x0, radius, **kw
    )
    x_ours, f_ours = A.projected_gradient_ascent(
        None, x0, radius, value_and_grad=objectives.objective_in_x(ens, label, objective), **kw
    )
    torch.testing.assert_close(x_ours, x_auto, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(f_ours, f_auto, rtol=1e-10, atol=1e-12)
    start = A.ensemble_score(ens, label, objective)(A.project(x0, radius), torch.arange(10))
    assert (f_ours > start + 1e-3).all()  # it moved
    with pytest.raises(ValueError, match="score or value_and_grad"):
        A.projected_gradient_ascent(None, x0, radius, **kw)


def autograd_pgd_reference(score, x0, radius, step_size, max_steps, tol, patience):
    """The loop as it was before the closed-form gradients (autograd at the current point
    every step, the new point's score separately), kept here as the reference."""
    k = x0.shape[0]
    rows = torch.arange(k)
    x = A.project(x0.detach(), radius)
    with torch.no_grad():
        f = score(x, rows)
    best_x, best = x.clone(), f.clone()
    eta = torch.full_like(f, step_size)
    since = torch.zeros(k, dtype=torch.long)
    active = torch.ones(k, dtype=torch.bool)
    for _ in range(max_steps):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        xa = x[idx].requires_grad_(True)
        (g,) = torch.autograd.grad(score(xa, idx).sum(), xa)
        with torch.no_grad():
            x_new = A.project(xa + eta[idx, None] * g, radius[idx])
            f_new = score(x_new, idx)
            ok = f_new > f[idx]
            x[idx[ok]], f[idx[ok]] = x_new[ok], f_new[ok]
            eta[idx[~ok]] *= 0.5
            fa = f[idx]
            better = fa > best[idx]
            noticeable = fa > best[idx] + tol
            best_x[idx[better]] = x[idx[better]]
            best[idx[better]] = fa[better]
            since[idx] = torch.where(noticeable, 0, since[idx] + 1)
            active[idx] = since[idx] < patience
    return best_x, best


@pytest.mark.parametrize("objective", [A.Objective.JENSEN, A.Objective.LOG_MEAN_SIGMOID])
def test_the_ascent_equals_the_autograd_loop_it_replaced(objective):
    """Backtracking (a large step is refused and halved) and patience both take part."""
    ens = random_ensemble()
    x0, radius, label = A.random_starts(5, D, RADII, torch.Generator().manual_seed(8))
    kw = dict(step_size=0.5, max_steps=400, tol=1e-7, patience=10)
    x_ref, f_ref = autograd_pgd_reference(A.ensemble_score(ens, label, objective), x0, radius, **kw)
    x_new, f_new = A.projected_gradient_ascent(
        None, x0, radius, value_and_grad=objectives.objective_in_x(ens, label, objective),
        **kw,
    )  # fmt: skip
    torch.testing.assert_close(x_new, x_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(f_new, f_ref, rtol=1e-10, atol=1e-12)
    start = A.ensemble_score(ens, label, objective)(A.project(x0, radius), torch.arange(10))
    assert (f_new > start + 1e-3).all()
