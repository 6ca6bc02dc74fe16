"""Mirror ascent on the simplex u = x^2 against exact optima, certificates and PGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bayes_spheres import attack as A
from bayes_spheres import metrics as M
from bayes_spheres.attack import mirror, objectives
from bayes_spheres.branch_bound import CertificateSettings
from bayes_spheres.config import ConfigError, validate
from bayes_spheres.data import INNER, OUTER, SquaredFeatures
from bayes_spheres.ensemble import Ensemble, log_mean_sigmoid

RADII = (1.0, 1.3)
BRIEF = CertificateSettings(time_limit_s=1.0)  # the bound is valid wherever it stops
D, S = 20, 50


def one_model(seed: int, stiff: bool) -> Ensemble:
    """One model ``sum_i c_i x_i^2 + b``: mixed-sign ``c ~ N(0, 1)``, or ``stiff`` with
    ``c`` in [100, 200] (where PGD's plain step diverges, see test_attack). The bias splits the
    two spheres' optimal logits evenly, so neither optimum saturates."""
    g = torch.Generator().manual_seed(seed)
    f = SquaredFeatures(
        0.1 + 0.1 * torch.rand(D, generator=g, dtype=torch.float64),
        0.05 + 0.1 * torch.rand(D, generator=g, dtype=torch.float64),
    )
    if stiff:
        c = 100 + 100 * torch.rand(D, generator=g, dtype=torch.float64)
    else:
        c = torch.randn(D, generator=g, dtype=torch.float64)
    zero = Ensemble((c * f.std)[None], torch.zeros(1, dtype=torch.float64), f)
    inner, outer = (float(A.vertex_logits(zero, RADII[s], s).max()) for s in (INNER, OUTER))
    return Ensemble(zero.w, torch.tensor([(outer - inner) / 2], dtype=torch.float64), f)


def optimum(ens: Ensemble, sphere: int) -> float:
    """Exact worst-case wrong-class probability of one model: its best vertex."""
    return float(torch.sigmoid(A.vertex_logits(ens, RADII[sphere], sphere).max()))


def ensemble(seed: int = 0) -> Ensemble:
    """S members whose coefficients on ``x^2`` share a positive mean (the true boundary's
    direction) with large spread: wrong-class probabilities at the attack's points are
    moderate (0.5-0.7), the certified bound is near 1, and the best point is off the vertices."""
    g = torch.Generator().manual_seed(seed)
    f = SquaredFeatures(
        0.05 + 0.01 * torch.rand(D, generator=g, dtype=torch.float64),
        0.05 + 0.02 * torch.rand(D, generator=g, dtype=torch.float64),
    )
    c = 1.0 + 3.0 * torch.randn(S, D, generator=g, dtype=torch.float64)
    b = torch.randn(S, generator=g, dtype=torch.float64)
    return Ensemble(c * f.std, b, f)


def best_per_sphere(points: A.AdversarialPoints) -> list[float]:
    return [float(points.wrong_prob[points.label == s].max()) for s in (INNER, OUTER)]


@pytest.fixture(scope="module")
def ens() -> Ensemble:
    return ensemble()


@pytest.fixture(scope="module")
def attacked(ens) -> A.AdversarialPoints:
    return A.simplex(ens, RADII, restarts_per_sphere=12, vertex_starts=4)


@pytest.mark.parametrize("objective", list(A.Objective))
def test_objective_in_u_matches_the_ensemble_score_and_autograd(ens, objective):
    """Values equal ``ensemble_score`` at ``x = sqrt(u)`` (ties W', c to the model's forward
    map), and the analytic gradient in ``u`` equals autograd's."""
    g = torch.Generator().manual_seed(5)
    x, _, label = A.random_starts(3, D, RADII, g)
    u = x.square().requires_grad_(True)
    rows = torch.arange(len(u))
    value, grad = objectives.objective_in_u(ens, label, objective)(u, rows)
    torch.testing.assert_close(
        value, A.ensemble_score(ens, label, objective)(x, rows), rtol=1e-12, atol=1e-12
    )
    w_u, c = objectives.linear_in_u(ens)
    z = (1 - 2 * label)[:, None] * (u @ w_u + c)
    ref = {
        A.Objective.LOGIT: lambda: z.mean(-1),
        A.Objective.JENSEN: lambda: F.logsigmoid(z).mean(-1),
        A.Objective.LOG_MEAN_SIGMOID: lambda: log_mean_sigmoid(z),
    }[objective]()
    (auto,) = torch.autograd.grad(ref.sum(), u)
    torch.testing.assert_close(grad, auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stiff", [False, True])
def test_one_model_every_restart_reaches_the_exact_best_vertex(stiff):
    """One model: the logit is linear in u, so every restart runs to the best vertex."""
    ens = one_model(seed=1, stiff=stiff)
    for sphere in (INNER, OUTER):
        assert 1e-12 < optimum(ens, sphere) < 1 - 1e-12  # not saturated: a real check
    pts = A.simplex(ens, RADII, restarts_per_sphere=6, vertex_starts=2, seed=1)
    for sphere in (INNER, OUTER):
        p = pts.wrong_prob[pts.label == sphere]
        torch.testing.assert_close(
            p, torch.full_like(p, optimum(ens, sphere)), rtol=1e-12, atol=1e-12
        )
    # at a vertex to float precision: one coordinate holds all of sum u = r^2
    share = pts.x.square().max(-1).values / pts.radius**2
    torch.testing.assert_close(share, torch.ones_like(share), rtol=0, atol=1e-12)


def test_layout_and_points_on_their_spheres(ens, attacked):
    k = 12
    assert attacked.x.shape == (2 * k, D)
    assert attacked.label.tolist() == [0.0] * k + [1.0] * k
    assert attacked.radius.tolist() == [1.0] * k + [1.3] * k
    torch.testing.assert_close(attacked.x.norm(dim=-1), attacked.radius, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        attacked.wrong_prob, ens.wrong_prob(attacked.x, attacked.label), rtol=0, atol=0
    )
    # random starts keep pgd's signs: x = sign(x0) sqrt(u)
    x0, _, _ = A.random_starts(k, D, RADII, torch.Generator().manual_seed(0))
    assert ((attacked.x * x0) >= 0).all()


def test_jensen_warmup_is_certified_and_the_attack_beats_it(ens, attacked):
    """The Jensen bound J is concave in u, so for any u on the simplex sum u = r^2,
    J* <= J(u) + r^2 max_i g_i - <g, u> (the Frank-Wolfe gap, with autograd's gradient). The
    warm-up's gap must be small (1e-6 is where J's float64 resolution, ~1e-16, limits it), and
    the attack's best log mean sigmoid must be at least J* and at least its value at the Jensen
    maximiser."""
    for sphere, r in zip((INNER, OUTER), RADII, strict=True):
        label = torch.full((1,), float(sphere), dtype=torch.float64)
        u0 = torch.full((1, D), r**2 / D, dtype=torch.float64)
        u, _ = mirror.mirror_ascent(
            objectives.objective_in_u(ens, label, A.Objective.JENSEN),
            u0,
            torch.tensor([r], dtype=torch.float64),
            step_size=1.0,
            max_steps=2000,
            tol=1e-12,
            patience=10,
        )
        u = u.requires_grad_(True)
        w_u, c = objectives.linear_in_u(ens)
        z = (1 - 2 * sphere) * (u @ w_u + c)
        jensen = F.logsigmoid(z).mean()
        (g,) = torch.autograd.grad(jensen, u)
        u, z, jensen = u.detach(), z.detach(), jensen.detach()
        gap = float(r**2 * g.max() - (g * u).sum())
        assert 0 <= gap < 1e-5, gap
        at_jensen_max = float(log_mean_sigmoid(z)[0])
        best = float(attacked.wrong_prob[attacked.label == sphere].max().log())
        assert best >= float(jensen) + gap - 1e-12
        assert best >= at_jensen_max - 1e-12


def test_at_least_pgd_at_most_the_certified_bound(ens, attacked):
    """Same ensemble, same random starts: the simplex attack's best point per sphere is no
    worse than PGD's (within 1e-6) and never above the certified bound."""
    pgd = A.pgd(ens, RADII, restarts_per_sphere=12, step_size=0.01)
    bounds = M.worst_case_by_sphere(ens, RADII, settings=BRIEF)
    for name, ours, theirs in zip(
        ("inner", "outer"), best_per_sphere(attacked), best_per_sphere(pgd), strict=True
    ):
        assert ours >= theirs - 1e-6, (name, ours, theirs)
        assert ours <= bounds[name]["certified_bound"] + 1e-12
        # here the best point lies off the vertices: the ascent improves on the best vertex
        assert ours > bounds[name]["best_vertex"] + 1e-3


def test_vertex_starts_are_the_best_vertices_moved_inside(ens):
    r, k = RADII[OUTER], 3
    x0, _, _ = A.random_starts(k, D, (r, r), torch.Generator().manual_seed(2))
    u = mirror.vertex_starts_u(ens, r, OUTER, k, x0[:k].square(), blend=0.01)
    torch.testing.assert_close(u.sum(-1), torch.full((k,), r**2), rtol=0, atol=1e-12)
    assert (u > 0).all() and (u.max(-1).values > 0.99 * r**2).all()
    corners = r * F.one_hot(u.argmax(-1), D).double()
    wrong = ens.wrong_prob(corners, torch.ones(k, dtype=torch.float64))
    assert float(wrong[0]) == pytest.approx(
        M.worst_case_by_sphere(ens, RADII, settings=BRIEF)["outer"]["best_vertex"], rel=1e-12
    )
    assert (wrong[:-1] >= wrong[1:]).all()  # best first, and the next best after it


def test_vertex_starts_find_a_better_basin_than_the_jensen_maximiser(ens):
    """The real objective is not concave: on this ensemble's inner sphere every random
    restart, warmed up to the Jensen maximiser, ends lower than the best vertex start."""
    kw = dict(restarts_per_sphere=8)
    only_random = A.simplex(ens, RADII, vertex_starts=0, **kw)
    with_vertices = A.simplex(ens, RADII, vertex_starts=4, **kw)
    assert best_per_sphere(with_vertices)[0] > best_per_sphere(only_random)[0] + 1e-3


def test_same_seed_same_points(ens):
    kw = dict(restarts_per_sphere=4, vertex_starts=1, max_steps=200)
    a, b = A.simplex(ens, RADII, seed=3, **kw), A.simplex(ens, RADII, seed=3, **kw)
    c = A.simplex(ens, RADII, seed=4, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.wrong_prob, b.wrong_prob)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        (dict(vertex_starts=21), "vertex_starts=21"),
        (dict(vertex_blend=0.0), "vertex_blend=0.0"),
        (dict(step_growth=0.5), "step_growth=0.5"),
    ],
)
def test_bad_arguments_are_value_errors(ens, setting, fragment):
    with pytest.raises(ValueError, match=fragment):
        A.simplex(ens, RADII, restarts_per_sphere=30, **setting)


def test_registry():
    assert A.ATTACKS[A.AttackName.SIMPLEX] is A.simplex


def test_config_composes_and_validates(compose):
    plan = validate(compose(["attack=simplex"]))
    assert plan.attack == A.SimplexSettings(10) and plan.attack_name == "simplex"
    assert plan.attack.restarts_per_sphere == 10
    assert "backtrack" not in plan.attack_settings


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["+attack.backtrack=true"], ["attack.backtrack", "unknown", "vertex_starts"]),
        (["attack.max_steps=0"], ["attack.max_steps=0", ">= 1"]),
        (["attack.step_size=-1"], ["attack.step_size=-1", "> 0"]),
    ],
)
def test_config_rejects_a_bad_setting_by_name(compose, overrides, fragments):
    with pytest.raises(ConfigError) as err:
        validate(compose(["attack=simplex", *overrides]))
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))
