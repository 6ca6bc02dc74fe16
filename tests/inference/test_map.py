"""MAP by L-BFGS (paper, Appendix A): exact on a Gaussian-linear model, sound on the spheres."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_spheres.data import load_spheres
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference import map as map_
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.metrics import avg_confidence, validation_error
from bayes_spheres.models import Flat, Hierarchical, SharedMean

TAU, SIGMA = 2.0, 0.5


def gaussian_linear(x: torch.Tensor, y: torch.Tensor) -> None:
    w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[1]), TAU).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


@pytest.fixture
def linear_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    w_true = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = x @ w_true + SIGMA * torch.randn(30, generator=g, dtype=torch.float64)
    return x, y


def closed_form(x, y):
    precision = x.T @ x / SIGMA**2 + torch.eye(3, dtype=torch.float64) / TAU**2
    return torch.linalg.solve(precision, x.T @ y / SIGMA**2)


def test_map_estimate_matches_closed_form_posterior_mean(linear_problem):
    x, y = linear_problem
    latents, info = map_.map_estimate(gaussian_linear, x, y)
    assert set(latents) == {"w"}
    torch.testing.assert_close(latents["w"], closed_form(x, y), rtol=0, atol=1e-6)
    assert info["grad_norm_max"] < 1e-6
    assert info["iterations"] >= 1


def test_flat_potential_is_negative_log_joint(linear_problem):
    x, y = linear_problem
    pot = FlatPotential.from_model(gaussian_linear, x, y)
    assert pot.size == 3
    w = torch.tensor([0.3, -0.2, 1.1], dtype=torch.float64)
    r = y - x @ w
    expected = (
        0.5 * (w / TAU).square().sum()
        + 3 * math.log(TAU)
        + 0.5 * (r / SIGMA).square().sum()
        + len(y) * math.log(SIGMA)
        + (3 + len(y)) * 0.5 * math.log(2 * math.pi)
    )
    assert float(pot(w)) == pytest.approx(float(expected), rel=1e-12)
    assert torch.equal(pot.ravel(pot.unravel(w)), w)


def test_map_with_a_positive_latent_is_returned_constrained():
    # The potential works on u = log s, where (Jacobian included) the density of
    # s ~ LogNormal(mu, sd) is Normal(u; mu, sd): the optimum is u = mu, i.e. s = exp(mu).
    def model():
        pyro.sample("s", dist.LogNormal(torch.tensor(0.3, dtype=torch.float64), 0.5))

    latents, _ = map_.map_estimate(model)
    assert float(latents["s"]) == pytest.approx(math.exp(0.3), rel=1e-7)


def test_constrain_maps_unconstrained_values_into_the_support():
    def model():
        pyro.sample("s", dist.LogNormal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))

    pot = FlatPotential.from_model(model)
    u = {"s": torch.tensor(-2.0, dtype=torch.float64), "z": torch.tensor(-2.0, dtype=torch.float64)}
    c = pot.constrain(u)
    assert float(c["s"]) == pytest.approx(math.exp(-2.0), rel=1e-12)
    assert float(c["z"]) == -2.0


@pytest.fixture(scope="module")
def small_spheres():
    return load_spheres(dim=20, n_train=200, n_val=1000, seed=0)


def test_fit_on_spheres_gives_a_one_member_ensemble(small_spheres):
    d = small_spheres
    model = Flat(sigma=10.0, bias=True, bias_scale=10.0)
    post = map_.fit(model, d, members=50, seed=3)
    assert isinstance(post, Posterior)
    ens = post.ensemble
    assert isinstance(ens, Ensemble) and ens.size == 1 and ens.dim == 20
    assert ens.features is d.features
    assert validation_error(ens, d.x_val, d.y_val) == 0.0
    assert avg_confidence(ens, d.x_val, d.y_val) > 0.9
    assert post.info["map"]["grad_norm_max"] < 1e-6

    # stationarity of the penalised likelihood, written by hand:
    # d/dw [-log p] = phi^T (sigmoid(a) - y) + w / sigma^2, and likewise for b
    w, b = ens.w[0], ens.b[0]
    a = d.phi_train @ w + b
    resid = torch.sigmoid(a) - d.y_train
    torch.testing.assert_close(
        d.phi_train.T @ resid + w / 100.0, torch.zeros(20, dtype=torch.float64), rtol=0, atol=1e-6
    )
    assert abs(float(resid.sum() + b / 100.0)) < 1e-6

    # the samples are shaped [chain, draw, ...] and agree with the ensemble
    torch.testing.assert_close(post.samples["w"][0, 0], w, rtol=0, atol=0)
    torch.testing.assert_close(post.samples["b"][0, 0], b, rtol=0, atol=0)


def test_fit_is_deterministic_and_ignores_members_and_seed(small_spheres):
    model = Flat(bias=False)
    a = map_.fit(model, small_spheres, members=1, seed=0).ensemble
    b = map_.fit(model, small_spheres, members=7, seed=9).ensemble
    assert torch.equal(a.w, b.w) and torch.equal(a.b, b.b)
    assert float(a.b[0]) == 0.0


@pytest.mark.parametrize(
    "model", [Hierarchical(centered=False), SharedMean()], ids=["hier_noncentered", "shared_mean"]
)
def test_fit_other_supported_models(small_spheres, model):
    post = map_.fit(model, small_spheres)
    ens = post.ensemble
    assert ens.size == 1
    assert torch.isfinite(ens.w).all()
    assert post.info["map"]["grad_norm_max"] < 1e-5
    assert validation_error(ens, small_spheres.x_val, small_spheres.y_val) == 0.0
    if "s" in post.samples:  # w = s v with s > 0
        s, v = post.samples["s"][0, 0], post.samples["w_decentered"][0, 0]
        assert float(s) > 0
        torch.testing.assert_close(ens.w[0], s * v, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "model",
    [Flat(), Hierarchical(centered=False), SharedMean()],
    ids=["flat", "hier_noncentered", "shared_mean"],
)
def test_fit_returns_a_stationary_point_of_the_potential(small_spheres, model):
    """Map the returned latents back to the unconstrained space (Pyro's transforms go
    constrained -> unconstrained) and check the gradient of the potential vanishes there."""
    d = small_spheres
    post = map_.fit(model, d)
    pot = FlatPotential.from_model(model, d.phi_train, d.y_train)
    latents = {k: post.samples[k][0, 0] for k in pot.shapes}
    unconstrained = {
        k: pot.transforms[k](v) if k in pot.transforms else v for k, v in latents.items()
    }
    theta = pot.ravel(unconstrained).requires_grad_(True)
    (g,) = torch.autograd.grad(pot(theta), theta)
    assert torch.isfinite(g).all()
    assert float(g.abs().max()) < 1e-5
