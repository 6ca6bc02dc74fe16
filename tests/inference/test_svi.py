"""SVI (Hoffman et al. 2013): the guides recover a conjugate Gaussian posterior, and
``svi.fit`` runs, draws, learns the prior and refuses a diverged fit."""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from bayes_spheres import guides
from bayes_spheres.data import load_spheres
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.guides import GUIDES, GuideName
from bayes_spheres.inference import Posterior, svi
from bayes_spheres.models import Flat, Hierarchical

SIGMA, TAU = 0.5, 2.0
N, D = 20, 3
SCALE_OBS, SCALE_OBS_SD = 8, 0.5


@pytest.fixture(scope="module")
def linear_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Correlated columns (so the posterior is far from diagonal), targets, and noisy
    observations of ``log s``."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(N, D, generator=g, dtype=torch.float64)
    mix = torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 1.0]], dtype=torch.float64)
    x = z @ mix
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = y + SIGMA * torch.randn(N, generator=g, dtype=torch.float64)
    log_s = 0.3 + SCALE_OBS_SD * torch.randn(SCALE_OBS, generator=g, dtype=torch.float64)
    return x, y, log_s


def gaussian_linear(x: torch.Tensor, y: torch.Tensor, log_s: torch.Tensor) -> None:
    """``w ~ N(0, TAU^2 I)``, ``y ~ N(x w, SIGMA^2)``; written to broadcast over particles."""
    w = pyro.sample("w", dist.Normal(x.new_zeros(D), TAU).to_event(1))
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal((w * x).sum(-1), SIGMA), obs=y)


def direction_times_scale(x: torch.Tensor, y: torch.Tensor, log_s: torch.Tensor) -> None:
    """``s ~ LogNormal(0, 1)``, ``v ~ N(0, I)``, ``w = s v``; ``y`` sees ``v`` and ``log_s``
    sees ``s``, so the posterior is ``q(v) q(s)`` exactly: Gaussian ``v``, log-normal ``s``."""
    s = pyro.sample("s", dist.LogNormal(x.new_zeros(()), 1.0))
    v = pyro.sample("v", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
    pyro.deterministic("w", s[..., None] * v, event_dim=1)
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal((v * x).sum(-1), SIGMA), obs=y)
    with pyro.plate("scale_obs", SCALE_OBS):
        pyro.sample("log_s", dist.Normal(s.log(), SCALE_OBS_SD), obs=log_s)


def linear_posterior(x: torch.Tensor, y: torch.Tensor, prior_sd: float):
    cov = torch.linalg.inv(x.T @ x / SIGMA**2 + torch.eye(D, dtype=x.dtype) / prior_sd**2)
    return cov @ x.T @ y / SIGMA**2, cov


def fit_by_svi(model, guide, data, steps: int = 300, seed: int = 0) -> None:
    """Adam with the learning rate decayed 100-fold, 64 particles per step: the remaining
    noise in the fitted parameters is a few hundredths of a posterior sd."""
    pyro.set_rng_seed(seed)
    optim = pyro.optim.ClippedAdam({"lr": 0.2, "lrd": 0.01 ** (1 / steps)})
    elbo = Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=1)
    fit = SVI(model, guide, optim, elbo)
    for _ in range(steps):
        fit.step(*data)


def assert_gaussian_close(loc, cov, mean, expected_cov, tol: float = 0.1) -> None:
    """``loc`` within ``tol`` posterior sds, ``cov`` within ``tol`` in correlation units."""
    sd = expected_cov.diagonal().sqrt()
    assert ((loc - mean) / sd).abs().max() < tol, (loc, mean)
    assert ((cov - expected_cov) / sd[:, None] / sd).abs().max() < tol, (cov, expected_cov)


def test_full_covariance_recovers_the_conjugate_posterior(linear_data):
    x, y, _ = linear_data
    mean, cov = linear_posterior(x, y, TAU)
    sd = cov.diagonal().sqrt()
    corr = cov / sd[:, None] / sd
    assert corr[0, 1] < -0.5  # a diagonal guide could not match this within tolerance

    q = guides.full_covariance(gaussian_linear, init_scale=0.1)
    assert isinstance(q, guides.AutoFullCovarianceNormal)
    fit_by_svi(gaussian_linear, q, linear_data)
    post = q.get_posterior()
    assert_gaussian_close(post.loc.detach(), post.covariance_matrix.detach(), mean, cov)


def test_direction_scale_recovers_the_factorised_posterior(linear_data):
    x, y, log_s = linear_data
    mean_v, cov_v = linear_posterior(x, y, 1.0)
    precision_s = 1.0 + SCALE_OBS / SCALE_OBS_SD**2
    mean_log_s = float(log_s.sum()) / SCALE_OBS_SD**2 / precision_s
    sd_log_s = precision_s**-0.5

    q = guides.direction_scale(direction_times_scale, init_scale=0.1)
    fit_by_svi(direction_times_scale, q, linear_data)
    full, scale = q[0], q[1]
    # the full-covariance part is over the direction only; s has its own normal on log s
    assert full.loc.shape == (D,)
    assert list(full.median()) == ["v"]
    post = full.get_posterior()
    assert_gaussian_close(post.loc.detach(), post.covariance_matrix.detach(), mean_v, cov_v)
    assert abs(float(scale.locs.s.detach()) - mean_log_s) < 0.1 * sd_log_s
    assert abs(float(scale.scales.s.detach()) / sd_log_s - 1) < 0.1

    draw = q(*linear_data)
    assert set(draw) == {"s", "v"}
    assert draw["s"].shape == () and float(draw["s"].detach()) > 0
    assert draw["v"].shape == (D,)


def test_guide_registry():
    assert GUIDES[GuideName.FULL_COVARIANCE] is guides.full_covariance
    assert GUIDES[GuideName.DIRECTION_SCALE] is guides.direction_scale
    assert set(GUIDES) == set(GuideName)


# --- svi.fit on the spheres -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_spheres():
    return load_spheres(dim=5, n_train=60, n_val=100, seed=0)


TINY = dict(num_steps=300, batch_size=20)


ENGINES = {
    "pyro-eager": {"engine": "pyro", "jit": False},
    "pyro-jit": {"engine": "pyro", "jit": True},
    "closed_form": {"engine": "closed_form"},
}


@pytest.mark.parametrize("engine", ENGINES)
def test_fit_returns_an_ensemble_and_the_elbo_trace(tiny_spheres, engine):
    d = tiny_spheres
    pyro.set_rng_seed(0)
    post = svi.fit(Flat(), d, members=50, **ENGINES[engine], **TINY)
    assert isinstance(post, Posterior)
    ens = post.ensemble
    assert isinstance(ens, Ensemble) and ens.size == 50 and ens.dim == 5
    assert ens.features is d.features
    assert torch.isfinite(ens.w).all() and torch.isfinite(ens.b).all()
    assert ens.w.std(0).min() > 0  # draws, not one point
    assert set(post.samples) == {"w", "b"}
    assert post.samples["w"].shape == (1, 50, 5) and post.samples["b"].shape == (1, 50)
    assert torch.equal(post.samples["w"][0], ens.w)
    assert isinstance(post.elbo, np.ndarray) and post.elbo.shape == (300,)
    assert np.isfinite(post.elbo).all()
    assert post.elbo[-50:].mean() > post.elbo[:50].mean()  # it learnt something
    info = post.info["svi"]
    assert set(info) == {"final_loss", "steps", "guide", "engine", "step_ms", "step_cpu_ms"}
    assert info["step_ms"] > 0 and info["step_cpu_ms"] > 0
    assert info["steps"] == 300 and info["guide"] == "full_covariance"
    assert info["engine"] == ENGINES[engine]["engine"]
    assert info["final_loss"] == pytest.approx(-float(post.elbo.mean()), rel=1e-12)


def test_per_datum_loss_is_the_summed_loss_over_n(tiny_spheres):
    """Same seed, same first draws: the first step's loss (before any update) differs only
    by the factor 1/N."""
    d = tiny_spheres
    first = {}
    for scale in ("per_datum", "sum"):
        pyro.clear_param_store()
        pyro.set_rng_seed(4)
        post = svi.fit(
            Flat(),
            d,
            members=2,
            num_steps=1,
            batch_size=20,
            loss_scale=scale,
            jit=False,
        )
        first[scale] = float(post.elbo[0])
    assert first["sum"] == pytest.approx(60 * first["per_datum"], rel=1e-10)


def test_hierarchical_direction_scale_with_a_learnt_prior(tiny_spheres):
    d = tiny_spheres
    model = Hierarchical(centered=False, learn_prior=True)
    pyro.set_rng_seed(0)
    post = svi.fit(model, d, members=50, guide="direction_scale", jit=False, **TINY)
    s, v = post.samples["s"], post.samples["w_decentered"]
    assert set(post.samples) == {"s", "w_decentered", "w", "b"}
    assert s.shape == (1, 50) and v.shape == (1, 50, 5)
    assert post.samples["b"].shape == (1, 50)
    assert (s > 0).all()
    torch.testing.assert_close(post.samples["w"], s[..., None] * v, rtol=1e-14, atol=0)
    torch.testing.assert_close(post.ensemble.w, post.samples["w"][0], rtol=0, atol=0)
    assert post.info["svi"]["guide"] == "direction_scale"

    store = pyro.get_param_store()
    assert {"s_prior_loc", "s_prior_scale"} <= set(store.keys())
    # the prior was fitted: it moved from its initial value, and its scale stayed positive
    assert float(store["s_prior_loc"].detach()) != pytest.approx(
        math.log(model.scale_median), abs=1e-6
    )
    assert float(store["s_prior_scale"].detach()) > 0
    # the guide's full-covariance part covers the direction and the bias, not s
    names = [n for n in store.keys() if n.endswith(".loc")]
    assert len(names) == 1 and store[names[0]].shape == (5 + 1,)


def test_a_diverging_fit_raises_naming_the_learning_rate(tiny_spheres):
    pyro.set_rng_seed(0)
    with pytest.raises(svi.DivergedError) as err:
        svi.fit(
            Flat(),
            tiny_spheres,
            members=5,
            optim=svi.SGDSettings(lr=1e3, momentum=0.99),
            loss_scale="sum",
            jit=False,
            **TINY,
        )
    msg = str(err.value)
    assert "inference.optim.lr" in msg and "1000.0" in msg, msg
    assert "\n" not in msg
    assert issubclass(svi.DivergedError, FloatingPointError)


def test_settings_are_validated_by_their_enums(tiny_spheres):
    with pytest.raises(ValueError, match="nope"):
        svi.fit(Flat(), tiny_spheres, guide="nope", **TINY)
    with pytest.raises(ValueError, match="mean"):
        svi.fit(Flat(), tiny_spheres, loss_scale="mean", **TINY)


def test_a_fit_that_fails_at_the_first_step_quotes_no_earlier_loss(tiny_spheres, monkeypatch):
    """At step 0 there is no earlier loss: the message must not quote ``losses[0]``, which
    ``np.empty`` left uninitialised (here filled with a sentinel to make that visible)."""
    d = tiny_spheres
    x = d.x_train.clone()
    x[0, 0] = float("nan")  # a NaN feature makes the very first loss NaN
    broken = dataclasses.replace(d, x_train=x)
    sentinel_np = types.SimpleNamespace(**vars(np))
    sentinel_np.empty = lambda n: np.full(n, 123456.0)
    monkeypatch.setattr(svi, "np", sentinel_np)  # svi's numpy only
    with pytest.raises(svi.DivergedError, match="step 0") as err:
        svi.fit(Flat(), broken, members=5, num_steps=5, batch_size=60, jit=False)
    assert "1.235e+05" not in str(err.value) and "123456" not in str(err.value), str(err.value)


def test_the_jit_elbo_of_hier_svi_with_a_learnt_prior_equals_the_eager_one(tiny_spheres):
    """The traced ELBO sees the prior's parameters inside the model: after the tracing call,
    the same noise gives the same loss and gradients as the eager ELBO."""
    d = tiny_spheres
    model = Hierarchical(centered=False, learn_prior=True)
    q = GUIDES[GuideName.DIRECTION_SCALE](model, init_scale=0.3)
    args = (d.phi_train, d.y_train)
    kwargs = {"subsample_size": 20}
    jit_elbo = pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True)
    jit_elbo.loss_and_grads(model, q, *args, **kwargs)  # traces
    for p in pyro.get_param_store().values():
        p.unconstrained().grad = None
    results = []
    for elbo in (jit_elbo, Trace_ELBO()):
        pyro.set_rng_seed(3)
        with pyro.poutine.trace(param_only=True) as params:
            loss = elbo.loss_and_grads(model, q, *args, **kwargs)
        grads = {}
        for name, site in params.trace.nodes.items():
            p = site["value"].unconstrained()
            grads[name] = p.grad.clone()
            p.grad = None
        results.append((loss, grads))
    (loss_jit, g_jit), (loss_eager, g_eager) = results
    assert {"s_prior_loc", "s_prior_scale"} <= set(g_jit)
    assert loss_jit == pytest.approx(loss_eager, rel=1e-10)
    assert set(g_jit) == set(g_eager)
    for name in g_jit:
        torch.testing.assert_close(g_jit[name], g_eager[name], msg=name)
    assert float(g_jit["s_prior_loc"].abs()) > 0


def test_fit_restores_the_thread_count(tiny_spheres):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pyro.set_rng_seed(0)
        svi.fit(Flat(), tiny_spheres, members=5, threads=1, **TINY)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
