"""Spheres and the standardised squared-feature map (paper Sec. 3, Appendix A)."""

from __future__ import annotations

import pytest
import torch

from bayes_spheres.data import INNER, OUTER, SquaredFeatures, load_spheres, make_spheres


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 101])
def test_make_spheres_radii_balance_and_shapes(n):
    x, y = make_spheres(n, 5, 1.0, 1.3, gen(), torch.float64)
    assert x.shape == (n, 5) and y.shape == (n,)
    assert x.dtype == y.dtype == torch.float64
    assert set(y.tolist()) <= {float(INNER), float(OUTER)}
    # n // 2 on the outer sphere, the rest (and so the odd point) on the inner one
    assert int((y == OUTER).sum()) == n // 2
    assert int((y == INNER).sum()) == n - n // 2
    r = x.norm(dim=-1)
    expected = torch.where(y == OUTER, 1.3, 1.0)
    torch.testing.assert_close(r, expected, rtol=0, atol=1e-12)


def test_points_are_shuffled_not_sorted_by_class():
    _, y = make_spheres(200, 3, 1.0, 1.3, gen(), torch.float64)
    assert not torch.equal(y, y.sort().values)
    assert not torch.equal(y, y.sort(descending=True).values)


def test_points_are_uniform_on_the_sphere():
    # Uniform on the sphere: every coordinate has mean 0 and E[x_i^2] = r^2 / D.
    n, dim, r = 20000, 4, 1.3
    x, y = make_spheres(n, dim, 0.5, r, gen(3), torch.float64)
    xo = x[y == OUTER]
    m = len(xo)
    mean = xo.mean(0)
    se_mean = xo.std(0) / m**0.5
    assert (mean.abs() < 5 * se_mean).all(), (mean, se_mean)
    sq = xo.square()
    se_sq = sq.std(0) / m**0.5
    assert ((sq.mean(0) - r**2 / dim).abs() < 5 * se_sq).all()


def test_load_spheres_shapes_radii_and_seed():
    d = load_spheres(dim=6, n_train=31, n_val=17, r_inner=0.7, r_outer=2.0, seed=4)
    assert d.x_train.shape == (31, 6) and d.y_train.shape == (31,)
    assert d.x_val.shape == (17, 6) and d.y_val.shape == (17,)
    assert d.dim == 6 and d.radii == (0.7, 2.0)
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val)):
        torch.testing.assert_close(
            x.norm(dim=-1), torch.where(y == OUTER, 2.0, 0.7), rtol=0, atol=1e-12
        )
    assert int(d.y_train.sum()) == 15 and int(d.y_val.sum()) == 8

    same = load_spheres(dim=6, n_train=31, n_val=17, r_inner=0.7, r_outer=2.0, seed=4)
    for a, b in (
        (d.x_train, same.x_train),
        (d.y_train, same.y_train),
        (d.x_val, same.x_val),
        (d.y_val, same.y_val),
        (d.features.mean, same.features.mean),
        (d.features.std, same.features.std),
    ):
        assert torch.equal(a, b)

    other = load_spheres(dim=6, n_train=31, n_val=17, r_inner=0.7, r_outer=2.0, seed=5)
    assert not torch.equal(d.x_train, other.x_train)
    # validation points are fresh draws, not copies of training points
    assert torch.cdist(d.x_val, d.x_train).min() > 1e-6


def test_feature_map_is_fitted_on_training_set():
    d = load_spheres(dim=5, n_train=40, n_val=60, seed=1)
    torch.testing.assert_close(d.features.mean, d.x_train.square().mean(0), rtol=0, atol=0)
    torch.testing.assert_close(d.features.std, d.x_train.square().std(0), rtol=0, atol=0)
    torch.testing.assert_close(
        d.phi_train, (d.x_train.square() - d.features.mean) / d.features.std, rtol=0, atol=0
    )


def test_standardised_features_have_mean_zero_std_one():
    x, _ = make_spheres(300, 8, 1.0, 1.3, gen(2), torch.float64)
    f = SquaredFeatures.fit(x)
    phi = f(x)
    assert phi.shape == x.shape
    torch.testing.assert_close(phi.mean(0), torch.zeros(8, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(phi.std(0), torch.ones(8, dtype=torch.float64), rtol=0, atol=1e-10)


def test_gradient_flows_through_feature_map():
    x, _ = make_spheres(10, 4, 1.0, 1.3, gen(5), torch.float64)
    f = SquaredFeatures.fit(x)
    v = torch.randn(10, 4, generator=gen(6), dtype=torch.float64)
    xs = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((f(xs) * v).sum(), xs)
    torch.testing.assert_close(g, 2 * x / f.std * v, rtol=1e-14, atol=0)


def test_spheres_in_float32():
    x, y = make_spheres(50, 3, 1.0, 1.3, gen(), torch.float32)
    assert x.dtype == y.dtype == torch.float32
    torch.testing.assert_close(
        x.norm(dim=-1), torch.where(y == OUTER, 1.3, 1.0).float(), rtol=0, atol=1e-6
    )
