"""``Slice`` as users call it, ``pyro.infer.MCMC(Slice(model), ...)``: each behaviour Pyro's
own kernels have (and that an earlier version of this kernel lacked) pinned by a test that
fails without it; the fast path found from the model, a user's own included.

Pyro runs chains in worker processes when ``num_chains <= cpu_count - 1``, else one after
another; the tests patch ``torch.multiprocessing.cpu_count`` to get each regime on any
machine."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS
from scipy import stats

from bayes_spheres.kernels import Slice
from tests.stats.conftest import assert_mean, assert_sd

SEQUENTIAL, PARALLEL = 1, 16  # patched cpu counts


def _mcmc(kernel, cpus, monkeypatch, chains=2, draws=200, warmup=100, **kw):
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                disable_progbar=True, **kw)  # fmt: skip
    mcmc.run()
    return mcmc


def gamma_normal():
    pyro.sample("s", dist.Gamma(3.0, 1.0))
    pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))


@pytest.mark.parametrize(
    "cpus",
    [SEQUENTIAL, pytest.param(PARALLEL, marks=pytest.mark.slow)],  # parallel: test_mcmc.py
    ids=["sequential", "parallel"],
)
def test_constrained_sites_come_back_constrained(cpus, monkeypatch):
    """Gamma(3, 1): every draw positive, mean 3 within 4 MCSE, in both regimes (in worker
    processes the parent's kernel has no transforms of its own: Pyro must be left to find
    them)."""
    pyro.set_rng_seed(0)
    mcmc = _mcmc(Slice(gamma_normal), cpus, monkeypatch)
    s = mcmc.get_samples(group_by_chain=True)["s"].numpy()
    assert s.shape == (2, 200) and (s > 0).all()
    assert abs(s.mean() - 3.0) < 4 * s.std() / math.sqrt(float(az.ess(s)))


def test_sequential_chains_start_from_their_own_points(monkeypatch):
    """Three chains one after another: three different starting points and first draws."""
    pyro.set_rng_seed(1)
    starts = []

    def hook(kernel, params, stage, i):
        if stage.startswith("Warmup") and i == 0:
            starts.append(float(params["x"][0]))

    kernel = Slice(gamma_normal)
    mcmc = _mcmc(kernel, SEQUENTIAL, monkeypatch, chains=3, draws=20, warmup=10, hook_fn=hook)
    assert len(set(starts)) == 3
    first = mcmc.get_samples(group_by_chain=True)["x"][:, 0, 0]
    assert len(set(first.tolist())) == 3


def normal_normal(data):
    y = pyro.sample("y", dist.Normal(0.0, 1.0))
    pyro.sample("obs", dist.Normal(y, 1.0), obs=data)


@pytest.mark.parametrize("directions", ["hamiltonian", "factor"])
def test_sequential_consistent(directions, monkeypatch):
    """Pyro's ``tests/infer/mcmc/test_mcmc_api.py::test_sequential_consistent``: with chains
    one after another, a chain depends only on its own seed, nothing is left from the chain
    before (``VectorizedMCMC`` advances a run's chains together instead: there the run, not
    the chain, is the unit; docs/mcmc.md)."""

    def run(order):
        class Seeded(Slice):
            def setup(self, warmup_steps, *args, **kwargs):
                self._chain_id = order[0] if "_chain_id" not in self.__dict__ else order[1]
                pyro.set_rng_seed(self._chain_id)
                super().setup(warmup_steps, *args, **kwargs)

        kernel = Seeded(normal_normal, directions=directions)
        return _run_with(kernel, torch.tensor([1.0]), monkeypatch)

    first, second = run((0, 1)), run((1, 0))
    torch.testing.assert_close(first[0], second[1])
    torch.testing.assert_close(first[1], second[0])


def _run_with(kernel, data, monkeypatch):
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    mcmc = MCMC(kernel, num_samples=50, warmup_steps=50, num_chains=2, disable_progbar=True)
    mcmc.run(data)
    return mcmc.get_samples(group_by_chain=True)["y"]


def test_a_model_without_latent_sites_gives_no_samples(monkeypatch):
    def model():
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))

    pyro.set_rng_seed(0)
    nuts = MCMC(NUTS(model), num_samples=5, warmup_steps=5, disable_progbar=True)
    nuts.run()
    mcmc = MCMC(Slice(model), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples() == nuts.get_samples() == {}


def funnel():
    y = pyro.sample("y", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(5), torch.exp(y / 2)).to_event(1))


@pytest.mark.slow  # the default suite: stats/test_pyro_known_answers.py's funnel
def test_divergences_are_reported_on_the_centred_funnel(monkeypatch):
    """The centred funnel has a neck no fixed step resolves: Pyro's NUTS reports divergences
    there, and so must the hamiltonian mode (an energy rise above 1,000), per chain, after
    warm-up, and ArviZ must see them. A chain of 300 draws reports none about one time in
    four (seeds 0-5: 0 to 11 per chain, 3 to 25 per four chains), so four chains are run and
    their total is checked."""
    pyro.set_rng_seed(0)
    mcmc = _mcmc(Slice(funnel, mass="unit"), SEQUENTIAL, monkeypatch, chains=4, draws=300)
    divergences = mcmc.diagnostics()["divergences"]
    assert set(divergences) == {f"chain {i}" for i in range(4)}
    assert sum(len(v) for v in divergences.values()) > 0
    assert all(0 <= t < 300 for v in divergences.values() for t in v)
    diverging = az.from_pyro(mcmc, log_likelihood=False).sample_stats["diverging"].values
    assert int(diverging.sum()) == sum(len(v) for v in divergences.values())


@pytest.mark.slow  # the default suite: stats/test_pyro_known_answers.py's obs_mask, factor, float32
def test_factor_mode_in_float32_with_an_imputed_site(monkeypatch):
    """Pyro's default dtype and an ``obs_mask`` site: mu ~ N(0, 1), y_i ~ N(mu, 1) with one of
    five values missing. The imputed value's posterior is N(m, 1 + 1/5) with m = sum / 5;
    in float32 the warm-up covariance's small eigenvalues used to be lost and the imputed
    variance came out at a fifth of this, with a good-looking ESS."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        _imputed_site_in_float32(monkeypatch)
    finally:
        torch.set_default_dtype(previous)


def _imputed_site_in_float32(monkeypatch):
    data = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3])
    mask = torch.tensor([True, True, True, True, False])

    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=data, obs_mask=mask)

    pyro.set_rng_seed(0)
    mcmc = _mcmc(Slice(model, directions="factor"), SEQUENTIAL, monkeypatch, draws=250, warmup=80)
    # Pyro's imputed site has the data's shape; only its masked entries are in the model
    imputed = mcmc.get_samples(group_by_chain=True)["y_unobserved"][..., ~mask]
    assert imputed.dtype == torch.float32
    imputed = imputed.numpy().reshape(2, -1)
    mean, var = float(data[:4].sum()) / 5, 1.0 + 1.0 / 5
    ess = float(az.ess(imputed))
    assert abs(imputed.mean() - mean) < 4 * math.sqrt(var / ess)
    # Var of a sample variance ~ 2 var^2 / ESS for a Gaussian
    assert abs(imputed.var() - var) < 4 * var * math.sqrt(2.0 / ess)


def logistic_regression(x, y):
    """A user's own model (not one of the study's): Bernoulli with probs, a plate, a
    correlated Gaussian prior built from two sites."""
    scale = pyro.sample("scale_free", dist.Normal(0.0, 2.0))
    beta = pyro.sample("beta", dist.Normal(scale * torch.ones(3), 1.0).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Bernoulli(logits=x @ beta + 0.5), obs=y)


def _logistic_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = (torch.rand(40, generator=g, dtype=torch.float64) < torch.sigmoid(x[:, 0])).double()
    return x, y


@pytest.mark.parametrize("directions", ["coordinate", "factor"])
def test_a_users_logistic_model_takes_the_fast_path_with_the_same_chain(directions, monkeypatch):
    """Found, not chosen: the fast path for a model of the kind, and the same chain as
    ``fast=False`` (the generic path through Pyro's potential) for the same seed."""
    x, y = _logistic_data()
    runs = {}
    for fast in (True, False):
        pyro.set_rng_seed(3)
        kernel = Slice(logistic_regression, directions=directions, fast=fast, scale_moves=1)
        monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
        mcmc = MCMC(kernel, num_samples=30, warmup_steps=30, num_chains=2, disable_progbar=True)
        mcmc.run(x, y)
        runs[fast] = mcmc
    assert runs[True].diagnostics()["path"] == {"chain 0": "fast", "chain 1": "fast"}
    assert runs[False].diagnostics()["path"]["chain 0"] == "generic"
    for site in ("beta", "scale_free"):
        a, b = (runs[f].get_samples(group_by_chain=True)[site] for f in (True, False))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("prior", "reason"),
    [
        (dist.StudentT(3.0, 0.0, 1.0), "not Gaussian"),
        (dist.Gamma(2.0, 1.0), "support"),
    ],
    ids=["student-t", "gamma"],
)
def test_models_of_another_kind_take_the_generic_path(prior, reason, monkeypatch):
    x, y = _logistic_data()

    def model(x, y):
        beta = pyro.sample("beta", prior.expand([3]).to_event(1))
        pyro.sample("obs", dist.Bernoulli(logits=x @ beta.to(x)).to_event(1), obs=y)

    pyro.set_rng_seed(0)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    mcmc = MCMC(Slice(model), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run(x, y)
    diagnostics = mcmc.diagnostics()
    assert diagnostics["path"]["chain 0"] == "generic"
    assert reason in diagnostics["path_reason"]["chain 0"]


def test_warmup_trajectory_defaults_by_path(monkeypatch):
    """``warmup_trajectory=None``: 1.5 on the fast path, ``trajectory`` on the generic one;
    a value given is kept on either."""
    x, y = _logistic_data()
    seen = {}
    for fast, given in ((True, None), (False, None), (True, 2.0), (False, 2.0)):
        pyro.set_rng_seed(0)
        kernel = Slice(logistic_regression, fast=fast, trajectory=3.0, warmup_trajectory=given)
        monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
        MCMC(kernel, num_samples=2, warmup_steps=2, disable_progbar=True).run(x, y)
        seen[fast, given] = kernel.diagnostics()["warmup_trajectory"]
    assert seen == {(True, None): 1.5, (False, None): 3.0, (True, 2.0): 2.0, (False, 2.0): 2.0}


def test_sequential_chains_honour_initial_params(monkeypatch):
    """Initial points given to ``MCMC`` (one per chain, unconstrained) start each chain."""
    init = {"s": torch.log(torch.tensor([1.0, 5.0])), "x": torch.tensor([[3.0, 3.0], [-3.0, 0.0]])}
    seen = []

    def hook(kernel, params, stage, i):
        if stage.startswith("Warmup") and i == 0:
            start = kernel.initial_params
            seen.append(torch.cat([start["s"].reshape(1), start["x"]]))

    pyro.set_rng_seed(0)
    _mcmc(Slice(gamma_normal), SEQUENTIAL, monkeypatch, draws=5, warmup=5,
          initial_params=init, hook_fn=hook)  # fmt: skip
    expected = torch.cat([init["s"][:, None], init["x"]], 1)
    torch.testing.assert_close(torch.stack(seen), expected)


@pytest.mark.parametrize("mass", ["diagonal", pytest.param("dense", marks=pytest.mark.slow)])
def test_mass_adaptation_on_the_generic_path(mass, monkeypatch):
    """A Gaussian with scales 0.1 and 10 (and, dense, correlation 0.9): the adapted inverse
    mass matrix is its covariance to within the Welford estimate's noise, and the draws hit
    the variances."""
    cov = torch.tensor([[0.01, 0.0], [0.0, 100.0]])
    if mass == "dense":
        cov = torch.tensor([[1.0, 0.9 * 10], [0.9 * 10, 100.0]])

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(2), cov))

    pyro.set_rng_seed(0)
    kernel = Slice(model, mass=mass, scale_moves=0)
    mcmc = _mcmc(kernel, SEQUENTIAL, monkeypatch, draws=400, warmup=300)
    x = mcmc.get_samples(group_by_chain=True)["x"].numpy()
    for j in range(2):
        ess = float(az.ess(x[..., j]))
        var = float(cov[j, j])
        assert abs(x[..., j].var() - var) < 4 * var * math.sqrt(2.0 / ess), (j, ess)
    diagonal = kernel.diagnostics()["inverse_mass_diagonal"]
    np.testing.assert_allclose(diagonal, cov.diagonal().numpy(), rtol=0.5)


def test_a_potential_undefined_in_the_tails_ends_trajectories_there(monkeypatch):
    """``rho ~ N(0, 1/2)`` in a model defined only where ``[[1, rho], [rho, 1]]`` is positive
    definite (its Cholesky factor is taken): Pyro's potential raises where ``|rho| >= 1``, which
    Pyro's HMC reads as not a number. The kernel's trajectories end there too, and ``rho`` is
    the normal truncated to (-1, 1) (scipy's ``truncnorm``)."""

    def model():
        rho = pyro.sample("rho", dist.Normal(0.0, 0.5))
        one = torch.ones(())
        matrix = torch.stack([torch.stack([one, rho]), torch.stack([rho, one])])
        pyro.factor("defined", 0.0 * torch.linalg.cholesky(matrix).sum())

    pyro.set_rng_seed(0)
    mcmc = _mcmc(Slice(model), SEQUENTIAL, monkeypatch, draws=600, warmup=200)
    rho = mcmc.get_samples(group_by_chain=True)["rho"].numpy()
    truth = stats.truncnorm(-2.0, 2.0, scale=0.5)
    assert np.abs(rho).max() < 1.0
    assert_mean(rho, truth.mean())
    assert_sd(rho, truth.std())
