"""The pure steps of slice sampling (Neal 2003), called directly."""

from __future__ import annotations

import math

import pytest
import torch

from bayes_spheres.kernels.steps import scale_update, shrink, slice_update, step_out


def std_normal(t: torch.Tensor) -> torch.Tensor:
    return -0.5 * t**2


def test_step_out_brackets_the_slice():
    gen = torch.Generator().manual_seed(0)
    c = 200
    level = torch.log(torch.rand(c, generator=gen))  # slice of N(0,1) at t = 0: |t| < r
    left = -0.3 * torch.rand(c, generator=gen)
    right = left + 0.3
    steps = torch.full((c,), 1000)
    lo, hi, expansions, calls = step_out(std_normal, level, left, right, steps, steps)
    radius = torch.sqrt(-2 * level)
    assert bool((lo <= -radius).all()) and bool((hi >= radius).all())
    assert bool((lo <= 0).all()) and bool((hi >= 0).all())
    # each side stops at its first point off the slice: one width further would be too far
    assert bool((lo + 0.3 > -radius).all()) and bool((hi - 0.3 < radius).all())
    assert int(expansions.max()) > 0 and calls >= 2


def test_step_out_respects_the_step_budget():
    level = torch.full((3,), -1e9)  # everything is on the slice
    left, right = torch.full((3,), -0.5), torch.full((3,), 0.5)
    lo, hi, expansions, _ = step_out(
        std_normal, level, left, right, torch.tensor([0, 2, 5]), torch.tensor([3, 0, 1])
    )
    torch.testing.assert_close(lo, torch.tensor([-0.5, -2.5, -5.5]))
    torch.testing.assert_close(hi, torch.tensor([3.5, 0.5, 1.5]))
    assert expansions.tolist() == [3, 2, 6]


def test_shrink_returns_a_point_on_the_slice_inside_the_interval():
    gen = torch.Generator().manual_seed(1)
    c = 500
    level = torch.log(torch.rand(c, generator=gen))
    left, right = torch.full((c,), -10.0), torch.full((c,), 7.0)
    t, logp, shrinks, _ = shrink(std_normal, level, left, right, gen)
    assert bool((logp > level).all())
    torch.testing.assert_close(logp, std_normal(t))
    assert bool((t > -10).all() and (t < 7).all())
    assert int(shrinks.max()) > 0


def test_shrink_stays_put_when_rounding_leaves_no_slice():
    level = torch.tensor([0.0])  # the current point is exactly at the level: no point above it
    t, logp, shrinks, _ = shrink(std_normal, level, torch.tensor([-1.0]), torch.tensor([1.0]))
    assert t.item() == 0.0 and logp.item() == 0.0 and shrinks.item() >= 200


def _gamma3(c: int, gen: torch.Generator) -> torch.Tensor:
    """Exact Gamma(3, 1) draws from the seeded generator: a sum of three Exp(1)."""
    return -torch.log(torch.rand(c, 3, generator=gen, dtype=torch.float64)).sum(-1)


@pytest.mark.parametrize("width", [0.1, 1.0, 20.0])
def test_update_leaves_a_skewed_target_invariant(width):
    """Start C independent chains from the exact target (Gamma(3, 1) in t); one update each
    must leave the distribution unchanged: compare moments and quantiles with the truth."""
    gen = torch.Generator().manual_seed(2)
    c = 20000
    shape = 3.0
    t0 = _gamma3(c, gen).float()

    def log_gamma(t: torch.Tensor) -> torch.Tensor:  # density of x = t0 + t
        x = t0.reshape(-1, *([1] * (t.dim() - 1))) + t
        out = (shape - 1) * torch.log(x.clamp_min(1e-300)) - x
        return torch.where(x > 0, out, torch.full_like(x, -math.inf))

    step = slice_update(log_gamma, log_gamma(torch.zeros(c, 1))[:, 0], width, 10, gen)
    x = t0 + step.t
    assert bool((step.t != 0).float().mean() > 0.99)
    se_mean = math.sqrt(shape / c)
    assert abs(float(x.mean()) - shape) < 4 * se_mean
    assert abs(float(x.var()) - shape) < 4 * math.sqrt((6 * shape + 2 * shape**2) / c)
    # skewness 2/sqrt(k): a sign error in the update would flip or shrink it
    skew = float(((x - x.mean()) ** 3).mean() / x.var() ** 1.5)
    assert abs(skew - 2 / math.sqrt(shape)) < 0.12
    torch.testing.assert_close(step.logp, log_gamma(step.t[:, None])[:, 0])


def _radial_draws(dim: int, jacobian_dim: int, moves: int = 3) -> torch.Tensor:
    """|theta|^2 of C chains started at exact N(0, I_dim) draws after ``moves`` scale moves
    whose Jacobian term uses ``jacobian_dim`` (``dim`` is the right one)."""
    gen = torch.Generator().manual_seed(4)
    theta = torch.randn(20000, dim, generator=gen, dtype=torch.float64)
    for _ in range(moves):
        sq = (theta**2).sum(-1, keepdim=True)

        def logp_ray(s: torch.Tensor, sq: torch.Tensor = sq) -> torch.Tensor:
            return -0.5 * torch.exp(2 * s) * sq

        step = scale_update(logp_ray, logp_ray(torch.zeros_like(sq))[:, 0], jacobian_dim, 1.0,
                            20, gen)  # fmt: skip
        torch.testing.assert_close(step.logp, logp_ray(step.t[:, None])[:, 0])
        theta = theta * torch.exp(step.t)[:, None]
    return (theta**2).sum(-1)


@pytest.mark.parametrize("dim", [1, 5, 50])
def test_scale_move_leaves_the_radius_of_a_standard_normal_invariant(dim):
    """Liu & Sabatti (2000): theta <- g theta with g ~ p(g theta) g^(P-1) leaves N(0, I_P)
    invariant, so |theta|^2 stays chi^2_P: mean P, variance 2P (4 Monte Carlo SEs)."""
    r2 = _radial_draws(dim, dim)
    c = len(r2)
    assert abs(float(r2.mean()) - dim) < 4 * math.sqrt(2 * dim / c)
    assert abs(float(r2.var()) - 2 * dim) < 4 * math.sqrt((8 * dim**2 + 48 * dim) / c)


def test_scale_move_without_the_jacobian_is_detected():
    """The test above has power: dropping the g^(P-1) term shrinks the radius far outside it."""
    dim = 5
    r2 = _radial_draws(dim, 1)
    assert abs(float(r2.mean()) - dim) > 10 * math.sqrt(2 * dim / len(r2))


def test_scale_move_leaves_a_skewed_target_invariant_in_one_dimension():
    """For P = 1 and theta > 0 the scaling orbit is the whole support, and the move is a slice
    update of log theta with the Jacobian e^s: started from exact Gamma(3, 1) draws, the skewed
    target must stay (a wrong Jacobian or sign moves mean, variance and skewness)."""
    gen = torch.Generator().manual_seed(5)
    c, shape = 20000, 3.0
    theta = _gamma3(c, gen)

    def logp_ray(s: torch.Tensor) -> torch.Tensor:
        x = torch.exp(s) * theta[:, None]
        return (shape - 1) * torch.log(x) - x

    step = scale_update(logp_ray, logp_ray(torch.zeros(c, 1, dtype=torch.float64))[:, 0], 1,
                        1.0, 20, gen)  # fmt: skip
    x = theta * torch.exp(step.t)
    assert abs(float(x.mean()) - shape) < 4 * math.sqrt(shape / c)
    assert abs(float(x.var()) - shape) < 4 * math.sqrt((6 * shape + 2 * shape**2) / c)
    skew = float(((x - x.mean()) ** 3).mean() / x.var() ** 1.5)
    assert abs(skew - 2 / math.sqrt(shape)) < 0.12
