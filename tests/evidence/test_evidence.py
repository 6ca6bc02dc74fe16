"""Annealed importance sampling (bayes_spheres/evidence/) against evidences known in closed
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
    evidence_over_site,
    temperature_schedule,
    thermodynamic_schedule,
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


def logistic_2d(x, y):
    """``w ~ N(0, 2^2)``, ``b ~ N(0.5, 1)``, ``y ~ Bernoulli(sigmoid(x w + b))``: two latent
    sites, one of them an offset; evidence by quadrature on a grid."""
    w = pyro.sample("w", dist.Normal(0.0, 2.0))
    b = pyro.sample("b", dist.Normal(0.5, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * w + b), obs=y)


def logistic_2d_evidence(x, y) -> float:
    w = torch.linspace(-16, 16, 1601, dtype=torch.float64)
    b = torch.linspace(-8, 9, 851, dtype=torch.float64)
    logits = x[:, None, None] * w[:, None] + b
    log_joint = (
        dist.Normal(0.0, 2.0).log_prob(w)[:, None]
        + dist.Normal(0.5, 1.0).log_prob(b)
        + dist.Bernoulli(logits=logits).log_prob(y[:, None, None]).sum(0)
    )
    top = log_joint.max()
    inner = torch.trapezoid(torch.exp(log_joint - top), b, dim=1)
    return float(top + torch.log(torch.trapezoid(inner, w)))


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


@pytest.mark.parametrize("transition", ["hamiltonian", "coordinate"])
def test_ais_matches_quadrature_on_a_one_dimensional_logistic_model(float64, transition):
    """Both moves: slice updates along Hamiltonian trajectories of the fast path's tempered
    target (``auto`` picks it for this model) and coordinate sweeps through Pyro's
    potential."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, generator=g)
    y = torch.bernoulli(torch.sigmoid(1.5 * x), generator=g)
    truth = logistic_1d_evidence(x, y)
    evidence = annealed_importance_sampling(
        logistic_1d, x, y, particles=200, temperatures=50, seed=0, transition=transition
    )
    assert evidence.info["transition"] == transition
    assert abs(evidence.log_evidence - truth) < 4 * evidence.standard_error, (
        evidence.log_evidence, truth, evidence.standard_error
    )  # fmt: skip
    assert evidence.standard_error < 0.05


def test_hamiltonian_ais_matches_quadrature_with_an_offset_and_two_sites(float64):
    """The fast path read off a model with two latent sites, one an offset with a prior mean
    (the whitening's mean and the logits' constant both enter), and data that move the
    posterior far from the prior."""
    g = torch.Generator().manual_seed(5)
    x = 2.0 * torch.randn(40, generator=g)
    y = torch.bernoulli(torch.sigmoid(2.5 * x - 1.0), generator=g)
    truth = logistic_2d_evidence(x, y)
    evidence = annealed_importance_sampling(
        logistic_2d, x, y, particles=200, temperatures=100, seed=0
    )
    assert evidence.info["transition"] == "hamiltonian"
    assert abs(evidence.log_evidence - truth) < 4 * evidence.standard_error, (
        evidence.log_evidence, truth, evidence.standard_error
    )  # fmt: skip
    assert evidence.standard_error < 0.1


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
    with pytest.raises(ValueError, match="transition='leapfrog': must be one of auto"):
        annealed_importance_sampling(linear_gaussian, x, y, transition="leapfrog")
    with pytest.raises(ValueError, match=r"step_size=-0\.1"):
        annealed_importance_sampling(logistic_1d, x[:, 0], (y > 0).double(), step_size=-0.1)
    # a Gaussian likelihood has no Hamiltonian fast path: said, naming why
    with pytest.raises(ValueError, match="transition='hamiltonian' needs a logistic"):
        annealed_importance_sampling(linear_gaussian, x, y, transition="hamiltonian")
    auto = annealed_importance_sampling(linear_gaussian, x, y, particles=2, temperatures=2)
    assert (
        auto.info["transition"] == "coordinate"
        and "not an unscaled Bernoulli" in (auto.info["reason"])
    )
    assert math.isfinite(
        annealed_importance_sampling(
            linear_gaussian, x, y, particles=2, temperatures=2
        ).log_evidence
    )


def hierarchical_logistic(x, y):
    """``s ~ LogNormal(log 2, 0.5)``, ``w | s ~ N(0, s^2)``, ``y ~ Bernoulli(sigmoid(x w))``:
    a scale mixture of :func:`logistic_1d`-like models."""
    s = pyro.sample("s", dist.LogNormal(math.log(2.0), 0.5))
    w = pyro.sample("w", dist.Normal(0.0, s))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * w), obs=y)


def hierarchical_logistic_evidence(x, y) -> float:
    """By quadrature over ``u = log s`` (2,001 points) of the quadrature over ``w``."""
    u = torch.linspace(math.log(2.0) - 4.0, math.log(2.0) + 4.0, 2001, dtype=torch.float64)
    w = torch.linspace(-40, 40, 8001, dtype=torch.float64)
    log_likelihood = dist.Bernoulli(logits=x[:, None] * w).log_prob(y[:, None]).sum(0)
    inner = torch.stack([
        torch.logsumexp(dist.Normal(0.0, torch.exp(ui)).log_prob(w) + log_likelihood, 0)
        for ui in u
    ]) + math.log(float(w[1] - w[0]))  # fmt: skip
    log_joint = dist.Normal(math.log(2.0), 0.5).log_prob(u) + inner
    top = log_joint.max()
    return float(top + torch.log(torch.trapezoid(torch.exp(log_joint - top), u)))


def test_a_scale_integrated_out_by_quadrature_over_conditional_evidences(float64):
    """The hierarchical model's evidence as Gauss-Hermite quadrature over its scale of the
    evidences given the scale (each model conditioned on ``s`` is on the fast path), against
    two-dimensional quadrature."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, generator=g)
    y = torch.bernoulli(torch.sigmoid(2.0 * x), generator=g)
    truth = hierarchical_logistic_evidence(x, y)
    result = evidence_over_site(
        hierarchical_logistic, "s", x, y, nodes=7, particles=100, temperatures=50
    )
    assert len(result.conditional) == 7
    assert all(e.info["transition"] == "hamiltonian" for e in result.conditional)
    assert torch.allclose(torch.exp(result.log_coefficients).sum(), torch.tensor(1.0).double())
    assert abs(result.log_evidence - truth) < 4 * result.standard_error, (
        result.log_evidence, truth, result.standard_error
    )  # fmt: skip
    assert result.standard_error < 0.05
    with pytest.raises(ValueError, match="site='q': not a latent"):
        evidence_over_site(hierarchical_logistic, "q", x, y)


def test_thermodynamic_schedule_spaces_steps_by_the_spread():
    """Equal increments of ``integral sd dbeta``: where the pilot's spread is 9x larger the
    steps are 9x denser, and the schedule runs from 0 to 1."""
    betas = torch.linspace(0, 1, 11, dtype=torch.float64)
    spread = torch.tensor([9.0] * 5 + [1.0] * 5, dtype=torch.float64)
    schedule = thermodynamic_schedule(betas, spread, 100)
    assert schedule[0] == 0 and schedule[-1] == 1 and len(schedule) == 101
    assert torch.all(torch.diff(schedule) > 0)
    steps = torch.diff(schedule)
    assert float(steps[5:60].mean() * 9) == pytest.approx(float(steps[-5:].mean()), rel=0.05)


@pytest.mark.slow
def test_the_study_script_writes_each_cell_once_and_reports_bayes_factors(tmp_path):
    """``scripts/evidence.py`` as the docs run it, at a toy size: one JSON per (prior, seed),
    a second run skips them, and the report has every row and the log Bayes factors."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "evidence.py"
    command = [
        sys.executable, str(script), "--models", "flat", "shared_mean", "hier_centered",
        "--seeds", "0", "--override", "data.dim=4", "data.n_train=20", "--particles", "4",
        "--temperatures", "10", "--nodes", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    files = sorted(tmp_path.glob("*/seed0.json"))
    assert [f.parent.name for f in files] == ["flat", "hier_centered", "shared_mean"]
    stamps = [f.stat().st_mtime_ns for f in files]
    second = subprocess.run(command, capture_output=True, text=True, check=True)
    assert second.stdout.count("exists; skipping") == 3, (first.stdout, second.stdout)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    report = subprocess.run(
        [sys.executable, str(script), "--report", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert report.count("| 4 x 10 |") == 3
    assert "log Bayes factor shared_mean vs flat" in report
    assert "log Bayes factor hier_centered vs flat" in report
