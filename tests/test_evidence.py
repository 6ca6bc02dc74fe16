"""Annealed importance sampling (bayes_spheres/evidence.py) against evidences known in closed
form or by quadrature, within the estimator's own error bar."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_spheres.evidence import (
    Tempering,
    annealed_importance_sampling,
    temperature_schedule,
)


def linear_gaussian(x, y, prior_scale=1.5, noise=0.7):
    """``w ~ N(0, prior_scale^2 I)``, ``y ~ N(x w, noise^2)``: evidence in closed form.
    (``(x * w).sum(-1)`` rather than ``x @ w``: it broadcasts over a batch of ``w``, so the
    particles' potential is one run of the model.)"""
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1]), prior_scale).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((x * w).sum(-1), noise), obs=y)


def linear_gaussian_evidence(x, y, prior_scale=1.5, noise=0.7) -> float:
    covariance = noise**2 * torch.eye(len(y)) + prior_scale**2 * x @ x.T
    return float(dist.MultivariateNormal(torch.zeros(len(y)), covariance).log_prob(y))


def logistic_1d(x, y):
    """``w ~ N(0, 2^2)``, ``y ~ Bernoulli(sigmoid(x w))``: one latent, evidence by
    quadrature."""
    w = pyro.sample("w", dist.Normal(0.0, 2.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * w), obs=y)


def logistic_1d_evidence(x, y) -> float:
    grid = torch.linspace(-30, 30, 200_001, dtype=torch.float64)
    log_joint = dist.Normal(0.0, 2.0).log_prob(grid) + dist.Bernoulli(
        logits=x[:, None] * grid
    ).log_prob(y[:, None]).sum(0)
    top = log_joint.max()
    return float(top + torch.log(torch.trapezoid(torch.exp(log_joint - top), grid)))


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_tempered_scales_only_the_models_own_observations(float64):
    x, y = torch.randn(5, 2), torch.randn(5)
    w = torch.tensor([0.3, -0.2])
    model = Tempering(beta=0.25)(linear_gaussian)
    trace = pyro.poutine.trace(pyro.poutine.condition(model, {"w": w})).get_trace(x, y)
    trace.compute_log_prob()
    assert trace.nodes["w"]["scale"] == 1.0  # conditioned from outside: not data
    prior = dist.Normal(torch.zeros(2), 1.5).to_event(1).log_prob(w)
    likelihood = dist.Normal((x * w).sum(-1), 0.7).log_prob(y).sum()
    assert torch.allclose(trace.log_prob_sum(), prior + 0.25 * likelihood, rtol=1e-12)


def test_schedule_runs_from_prior_to_posterior():
    betas = temperature_schedule(10, power=2.0)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 11
    assert torch.all(betas[1:] > betas[:-1])
    with pytest.raises(ValueError, match="temperatures=0"):
        temperature_schedule(0)


def test_ais_matches_the_closed_form_evidence_of_a_linear_gaussian_model(float64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 2, generator=g)
    y = x @ torch.tensor([1.0, -2.0]) + 0.7 * torch.randn(20, generator=g)
    truth = linear_gaussian_evidence(x, y)
    evidence = annealed_importance_sampling(
        linear_gaussian, x, y, particles=200, temperatures=100, seed=0
    )
    assert evidence.effective_particles > 50
    assert abs(evidence.log_evidence - truth) < 4 * evidence.standard_error, (
        evidence.log_evidence, truth, evidence.standard_error
    )  # fmt: skip
    assert evidence.standard_error < 0.1
    short = [
        annealed_importance_sampling(
            linear_gaussian, x, y, particles=20, temperatures=10, seed=seed
        ).log_evidence
        for seed in (3, 3, 4)
    ]
    assert short[0] == short[1] != short[2]  # the same seed, the same number


def test_ais_matches_quadrature_on_a_one_dimensional_logistic_model(float64):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, generator=g)
    y = torch.bernoulli(torch.sigmoid(1.5 * x), generator=g)
    truth = logistic_1d_evidence(x, y)
    evidence = annealed_importance_sampling(
        logistic_1d, x, y, particles=200, temperatures=50, seed=0
    )
    assert abs(evidence.log_evidence - truth) < 4 * evidence.standard_error, (
        evidence.log_evidence, truth, evidence.standard_error
    )  # fmt: skip
    assert evidence.standard_error < 0.05


def test_ais_without_annealing_is_plain_importance_sampling_from_the_prior(float64):
    """One temperature: the weights are the likelihoods of prior draws; with few particles
    the error bar is wide, and the estimate still falls within it (a failing case for an
    estimator that ignored the weights)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 2, generator=g)
    y = x @ torch.tensor([1.0, -2.0]) + 0.7 * torch.randn(20, generator=g)
    evidence = annealed_importance_sampling(
        linear_gaussian, x, y, particles=50, temperatures=1, seed=0
    )
    assert evidence.standard_error > 0.3
    assert evidence.log_evidence < linear_gaussian_evidence(x, y) + 4 * evidence.standard_error


def test_bad_settings_are_refused(float64):
    x, y = torch.randn(5, 2), torch.randn(5)
    with pytest.raises(ValueError, match="particles=0"):
        annealed_importance_sampling(linear_gaussian, x, y, particles=0)
    assert math.isfinite(
        annealed_importance_sampling(
            linear_gaussian, x, y, particles=2, temperatures=2
        ).log_evidence
    )
