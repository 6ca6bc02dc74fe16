"""The generic path's fused potential and gradient (``kernels/fused_gradient.py``) against the
library path it replaces: Pyro's potential with its gradient by autograd, at random points of
a published model, and the same chain through ``pyro.infer.MCMC`` with and without it."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.util import initialize_model

import bayes_spheres.kernels.paths as paths
from bayes_spheres.benchmarks import load
from bayes_spheres.kernels import Slice
from bayes_spheres.kernels.fused_gradient import fused_gradient, value_and_gradient
from bayes_spheres.kernels.potential import unravel


def _pyro_potential(model):
    init, potential_fn, _, _ = initialize_model(model)
    shapes = {name: value.shape for name, value in init.items()}
    like = torch.cat([value.reshape(-1) for value in init.values()]).detach()[None]
    return (lambda theta: potential_fn(unravel(theta, shapes))), like


@pytest.mark.parametrize("name", ["eight_schools", "german_credit_probit"])
def test_the_fused_gradient_is_pyros(name):
    """Values and gradients equal Pyro's potential and its autograd gradient to 1e-12
    relative at points the check never saw, far from the one it was recorded at."""
    torch.manual_seed(0)
    potential, like = _pyro_potential(load(name).model)
    fused, why = fused_gradient(potential, like)
    assert fused is not None, why
    reference = value_and_gradient(potential)
    for _ in range(5):
        point = like[0] + 2.0 * torch.randn_like(like[0])
        for got, want in zip(fused(point), reference(point), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_potential_the_tracer_cannot_record_is_refused_with_the_reason():
    """A potential that branches in Python on a value cannot be recorded as one graph."""

    def potential(theta):
        return (theta**2).sum() if theta[0] > 0 else (theta**4).sum()

    fused, why = fused_gradient(potential, torch.ones(1, 3, dtype=torch.float64))
    assert fused is None
    assert why.startswith("fused gradient failed")


def test_the_same_chain_as_pyros_potential_and_autograd(monkeypatch):
    """``MCMC(Slice(model))`` on the non-centred eight schools gives the same draws with the
    fused gradient as with the compiled potential and autograd it replaces."""
    target = load("eight_schools_noncentered")
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 1)

    def draws() -> tuple[np.ndarray, str]:
        pyro.set_rng_seed(0)
        mcmc = MCMC(Slice(target.model), num_samples=60, warmup_steps=40, num_chains=1,
                    disable_progbar=True)  # fmt: skip
        mcmc.run()
        samples = mcmc.get_samples()
        x = np.concatenate([v.reshape(60, -1).numpy() for v in samples.values()], 1)
        return x, mcmc.diagnostics()["potential_reason"]["chain 0"]

    fused, reason = draws()
    assert "fused gradient: equal" in reason
    monkeypatch.setattr(paths, "fused_gradient", lambda potential, like: (None, "off"))
    plain, reason = draws()
    assert "fused" not in reason.replace("off", "")
    np.testing.assert_allclose(fused, plain, rtol=1e-9, atol=1e-12)


def test_a_factorisation_keeps_autograd_where_pyro_raises():
    """A model defined only where ``[[1, rho], [rho, 1]]`` is positive definite (its Cholesky
    factor is taken): the replay would drop the factorisation's check and give numbers where
    Pyro's potential raises, so no fused graph is made, and the compiled potential with
    autograd raises there as Pyro's does."""

    def model():
        rho = pyro.sample("rho", dist.Normal(0.0, 0.5))
        one = torch.ones(())
        matrix = torch.stack([torch.stack([one, rho]), torch.stack([rho, one])])
        pyro.factor("defined", torch.linalg.cholesky(matrix).sum())

    potential, like = _pyro_potential(model)
    fused, why = fused_gradient(potential, like)
    assert fused is None
    assert "factorisation" in why
    with pytest.raises(RuntimeError, match="positive-definite"):
        potential(torch.tensor([5.0]))


def test_a_potential_that_raises_at_a_probe_point_is_refused():
    """Where Pyro's potential raises at a probe point (here: at every call after the one the
    recording makes), nothing can be compared there, and the fused graph is refused with the
    reason instead of stopping the run."""
    calls = []

    def potential(theta):
        calls.append(theta)
        if len(calls) > 1:
            raise ValueError("outside the support")
        return (theta**2).sum()

    fused, why = fused_gradient(potential, torch.ones(1, 2, dtype=torch.float64))
    assert fused is None
    assert why == "fused gradient not checked: ValueError at a probe point"
