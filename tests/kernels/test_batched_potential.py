"""The generic path's forms of Pyro's potential (``kernels/potential.py``): batched
(``BatchedPotential``, all chains in one run of the model) and compiled (Pyro's
``jit_compile``), each used only where it equals Pyro's ``potential_fn`` point by point
(values and gradients), and point by point otherwise."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.util import initialize_model

from bayes_spheres.kernels import Slice, VectorizedMCMC
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    batched_potential,
    compiled_potential,
    differs_from_pyro,
    per_point,
    unravel,
)

Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)


def eight_schools() -> None:
    """Pyro's examples/eight_schools (non-centred): sites without a plate, a HalfCauchy."""
    eta = pyro.sample("eta", dist.Normal(torch.zeros(8, dtype=Y.dtype), 1.0))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1, dtype=Y.dtype), 10.0))
    tau = pyro.sample("tau", dist.HalfCauchy(25 * torch.ones(1, dtype=Y.dtype)))
    pyro.sample("obs", dist.Normal(mu + tau * eta, SIGMA), obs=Y)


def plated_simplex() -> None:
    """A plate, a simplex site (stick-breaking transform, event dim 1), a LKJ factor."""
    probs = pyro.sample("probs", dist.Dirichlet(torch.ones(3, dtype=Y.dtype)))
    chol = pyro.sample("chol", dist.LKJCholesky(3, torch.tensor(2.0, dtype=Y.dtype)))
    with pyro.plate("data", 4):
        scale = pyro.sample("scale", dist.LogNormal(torch.zeros((), dtype=Y.dtype), 1.0))
        pyro.sample("x", dist.MultivariateNormal(probs, scale_tril=chol * scale[..., None, None]),
                    obs=torch.ones(4, 3, dtype=Y.dtype))  # fmt: skip


def mixes_points() -> None:
    """Sums a latent site over all its dimensions: wrong under a points' plate."""
    x = pyro.sample("x", dist.Normal(torch.zeros(3, dtype=Y.dtype), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(x.sum(), 1.0), obs=torch.tensor(1.0, dtype=Y.dtype))


def _potentials(model):
    init, potential, transforms, prototype = initialize_model(model, num_chains=3)
    shapes = {name: value.shape[1:] for name, value in init.items()}
    per_point = lambda theta: potential(unravel(theta, shapes))  # noqa: E731
    theta = torch.cat([value.reshape(3, -1) for value in init.values()], 1).double()
    batched = BatchedPotential(model, (), {}, transforms, shapes, prototype)
    return per_point, batched, theta


@pytest.mark.parametrize("model", [eight_schools, plated_simplex], ids=["eight_schools", "plate"])
def test_batched_potential_is_pyros_point_by_point(model):
    """Values and gradients equal Pyro's potential_fn at random points (float64, 1e-10)."""
    pyro.set_rng_seed(0)
    per_point, batched, theta = _potentials(model)
    points = (theta[:1] + torch.randn(5, theta.shape[1], dtype=theta.dtype)).requires_grad_(True)
    each = torch.stack([per_point(row) for row in points])
    together = batched(points)
    (each_grad,) = torch.autograd.grad(each.sum(), points)
    (together_grad,) = torch.autograd.grad(together.sum(), points)
    assert together.shape == (5,)
    torch.testing.assert_close(together, each, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(together_grad, each_grad, rtol=1e-10, atol=1e-10)
    assert batched_potential(batched, per_point, theta) is None


def test_a_model_that_mixes_the_points_is_caught():
    """The probe finds the difference; the kernel then calls Pyro's potential per point and
    says why."""
    pyro.set_rng_seed(0)
    per_point, batched, theta = _potentials(mixes_points)
    assert "differs" in batched_potential(batched, per_point, theta)
    kernel = Slice(mixes_points, jit_compile=False)
    mcmc = MCMC(kernel, num_samples=5, warmup_steps=5, num_chains=1, disable_progbar=True)
    mcmc.run()
    info = kernel.diagnostics()
    assert info["potential"] == "per point" and "differs" in info["potential_reason"]


def test_the_kernel_batches_eight_schools_and_keeps_its_chain(monkeypatch):
    """Slice(eight_schools) uses the batched potential; its chains equal those it gives when
    the batched potential is refused (same seed), so the batching changes the cost only."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 1)
    runs = {}
    for refuse in (False, True):
        if refuse:
            monkeypatch.setattr(
                "bayes_spheres.kernels.paths.batched_potential", lambda *a: "refused"
            )
        pyro.set_rng_seed(3)
        kernel = Slice(eight_schools, jit_compile=False)
        mcmc = MCMC(kernel, num_samples=20, warmup_steps=20, num_chains=2, disable_progbar=True)
        mcmc.run()
        runs[refuse] = mcmc.get_samples(group_by_chain=True)["tau"]
        assert kernel.diagnostics()["potential"] == ("per point" if refuse else "batched")
    torch.testing.assert_close(runs[False], runs[True], rtol=1e-6, atol=1e-8)


def plated_normal() -> None:
    """A plate over the data: its subsample site is not a latent site."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=Y.dtype), 10.0))
    scale = pyro.sample("scale", dist.HalfNormal(torch.ones((), dtype=Y.dtype)))
    with pyro.plate("data", len(Y)):
        pyro.sample("y", dist.Normal(mu, scale), obs=Y)


@pytest.mark.parametrize("batch", [True, False])
def test_a_plated_model_is_batched_unless_refused(batch):
    """A model with a plate takes the batched potential (``batch_potential=False``: per
    point, and says so; one chain takes the compiled potential first, off here)."""
    pyro.set_rng_seed(0)
    kernel = Slice(plated_normal, batch_potential=batch, jit_compile=False)
    MCMC(kernel, num_samples=5, warmup_steps=5, num_chains=1, disable_progbar=True).run()
    info = kernel.diagnostics()
    assert info["potential"] == ("batched" if batch else "per point"), info["potential_reason"]


@pytest.mark.parametrize("model", [eight_schools, plated_simplex], ids=["eight_schools", "plate"])
def test_the_compiled_potential_is_pyros(model):
    """Pyro's potential recorded and replayed (``jit_compile``) has Pyro's values and
    gradients at random points (float64, 1e-10), and the kernel's check accepts it."""
    pyro.set_rng_seed(0)
    plain, _, theta = _potentials(model)
    compiled = per_point(compiled_potential(model, (), {}, _shapes(model)))
    points = (theta[:1] + torch.randn(5, theta.shape[1], dtype=theta.dtype)).requires_grad_(True)
    each = torch.stack([plain(row) for row in points])
    replayed = compiled(points)
    (each_grad,) = torch.autograd.grad(each.sum(), points)
    (replayed_grad,) = torch.autograd.grad(replayed.sum(), points)
    torch.testing.assert_close(replayed, each, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(replayed_grad, each_grad, rtol=1e-10, atol=1e-10)
    assert differs_from_pyro(compiled, plain, theta, "compiled potential") is None


def _shapes(model):
    init, _, _, _ = initialize_model(model)  # one chain: the sites' own shapes
    return {name: value.shape for name, value in init.items()}


def test_one_chain_replays_the_compiled_potential_and_several_are_batched(monkeypatch):
    """Under ``MCMC`` (one chain per ``setup``) the kernel takes the compiled potential;
    ``VectorizedMCMC`` (all chains at once) the batched one; ``jit_compile=False`` leaves one
    chain the batched potential."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 1)
    forms = {}
    for name, runner, chains, settings in (
        ("one chain", MCMC, 1, {}),
        ("several", VectorizedMCMC, 3, {}),
        ("off", MCMC, 1, {"jit_compile": False}),
    ):
        pyro.set_rng_seed(0)
        kernel = Slice(eight_schools, **settings)
        mcmc = runner(kernel, num_samples=4, warmup_steps=3, num_chains=chains,
                      disable_progbar=True)  # fmt: skip
        mcmc.run()
        if runner is VectorizedMCMC:  # the run's diagnostics, per chain
            forms[name] = mcmc.diagnostics()["potential"]["chain 0"]
        else:
            forms[name] = kernel.diagnostics()["potential"]
    assert forms == {"one chain": "compiled", "several": "batched", "off": "batched"}, forms


def freezes_a_value() -> None:
    """Takes a Python number from a latent value: a recording keeps it as a constant."""
    x = pyro.sample("x", dist.Normal(torch.zeros((), dtype=Y.dtype), 1.0))
    pyro.factor("f", -0.5 * float(x) * (x - 1.0) ** 2)


def test_a_recording_that_freezes_a_value_is_refused():
    """The recording's values differ from Pyro's away from the point it was made at: the
    check refuses it, and the kernel calls Pyro's potential per point (the batched
    potential fails too: ``float`` of several points) and says why."""
    pyro.set_rng_seed(0)
    kernel = Slice(freezes_a_value)
    MCMC(kernel, num_samples=3, warmup_steps=3, num_chains=1, disable_progbar=True).run()
    info = kernel.diagnostics()
    assert info["potential"] == "per point"
    assert "compiled potential's value differs" in info["potential_reason"]
    assert "batched potential failed" in info["potential_reason"]
