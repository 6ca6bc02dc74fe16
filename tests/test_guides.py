"""The fast full-covariance guide against Pyro's ``AutoMultivariateNormal``: the same log
density, the same ELBO estimate and gradients for the same noise, the same SGD path; and the
ensemble draws (vectorised for autoguides, sequential otherwise) from the right distribution."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_mean

from bayes_spheres.data import load_spheres
from bayes_spheres.guides import AutoFullCovarianceNormal, NoiseCachedNormal, direction_scale
from bayes_spheres.inference import draws
from bayes_spheres.models import Flat, Hierarchical

D = 6


def random_factor(dim: int = D, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A mean, a positive diagonal and a strictly lower matrix far from the identity."""
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(dim, generator=g)
    scale = 0.5 + torch.rand(dim, generator=g)
    lower = torch.randn(dim, dim, generator=g).tril(-1)
    return loc, scale, lower


def as_mvn(loc, scale, lower) -> dist.MultivariateNormal:
    return dist.MultivariateNormal(loc, scale_tril=scale[:, None] * (lower + torch.eye(len(loc))))


@pytest.mark.parametrize("sample_shape", [(), (7,), (2, 3)])
def test_log_prob_of_its_own_draw_is_the_multivariate_normal_density(sample_shape):
    loc, scale, lower = random_factor()
    q = NoiseCachedNormal(loc, scale, lower)
    z = q.rsample(sample_shape)
    assert z.shape == (*sample_shape, D)
    torch.testing.assert_close(q.log_prob(z), as_mvn(loc, scale, lower).log_prob(z))
    # any other value takes the triangular solve, with the same answer
    other = z + 0.3
    torch.testing.assert_close(q.log_prob(other), as_mvn(loc, scale, lower).log_prob(other))


def test_gradient_of_log_q_at_its_draw_equals_the_multivariate_normal_one():
    """An ELBO-like ``f(z) - log q(z)`` at ``z = z(params, eps)``: through the noise, ``log q``
    must have the gradient of the usual density (which includes the score term)."""
    params = [t.clone().requires_grad_() for t in random_factor()]
    pyro.set_rng_seed(1)
    q = NoiseCachedNormal(params[0], params[1], params[2])
    z = q.rsample((5,))
    fast = torch.autograd.grad((z.pow(3).sum(-1) - q.log_prob(z)).sum(), params)
    pyro.set_rng_seed(1)
    z = as_mvn(*params).rsample((5,))
    slow = torch.autograd.grad((z.pow(3).sum(-1) - as_mvn(*params).log_prob(z)).sum(), params)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(
            a.tril(-1) if a.dim() == 2 else a, b.tril(-1) if b.dim() == 2 else b
        )


def test_expand_broadcasts_over_a_plate():
    loc, scale, lower = random_factor()
    q = NoiseCachedNormal(loc, scale, lower).expand((4,))
    assert q.batch_shape == (4,) and q.event_shape == (D,)
    z = q.rsample()
    assert z.shape == (4, D)
    torch.testing.assert_close(q.log_prob(z), as_mvn(loc, scale, lower).log_prob(z))


@pytest.fixture(scope="module")
def tiny_spheres():
    return load_spheres(dim=5, n_train=60, n_val=10, seed=0)


def paired_guides(model, data):
    """Pyro's guide and ours, set up on ``model`` and set to the same random parameters."""
    pair = []
    for cls in (AutoMultivariateNormal, AutoFullCovarianceNormal):
        q = cls(model, init_loc_fn=init_to_mean, init_scale=0.1)
        q(data.phi_train, data.y_train, subsample_size=20)
        pair.append(q)
    pyro_q, ours = pair
    loc, scale, lower = random_factor(pyro_q.latent_dim, seed=3)
    with torch.no_grad():
        pyro_q.loc.copy_(loc)
        ours.loc.copy_(loc)
        pyro_q.scale = scale
        ours.scale = scale
        pyro_q.scale_tril = lower + torch.eye(len(loc))
        ours.strict_lower.copy_(lower)
    return pyro_q, ours


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, JitTrace_ELBO], ids=["eager", "jit"])
def test_the_elbo_and_its_gradients_equal_auto_multivariate_normal_for_the_same_noise(
    tiny_spheres, elbo_cls
):
    d = tiny_spheres
    model = Flat()
    pyro_q, ours = paired_guides(model, d)
    assert pyro_q.latent_dim == ours.latent_dim == 6
    results = []
    for q in (pyro_q, ours):
        pyro.set_rng_seed(7)
        elbo = elbo_cls(ignore_jit_warnings=True) if elbo_cls is JitTrace_ELBO else elbo_cls()
        with poutine.trace(param_only=True) as params:
            loss = elbo.loss_and_grads(model, q, d.phi_train, d.y_train, subsample_size=20)
        grads = {
            name.rsplit(".", 1)[-1]: site["value"].unconstrained().grad.clone()
            for name, site in params.trace.nodes.items()
        }
        results.append((loss, grads))
    (loss_pyro, g_pyro), (loss_ours, g_ours) = results
    assert loss_ours == pytest.approx(loss_pyro, rel=1e-12)
    torch.testing.assert_close(g_ours["loc"], g_pyro["loc"])
    torch.testing.assert_close(g_ours["scale"], g_pyro["scale"])
    torch.testing.assert_close(g_ours["strict_lower"], g_pyro["scale_tril"].tril(-1))
    # the hook keeps the upper triangle and the diagonal out of the optimisation
    assert (g_ours["strict_lower"].triu() == 0).all()
    rows, cols = torch.tril_indices(6, 6, -1)
    assert g_ours["strict_lower"][rows, cols].abs().min() > 0


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_sgd_with_momentum_follows_the_same_path_as_auto_multivariate_normal(tiny_spheres, jit):
    """The paper's optimiser on the per-datum loss, as ``svi.fit`` runs it, from the same seed."""
    d = tiny_spheres
    model = Flat()
    n = len(d.y_train)
    fitted = []
    for cls in (AutoMultivariateNormal, AutoFullCovarianceNormal):
        pyro.clear_param_store()
        pyro.set_rng_seed(11)
        q = cls(model, init_loc_fn=init_to_mean, init_scale=0.1)
        elbo = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
        sgd = pyro.optim.SGD({"lr": 0.01, "momentum": 0.98})
        svi = SVI(poutine.scale(model, 1 / n), poutine.scale(q, 1 / n), sgd, elbo)
        losses = [svi.step(d.phi_train, d.y_train, subsample_size=20) for _ in range(100)]
        fitted.append((losses, q.get_posterior()))
    (losses_pyro, post_pyro), (losses_ours, post_ours) = fitted
    assert losses_ours == pytest.approx(losses_pyro, rel=1e-9)
    torch.testing.assert_close(post_ours.loc, post_pyro.loc)
    torch.testing.assert_close(post_ours.scale_tril, post_pyro.scale_tril)
    assert not torch.allclose(post_ours.scale_tril, 0.1 * torch.eye(6))  # it moved
    lower = pyro.get_param_store()["AutoFullCovarianceNormal.strict_lower"]
    assert (lower.triu() == 0).all()


# --- ensemble draws -------------------------------------------------------------------------


def fitted_flat_guide(data, bias: bool = True):
    model = Flat(bias=bias)
    q = AutoFullCovarianceNormal(model, init_loc_fn=init_to_mean, init_scale=0.1)
    q(data.phi_train, data.y_train)
    loc, scale, lower = random_factor(q.latent_dim, seed=5)
    with torch.no_grad():
        q.loc.copy_(loc)
        q.scale = scale
        q.strict_lower.copy_(lower)
    return model, q, as_mvn(loc, scale, lower)


def assert_draws_follow(x: torch.Tensor, target: dist.MultivariateNormal, z: float = 5.0) -> None:
    """Sample mean and covariance within ``z`` Monte Carlo standard errors of the target's."""
    n = x.shape[0]
    var = target.covariance_matrix.diagonal()
    mean_err = (x.mean(0) - target.loc) / (var / n).sqrt()
    assert mean_err.abs().max() < z, mean_err
    cov = target.covariance_matrix
    cov_se = ((var[:, None] * var[None, :] + cov.square()) / n).sqrt()
    cov_err = (torch.cov(x.T) - cov) / cov_se
    assert cov_err.abs().max() < z, cov_err


def test_vectorised_draws_follow_the_guide(tiny_spheres):
    pyro.set_rng_seed(0)
    model, q, target = fitted_flat_guide(tiny_spheres)
    ensemble, samples = draws.guide_ensemble(model, q, tiny_spheres, 4000)
    assert set(samples) == {"w", "b"}
    assert samples["w"].shape == (1, 4000, 5) and samples["b"].shape == (1, 4000)
    assert ensemble.size == 4000 and torch.equal(ensemble.w, samples["w"][0])
    assert_draws_follow(torch.cat([samples["w"][0], samples["b"][0, :, None]], 1), target)


def test_a_plain_guide_is_drawn_one_member_at_a_time(tiny_spheres):
    """A hand-written guide need not broadcast over a plate: it is traced per member."""
    pyro.set_rng_seed(0)
    model, _, target = fitted_flat_guide(tiny_spheres)

    def plain_guide(phi, y=None, subsample_size=None):
        z = pyro.sample("z", target, infer={"is_auxiliary": True})
        pyro.sample("w", dist.Delta(z[:5], event_dim=1))
        pyro.sample("b", dist.Delta(z[5]))

    _, samples = draws.guide_ensemble(model, plain_guide, tiny_spheres, 2000)
    assert set(samples) == {"w", "b"} and samples["w"].shape == (1, 2000, 5)
    assert_draws_follow(torch.cat([samples["w"][0], samples["b"][0, :, None]], 1), target)


def test_vectorised_draws_without_bias_give_a_zero_bias_per_member(tiny_spheres):
    pyro.set_rng_seed(0)
    model, q, _ = fitted_flat_guide(tiny_spheres, bias=False)
    ensemble, samples = draws.guide_ensemble(model, q, tiny_spheres, 30)
    assert samples["b"].shape == (1, 30) and (samples["b"] == 0).all()
    assert ensemble.w.shape == (30, 5) and ensemble.w.std(0).min() > 0


def test_vectorised_draws_of_the_hierarchical_guide_derive_w(tiny_spheres):
    pyro.set_rng_seed(0)
    model = Hierarchical(centered=False, learn_prior=True)
    q = direction_scale(model, init_scale=0.5)
    q(tiny_spheres.phi_train, tiny_spheres.y_train)
    _, samples = draws.guide_ensemble(model, q, tiny_spheres, 300)
    assert set(samples) == {"s", "w_decentered", "w", "b"}
    s, v = samples["s"], samples["w_decentered"]
    assert s.shape == (1, 300) and (s > 0).all() and s.std() > 0
    torch.testing.assert_close(samples["w"], s[..., None] * v, rtol=1e-14, atol=0)
    # the same guide as a plain function takes the sequential path: same sites and shapes
    _, seq = draws.guide_ensemble(model, lambda *args: q(*args), tiny_spheres, 3)
    assert {k: v.shape[2:] for k, v in seq.items()} == {k: v.shape[2:] for k, v in samples.items()}
