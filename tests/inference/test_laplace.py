"""Laplace approximation (MacKay 2003, ch. 27): exact on a Gaussian-linear model, where the
posterior is Gaussian and ``N(MAP, H^-1)`` is the posterior itself."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_spheres.data import load_spheres
from bayes_spheres.inference import Posterior, laplace
from bayes_spheres.inference import map as map_
from bayes_spheres.models import Flat, Hierarchical

TAU, TAU_C, SIGMA = 2.0, 3.0, 0.5
N, D = 30, 3


def gaussian_linear(x: torch.Tensor, y: torch.Tensor) -> None:
    """``w ~ N(0, TAU^2 I)``, ``y ~ N(x w, SIGMA^2)``."""
    w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[1]), TAU).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


def gaussian_linear_intercept(x: torch.Tensor, y: torch.Tensor) -> None:
    """As :func:`gaussian_linear` with a second site: a scalar intercept ``c ~ N(0, TAU_C^2)``."""
    w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[1]), TAU).to_event(1))
    c = pyro.sample("c", dist.Normal(x.new_zeros(()), TAU_C))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ w + c, SIGMA), obs=y)


@pytest.fixture
def linear_problem() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # correlated columns, so that the posterior covariance is far from diagonal
    z = torch.randn(N, D, generator=g, dtype=torch.float64)
    x = z @ torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    w_true = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = x @ w_true + 0.7 + SIGMA * torch.randn(N, generator=g, dtype=torch.float64)
    return x, y


def analytic_posterior(
    design: torch.Tensor, y: torch.Tensor, prior_sd: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a Gaussian-linear posterior with prior ``N(0, diag(sd^2))``."""
    prior_precision = torch.diag(torch.tensor(prior_sd, dtype=torch.float64) ** -2)
    cov = torch.linalg.inv(design.T @ design / SIGMA**2 + prior_precision)
    return cov @ design.T @ y / SIGMA**2, cov


def unpacked(guide, latent: torch.Tensor) -> dict[str, torch.Tensor]:
    """The guide's flat latent vector split into its sites, in the guide's own order (its
    median's: Pyro's public view of that order; every site here is real, so the sizes are
    the latent vector's)."""
    shapes = {name: value.shape for name, value in guide.median().items()}
    parts = latent.split([math.prod(shape) for shape in shapes.values()], dim=-1)
    pairs = zip(shapes.items(), parts, strict=True)
    return {name: part.reshape(shape) for (name, shape), part in pairs}


def test_one_site_is_the_analytic_posterior(linear_problem):
    x, y = linear_problem
    mean, cov = analytic_posterior(x, y, [TAU] * D)
    assert cov[0, 1].abs() / cov[0, 0].sqrt() / cov[1, 1].sqrt() > 0.3  # truly correlated

    guide, info = laplace.laplace_guide(gaussian_linear, x, y)
    assert info["hessian_jitter"] == 0.0
    # the Hessian of a quadratic is exact wherever L-BFGS stopped: the covariance to rounding
    torch.testing.assert_close(guide.loc, mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(guide.get_posterior().covariance_matrix, cov, rtol=1e-10, atol=0)
    # a real-valued site: the unconstrained latent is w itself
    torch.testing.assert_close(unpacked(guide, guide.loc)["w"], mean, rtol=0, atol=1e-7)


def test_two_sites_are_the_analytic_joint_posterior(linear_problem):
    x, y = linear_problem
    design = torch.cat([x, torch.ones(N, 1, dtype=torch.float64)], dim=1)  # [w, c]
    mean, cov = analytic_posterior(design, y, [TAU] * D + [TAU_C])

    guide, info = laplace.laplace_guide(gaussian_linear_intercept, x, y)
    assert info["hessian_jitter"] == 0.0
    # put the analytic answer in the guide's site order before comparing
    order = list(guide.median())
    assert sorted(order) == ["c", "w"]
    index = {"w": list(range(D)), "c": [D]}
    perm = [i for name in order for i in index[name]]
    torch.testing.assert_close(guide.loc, mean[perm], rtol=0, atol=1e-7)
    torch.testing.assert_close(
        guide.get_posterior().covariance_matrix, cov[perm][:, perm], rtol=1e-10, atol=0
    )
    # and per site, whatever the order
    sites = unpacked(guide, guide.loc)
    torch.testing.assert_close(sites["w"], mean[:D], rtol=0, atol=1e-7)
    torch.testing.assert_close(sites["c"], mean[D], rtol=0, atol=1e-7)
    # the guide's draws go to the right sites: intercept draws have the intercept's variance
    pyro.set_rng_seed(0)
    n = 4000
    c = torch.stack([guide()["c"] for _ in range(n)])
    var_c = float(cov[D, D])
    assert abs(float(c.var()) / var_c - 1) < 5 * math.sqrt(2 / (n - 1))
    assert abs(float(c.mean()) - float(mean[D])) < 5 * math.sqrt(var_c / n)


# --- jittered Cholesky --------------------------------------------------------------------


def test_jittered_cholesky_adds_nothing_to_a_positive_definite_matrix():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    h = a @ a.T + 0.1 * torch.eye(4, dtype=torch.float64)
    chol, jitter = laplace.jittered_cholesky(h)
    assert jitter == 0.0
    torch.testing.assert_close(chol, torch.linalg.cholesky(h), rtol=0, atol=0)


def test_jittered_cholesky_jitters_a_singular_matrix():
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    h = torch.outer(v, v)  # rank one, exactly representable: the second pivot is exactly 0
    assert torch.linalg.cholesky_ex(h).info != 0
    chol, jitter = laplace.jittered_cholesky(h)
    assert jitter > 0.0
    assert jitter <= 1e-3 * float(h.diagonal().mean())  # small next to h
    assert torch.equal(chol, chol.tril()) and (chol.diagonal() > 0).all()
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(chol @ chol.T, h + jitter * eye, rtol=0, atol=1e-12)


def test_jittered_cholesky_refuses_a_negative_definite_matrix():
    h = -torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    with pytest.raises(torch.linalg.LinAlgError, match="not positive definite"):
        laplace.jittered_cholesky(h)


# --- on the spheres ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_spheres():
    return load_spheres(dim=10, n_train=100, n_val=500, seed=0)


def test_laplace_covariance_is_the_inverse_logistic_hessian(tiny_spheres):
    """At the MAP, the Hessian of the negative log joint of Bayesian logistic regression is
    ``A^T diag(p (1 - p)) A + prior precision`` with ``A = [phi, 1]``: written by hand."""
    d = tiny_spheres
    model = Flat(sigma=10.0, bias=True, bias_scale=5.0)
    guide, info = laplace.laplace_guide(model, d.phi_train, d.y_train)
    assert info["hessian_jitter"] == 0.0
    sites = unpacked(guide, guide.loc)
    w, b = sites["w"], sites["b"]
    latents, _ = map_.map_estimate(model, d.phi_train, d.y_train)
    torch.testing.assert_close(w, latents["w"], rtol=0, atol=1e-5)
    torch.testing.assert_close(b, latents["b"], rtol=0, atol=1e-5)

    p = torch.sigmoid(d.phi_train @ w + b)
    a = torch.cat([d.phi_train, torch.ones(len(p), 1, dtype=torch.float64)], dim=1)
    prior_precision = torch.diag(torch.tensor([10.0**-2] * 10 + [5.0**-2], dtype=torch.float64))
    h = a.T @ ((p * (1 - p))[:, None] * a) + prior_precision
    order = list(guide.median())
    perm = [*range(10), 10] if order == ["w", "b"] else [10, *range(10)]
    cov = guide.get_posterior().covariance_matrix
    torch.testing.assert_close(cov, torch.linalg.inv(h)[perm][:, perm], rtol=1e-6, atol=1e-12)


def test_fit_draws_members_around_the_map(tiny_spheres):
    d = tiny_spheres
    model = Flat()
    members = 1000
    pyro.set_rng_seed(0)
    post = laplace.fit(model, d, members=members, seed=0)
    assert isinstance(post, Posterior)
    ens = post.ensemble
    assert ens.size == members and ens.dim == 10 and ens.features is d.features
    assert post.samples["w"].shape == (1, members, 10)
    assert post.samples["b"].shape == (1, members)
    assert torch.equal(post.samples["w"][0], ens.w) and torch.equal(post.samples["b"][0], ens.b)
    assert post.info["laplace"]["hessian_jitter"] == 0.0

    map_post = map_.fit(model, d)
    centre = torch.cat([map_post.ensemble.w[0], map_post.ensemble.b])
    guide, _ = laplace.laplace_guide(model, d.phi_train, d.y_train)
    order = list(guide.median())
    assert order == ["w", "b"]
    cov = guide.get_posterior().covariance_matrix
    draws = torch.cat([ens.w, ens.b[:, None]], dim=1)  # [members, 11]

    # the mean of the draws: n (mean - MAP)^T cov^-1 (mean - MAP) ~ chi^2 with 11 dof
    diff = draws.mean(0) - centre
    stat = float(members * diff @ torch.linalg.solve(cov, diff))
    assert stat < 37.37, stat  # chi^2_11 quantile at 1 - 1e-4
    # each coordinate's spread is the Laplace variance (sample variance SE: sqrt(2 / (n - 1)))
    ratio = draws.var(0) / cov.diagonal()
    assert (ratio - 1).abs().max() < 5 * math.sqrt(2 / (members - 1)), ratio
    # and the draws are correlated as the Laplace covariance says
    sd = cov.diagonal().sqrt()
    corr = torch.corrcoef(draws.T)
    torch.testing.assert_close(corr, cov / sd[:, None] / sd, rtol=0, atol=5 / math.sqrt(members))


def test_fit_noncentered_draws_a_positive_scale(tiny_spheres):
    pyro.set_rng_seed(1)
    post = laplace.fit(Hierarchical(centered=False), tiny_spheres, members=200)
    s, v = post.samples["s"][0], post.samples["w_decentered"][0]
    assert s.shape == (200,) and v.shape == (200, 10)
    assert (s > 0).all()
    torch.testing.assert_close(post.ensemble.w, s[:, None] * v, rtol=1e-14, atol=0)
