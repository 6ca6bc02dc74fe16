"""The slice kernel's conditional path (``bayes_spheres/kernels/conditional.py``) as users call
it, ``pyro.infer.MCMC(Slice(model))`` on a hierarchical logistic model: found from the model,
in both of Pyro's chain regimes, against posterior moments by quadrature within Monte Carlo
error; models it must not take refused with the reason."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from bayes_spheres.kernels import Slice

SEQUENTIAL, PARALLEL = 1, 16  # patched cpu counts (Pyro: workers when chains <= cpus - 1)
PRIOR_MEDIAN, PRIOR_LOG_SD = 2.0, 0.5


def centered(x, y):
    """``s ~ LogNormal(log 2, 0.5)``, ``w | s ~ N(0, s^2)``, ``b | s ~ N(0, s^2)``,
    ``y ~ Bernoulli(sigmoid(x w + b))``."""
    s = pyro.sample("s", dist.LogNormal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD))
    w = pyro.sample("w", dist.Normal(0.0, s))
    b = pyro.sample("b", dist.Normal(0.0, s))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * w + b), obs=y)


def noncentered(x, y):
    """:func:`centered` written as ``w = s z``, ``z ~ N(0, 1)`` (``b`` as before)."""
    s = pyro.sample("s", dist.LogNormal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD))
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, s))
    pyro.deterministic("w", s * z)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * s * z + b), obs=y)


@pytest.fixture
def data():
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, generator=g)
    y = torch.bernoulli(torch.sigmoid(2.0 * x - 0.5), generator=g)
    yield x, y
    torch.set_default_dtype(torch.float32)


def quadrature_moments(x, y) -> dict[str, tuple[float, float]]:
    """Posterior mean and standard deviation of ``s``, ``w`` and ``b`` on a grid over
    ``(log s, w, b)``."""
    u = torch.linspace(math.log(PRIOR_MEDIAN) - 3.0, math.log(PRIOR_MEDIAN) + 3.0, 121)
    w = torch.linspace(-12.0, 16.0, 281)
    b = torch.linspace(-12.0, 12.0, 241)
    uu, ww, bb = torch.meshgrid(u, w, b, indexing="ij")
    s = torch.exp(uu)
    logits = x * ww[..., None] + bb[..., None]
    log_joint = (
        dist.Normal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD).log_prob(uu)  # p(log s)
        + dist.Normal(0.0, s).log_prob(ww)
        + dist.Normal(0.0, s).log_prob(bb)
        + dist.Bernoulli(logits=logits).log_prob(y).sum(-1)
    )
    weight = torch.exp(log_joint - log_joint.max())
    weight = weight / weight.sum()
    moments = {}
    for name, value in (("s", s), ("w", ww), ("b", bb)):
        mean = float((weight * value).sum())
        moments[name] = (mean, float((weight * (value - mean) ** 2).sum().sqrt()))
    return moments


@pytest.mark.parametrize(
    ("model", "cpus"),
    [(centered, SEQUENTIAL), (noncentered, PARALLEL)],
    ids=["centered-sequential", "noncentered-parallel"],
)
def test_hierarchical_logistic_takes_the_conditional_path_to_the_quadrature_moments(
    model, cpus, data, monkeypatch
):
    x, y = data
    truth = quadrature_moments(x, y)
    pyro.set_rng_seed(0)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)
    mcmc = MCMC(Slice(model), num_samples=400, warmup_steps=100, num_chains=2,
                disable_progbar=True)  # fmt: skip
    mcmc.run(x, y)
    diagnostics = mcmc.diagnostics()
    assert set(diagnostics["path"].values()) == {"conditional"}
    assert "given ['s']" in diagnostics["path_reason"]["chain 0"]
    idata = az.from_pyro(mcmc)
    assert float(az.rhat(idata)["s"]) < 1.05
    samples = mcmc.get_samples(group_by_chain=True)
    for name, (mean, sd) in truth.items():
        draws = samples[name].numpy() if name in samples else None
        if draws is None:  # noncentered: w = s z, read off the draws
            draws = (samples["s"] * samples["z"]).numpy()
        ess = float(az.ess(np.asarray(draws)))
        mcse = sd / math.sqrt(ess)
        assert abs(draws.mean() - mean) < 4.5 * mcse, (name, draws.mean(), mean, mcse)
        assert abs(draws.std() / sd - 1.0) < 0.25, (name, draws.std(), sd)


def test_a_gaussian_site_with_nonlinear_logits_is_refused_with_the_reason(data, monkeypatch):
    x, y = data

    def cubic(x, y):
        s = pyro.sample("s", dist.LogNormal(0.0, 0.5))
        w = pyro.sample("w", dist.Normal(0.0, s))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Bernoulli(logits=x * w**3), obs=y)

    pyro.set_rng_seed(0)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    mcmc = MCMC(Slice(cubic), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run(x, y)
    diagnostics = mcmc.diagnostics()
    assert diagnostics["path"]["chain 0"] == "generic"
    assert "not conditional: " in diagnostics["path_reason"]["chain 0"]
