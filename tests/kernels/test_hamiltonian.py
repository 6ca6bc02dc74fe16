"""Slice sampling along Hamiltonian trajectories (``directions=hamiltonian``): the pure steps
exactly, the splitting of the study's logistic targets exactly, and the sampler against
answers known in closed form or by quadrature (tolerances from the Monte Carlo standard
error, fixed seeds)."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayes_spheres.kernels.fast.logistic import LogisticTarget
from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.leapfrog import flow, leapfrog
from bayes_spheres.kernels.potential import PotentialTarget
from bayes_spheres.kernels.slice_trajectory import MAX_ENERGY, slice_trajectory

DT = torch.float64


def _target(n: int = 30, p: int = 3, seed: int = 0, scale: float = 1.0) -> LogisticTarget:
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, p, generator=g, dtype=DT)
    y = (torch.rand(n, generator=g, dtype=DT) < 0.5).to(DT)
    a = torch.randn(p, p, generator=g, dtype=DT)
    q = a @ a.T + p * torch.eye(p, dtype=DT)
    h = torch.randn(p, generator=g, dtype=DT)
    return LogisticTarget(x, y, q, h, 0.3 * torch.randn(n, generator=g, dtype=DT))


def test_gaussian_flow_is_a_rotation():
    z, v = torch.randn(4, 3, dtype=DT), torch.randn(4, 3, dtype=DT)
    z1, v1 = flow(z, v, math.pi / 2, gaussian=True)
    torch.testing.assert_close(z1, v)
    torch.testing.assert_close(v1, -z)
    z2, v2 = flow(z, v, 0.37, gaussian=True)
    energy = (z * z + v * v).sum(-1)
    torch.testing.assert_close((z2 * z2 + v2 * v2).sum(-1), energy)
    z3, v3 = flow(z, v, 0.5, gaussian=False)
    torch.testing.assert_close(z3, z + 0.5 * v)
    torch.testing.assert_close(v3, v)


@pytest.mark.parametrize("gaussian", [True, False])
def test_leapfrog_is_reversible(gaussian):
    split = _target().splitting()
    rest = split.rest
    z0, v0 = torch.randn(5, 3, dtype=DT), torch.randn(5, 3, dtype=DT)
    _, g = rest(z0)
    z, v = z0, v0
    for _ in range(25):
        z, v, _, g = leapfrog(z, v, g, 0.05, rest, gaussian)
    v = -v
    for _ in range(25):
        z, v, _, g = leapfrog(z, v, g, 0.05, rest, gaussian)
    torch.testing.assert_close(z, z0, rtol=0, atol=1e-10)
    torch.testing.assert_close(-v, v0, rtol=0, atol=1e-10)


def test_logistic_splitting_is_the_target():
    """theta = m + L z; log N(z; 0, I) + rest(z) = log p(theta) + const; the rest's gradient
    is autograd's."""
    target = _target()
    split = target.splitting()
    theta = torch.randn(6, 3, dtype=DT)
    z = split.to_z(theta)
    torch.testing.assert_close(split.to_theta(z), theta)
    lp, grad = split.rest(z)
    total = lp - 0.5 * (z * z).sum(-1)
    diff = total - target.log_density(theta)
    torch.testing.assert_close(diff, diff[:1].expand(6))
    zz = z.clone().requires_grad_(True)
    a = torch.addmm(
        target.signed_x @ split.mean + target.signed_offset, zz, (target.signed_x @ split.chol).T
    )
    (auto,) = torch.autograd.grad(F.logsigmoid(a).sum(), zz)
    torch.testing.assert_close(grad, auto)


def test_tempered_splitting_raises_the_likelihood_to_its_power():
    """``splitting(beta=b)``: the same whitening, the rest ``b log p(y | theta)`` and its
    gradient, so that ``log N(z; 0, I) + rest`` is the tempered target
    ``log p(theta) + b log p(y | theta)`` up to a constant; ``b = 0`` leaves the prior."""
    target = _target()
    theta = torch.randn(6, 3, dtype=DT)
    whole = target.splitting()
    for beta in (0.0, 0.3):
        split = target.splitting(beta=beta)
        torch.testing.assert_close(split.chol, whole.chol)
        z = split.to_z(theta)
        lp, grad = split.rest(z)
        lp_1, grad_1 = whole.rest(z)
        torch.testing.assert_close(lp, beta * lp_1)
        torch.testing.assert_close(grad, beta * grad_1)
        total = lp - 0.5 * (z * z).sum(-1)
        tempered = target.log_prior(theta) + beta * target.log_likelihood(theta)
        diff = total - tempered
        torch.testing.assert_close(diff, diff[:1].expand(6))


def test_trajectory_returns_the_start_when_nothing_else_is_in_the_slice():
    """A step so large that every new state's energy is far above the slice: the chain stays."""

    def rest(z):
        return -50.0 * (z**4).sum(-1), -200.0 * z**3

    z = torch.full((3, 2), 0.5, dtype=DT)
    lp, g = rest(z)
    torch.manual_seed(0)
    step = slice_trajectory(z, lp, g, rest, 5.0, 4, False)
    torch.testing.assert_close(step.z, z)
    assert float(step.in_slice.max()) == 0.0


def _run(target, p: int, steps: int, warmup: int, chains: int = 4, seed: int = 0, **kw):
    torch.manual_seed(seed)
    theta = torch.randn(chains, p, dtype=DT)
    sampler = HamiltonianSliceSampler(warmup, **kw)
    logp = target.log_density(theta)
    kept = []
    for i in range(warmup + steps):
        theta, logp = sampler.sweep(target, theta, logp)
        if i >= warmup:
            kept.append(theta)
    return torch.stack(kept, 1).numpy()


def _assert_close(draws: np.ndarray, truth: np.ndarray, k: float = 4.0) -> None:
    for j in range(draws.shape[-1]):
        x = draws[..., j]
        ess = float(az.ess(x))
        mcse = x.std() / math.sqrt(ess)
        assert ess > 100, f"coordinate {j}: ESS {ess:.0f}"
        assert abs(x.mean() - truth[j]) < k * mcse, (
            f"coordinate {j}: {x.mean():.4f} vs {truth[j]:.4f}, MCSE {mcse:.4f}"
        )


def test_prior_only_target_is_its_gaussian():
    """No data: the target is N(Q^-1 h, Q^-1) with a full Q, so mean and covariance are known;
    a wrong whitening (L vs L', the sign of h) shows here."""
    full = _target()
    target = LogisticTarget(
        full.signed_x[:0],
        torch.zeros(0, dtype=DT),
        full.precision,
        full.shift,
        torch.zeros(0, dtype=DT),
    )
    draws = _run(target, 3, 600, 50, trajectory=3.0, init_step=0.2)
    cov = torch.linalg.inv(full.precision)
    mean = (cov @ full.shift).numpy()
    _assert_close(draws, mean)
    centred = draws - mean
    second = np.stack([centred[..., i] * centred[..., j] for i in range(3) for j in range(3)], -1)
    _assert_close(second, cov.numpy().ravel())


def _one_dimensional_logistic(fast: bool, scale: float = 1.0):
    """theta ~ N(0.5, 2^2), three labelled points at ``scale`` [1, -2, 3]: the target (fast
    path or generic) and its mean and second moment by quadrature."""
    x = scale * torch.tensor([[1.0], [-2.0], [3.0]], dtype=DT)
    y = torch.tensor([1.0, 1.0, 0.0], dtype=DT)
    q, h = torch.tensor([[0.25]], dtype=DT), torch.tensor([0.125], dtype=DT)
    fast_target = LogisticTarget(x, y, q, h, torch.zeros(3, dtype=DT))
    grid = torch.linspace(-15, 15, 200001, dtype=DT)[:, None]
    dens = torch.exp(fast_target.log_density(grid) - fast_target.log_density(grid).max())
    mean = float((grid[:, 0] * dens).sum() / dens.sum())
    second = float((grid[:, 0] ** 2 * dens).sum() / dens.sum())
    if fast:
        return fast_target, mean, second
    return PotentialTarget(lambda t: -fast_target.log_density(t[None])[0]), mean, second


@pytest.mark.parametrize("fast", [True, False])
def test_one_dimensional_logistic_posterior_against_quadrature(fast):
    """A skewed posterior whose mean and second moment come from quadrature; the fast (exact
    Gaussian flow) and the generic path (Pyro-style potential, plain leapfrog) must both hit
    them."""
    target, mean, second = _one_dimensional_logistic(fast)
    draws = _run(target, 1, 800, 100, trajectory=3.0, init_step=0.2)
    _assert_close(draws, np.array([mean]))
    _assert_close(draws**2, np.array([second]))


@pytest.mark.parametrize("fast", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_directions_that_end_leave_the_posterior_exact(fast):
    """Each direction of a trajectory ends at its first state more than ``max_energy`` above
    the slice level. With ``max_energy = 0.3`` and steep constraints (the points 8x farther
    out) a fifth or more of the trajectories end early, and the draws must still have the
    quadrature moments. The length stays 3 prior units (``fit_to_warmup=False``: measured in
    this posterior's scale, the trajectories would be too short to reach the constraints)."""
    target, mean, second = _one_dimensional_logistic(fast, scale=8.0)
    torch.manual_seed(0)
    theta = torch.randn(4, 1, dtype=DT)
    sampler = HamiltonianSliceSampler(
        100, trajectory=3.0, init_step=0.2, max_energy=0.3, fit_to_warmup=False
    )
    logp = target.log_density(theta)
    kept, ended = [], 0
    for i in range(1100):
        theta, logp = sampler.sweep(target, theta, logp)
        if i >= 100:
            kept.append(theta)
            ended += int(sampler.diverging.sum())
    draws = torch.stack(kept, 1).numpy()
    assert ended > 0.2 * draws.size, f"{ended} of {draws.size} trajectories ended"
    _assert_close(draws, np.array([mean]))
    _assert_close(draws**2, np.array([second]))


@pytest.mark.parametrize(
    ("kick_below", "block_steps", "misjudged", "candidates_max", "gather_max", "max_energy"),
    [(36.0, 32, 0.0, 1 << 22, 1 << 24, MAX_ENERGY), (15.0, 32, 0.0, 1 << 22, 1 << 24, MAX_ENERGY),
     (15.0, 7, 0.0, 1 << 22, 1 << 24, MAX_ENERGY), (15.0, 32, 20.0, 1 << 22, 1 << 24, MAX_ENERGY),
     (15.0, 32, 0.0, 0, 1 << 24, MAX_ENERGY), (15.0, 32, 0.0, 0, 0, MAX_ENERGY),
     (36.0, 7, 0.0, 1 << 22, 1 << 24, 1.0), (36.0, 32, 0.0, 0, 1 << 24, 1.0)],
    ids=["all-forces", "default", "short-blocks", "blocks-cut", "dense-steps",
         "dense-products", "directions-end", "directions-end-dense"],
)  # fmt: skip
@pytest.mark.parametrize("beta", [1.0, 0.3], ids=["posterior", "tempered"])
def test_linear_trajectory_is_the_generic_one(
    monkeypatch, kick_below, block_steps, misjudged, candidates_max, gather_max, max_energy, beta
):
    """The fast integrator (activations carried with the state, blocks of steps in closed
    form from the kicks of a few candidate points) gives the same chain as the generic one
    for the same random stream, on separable data with large activations, where most points
    drop out. Kicks from every point with ``a < 36`` (whose omitted terms are < 2.3e-16):
    equal to rounding; from ``a < 15`` only (the default, a cheaper integrator; the slice
    still uses the exact energy): equal to 1e-6. The same with blocks of 7 steps; with
    candidates picked as if every path stayed 20 higher than it does (other points come near,
    so blocks are cut and continued with more candidates); with every step dense (the
    fall-back when too many points are near), its kicks gathered or products; and with
    ``max_energy`` so small that a chain's directions end (:func:`truncate`) while the other
    goes on, in blocks and in dense steps. All of it also with the likelihood raised to the
    power 0.3 (a tempered target, as annealed importance sampling moves through; from
    ``a < 15`` only equal to 1e-5: weaker kicks let more points linger near the cut)."""
    from bayes_spheres.kernels.fast import linear_trajectory as integrator
    from bayes_spheres.kernels.fast.linear_trajectory import slice_trajectory_linear

    monkeypatch.setattr(integrator, "KICK_BELOW", kick_below)
    monkeypatch.setattr(integrator, "BLOCK_STEPS", block_steps)
    if misjudged:
        lowest = integrator.lowest_on_arc
        monkeypatch.setattr(
            integrator, "lowest_on_arc", lambda x, u, t: lowest(x, u, t) + misjudged
        )
    monkeypatch.setattr(integrator, "CANDIDATE_ELEMENTS", candidates_max)
    monkeypatch.setattr(integrator, "GATHER_ELEMENTS", gather_max)
    monkeypatch.setattr(integrator, "GATHER_COST", 0 if gather_max else integrator.GATHER_COST)
    tol = 1e-9 if kick_below == 36.0 else 1e-6 if beta == 1.0 else 1e-5

    g = torch.Generator().manual_seed(1)
    x = 30.0 * torch.randn(200, 4, generator=g, dtype=DT)
    truth = torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=DT)
    y = (x @ truth > 0).to(DT)
    target = LogisticTarget(x, y, torch.eye(4, dtype=DT), torch.zeros(4, dtype=DT),
                            torch.zeros(200, dtype=DT))  # fmt: skip
    split = target.splitting(beta=beta)
    z = split.to_z(truth + 0.05 * torch.randn(2, 4, generator=g, dtype=DT))
    lp, grad = split.rest(z)
    linear = split.trajectory.keywords["linear"]
    active = (torch.addmm(linear.a_0, z, linear.a_z.T) < 36).any(0)
    assert 0 < int(active.sum()) < 100
    torch.manual_seed(3)
    if max_energy == MAX_ENERGY:
        eps = 0.01 / math.sqrt(beta)
    else:  # energies rise far enough for both chains' directions to end
        eps, max_energy = (0.03, max_energy) if beta == 1.0 else (0.04, 0.3)
    a = slice_trajectory(z, lp, grad, split.rest, eps, 40, True, max_energy)
    torch.manual_seed(3)
    b = slice_trajectory_linear(z, lp, grad, eps, 40, max_energy, linear=linear)
    for u, w in zip((a.z, a.logp_rest, a.grad, a.accept, a.in_slice, a.diverging),
                    (b.z, b.logp_rest, b.grad, b.accept, b.in_slice, b.diverging),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(u, w, rtol=tol, atol=tol)
    assert not torch.equal(a.z, z)
    if max_energy == MAX_ENERGY:
        assert float(a.in_slice.min()) > 0.2
    else:  # both chains' trajectories ended early: fewer of their states in the slice
        torch.manual_seed(3)
        whole = slice_trajectory(z, lp, grad, split.rest, eps, 40, True)
        assert bool((a.in_slice < whole.in_slice).all()) and float(a.in_slice.min()) > 0


def test_warmup_trajectories_can_be_shorter():
    """``warmup_trajectory`` sets the length of the warm-up updates only; bad values are named."""
    target = _target()
    torch.manual_seed(0)
    sampler = HamiltonianSliceSampler(2, trajectory=2.0, init_step=0.1, warmup_trajectory=0.5)
    theta = torch.zeros(2, 3, dtype=DT)
    logp = target.log_density(theta)
    counts = []
    for _ in range(4):
        before = sampler.leapfrogs
        theta, logp = sampler.sweep(target, theta, logp)
        counts.append(sampler.leapfrogs - before)
    # first update: step 0.1 +- 10 %, length 0.5; after warm-up: the final step, length 2 in
    # the posterior's longest scale (at most 1: the prior's)
    assert 4 <= counts[0] <= 6
    final, length = sampler.step_size, 2.0 * sampler.length_scale
    assert 0 < sampler.length_scale <= 1
    assert length / (1.1 * final) - 1 <= counts[3] <= length / (0.9 * final) + 1
    with pytest.raises(ValueError, match="warmup_trajectory"):
        HamiltonianSliceSampler(2, warmup_trajectory=-1.0)


def test_lowest_on_arc_is_the_minimum_along_the_rotation():
    """``lowest_on_arc(x, u, T)``, the least of ``x cos t + u sin t`` over ``t`` in [0, T]
    that picks the fast path's candidate points, against a fine grid of ``t``: never above
    the grid's least value and within its resolution of it."""
    from bayes_spheres.kernels.fast.linear_trajectory import lowest_on_arc

    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(2, 500, generator=g, dtype=DT)
    for time in (0.1, 1.0, 3.0, 6.0):
        t = torch.linspace(0.0, time, 20_001, dtype=DT)[:, None]
        grid = (x * torch.cos(t) + u * torch.sin(t)).min(0).values
        lowest = lowest_on_arc(x, u, time)
        assert (lowest <= grid + 1e-12).all()
        assert (grid - lowest).max() < 1e-6
