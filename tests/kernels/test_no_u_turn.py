"""The no-U-turn length of the generic path (``kernels/no_u_turn.py``): the criterion and its
checkpoints against hand-computed cases, and the sampler (``trajectory=None``) against
targets whose answer is known, one of them skewed, within the Monte Carlo standard error."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import torch

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.no_u_turn import (
    chains_tree,
    checkpoints,
    is_turning,
    no_u_turn_trajectory,
    one_chain_tree,
)
from bayes_spheres.kernels.potential import PotentialTarget
from bayes_spheres.kernels.trajectory_length import least_states, longest_scale

DT = torch.float64


def test_is_turning_by_hand():
    """Momenta (1, 0), (1, 1), (0, 1): rho' = (2, 2) - (0.5, 0.5), both ends' products 1.5 >
    0, not turning; (1, 0), (0, 1), (-1, 0): rho' = (0, 1), the ends' products are 0, turning.
    The same with every momentum reversed (a trajectory built backwards), per chain."""
    left = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DT)
    right = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=DT)
    rho = torch.tensor([[2.0, 2.0], [0.0, 1.0]], dtype=DT)
    assert is_turning(left, right, rho).tolist() == [False, True]
    assert is_turning(-left, -right, -rho).tolist() == [False, True]
    assert is_turning(right, left, rho).tolist() == [False, True]
    # only one end turned: (1, 0), (1, 0), (-0.5, 1): rho' = (1.25, 0.5), right end -0.125
    one = is_turning(
        torch.tensor([[1.0, 0.0]], dtype=DT),
        torch.tensor([[-0.5, 1.0]], dtype=DT),
        torch.tensor([[1.5, 1.0]], dtype=DT),
    )
    assert one.tolist() == [True]


def test_checkpoints_close_every_balanced_subtree():
    """Replaying the checkpoint scheme over a subtree of 16 leaves checks each balanced
    subtree of 2, 4, 8 and 16 leaves exactly once, when its last leaf arrives (NumPyro's
    examples: leaf 6 -> none, 7 -> checkpoints 0..2, 13 -> 2..2)."""
    assert checkpoints(6) == (3, 2)
    assert checkpoints(7) == (0, 2)
    assert checkpoints(13) == (2, 2)
    stored, checked = {}, []
    for leaf in range(16):
        first, last = checkpoints(leaf)
        if leaf % 2 == 0:
            stored[last] = leaf
        checked += [(stored[i], leaf) for i in range(first, last + 1)]
    balanced = [(a, a + size - 1) for size in (2, 4, 8, 16) for a in range(0, 16, size)]
    assert sorted(checked) == sorted(balanced)


def _sample(target, p: int, draws: int, warmup: int, chains: int = 4, seed: int = 0, **kw):
    torch.manual_seed(seed)
    theta = torch.randn(chains, p, dtype=DT)
    sampler = HamiltonianSliceSampler(warmup, trajectory=None, **kw)
    logp = target.log_density(theta)
    kept = []
    for i in range(warmup + draws):
        theta, logp = sampler.sweep(target, theta, logp)
        if i >= warmup:
            kept.append(theta)
    return torch.stack(kept, 1).numpy(), sampler


def _assert_mean(x: np.ndarray, truth: float, k: float = 4.0) -> None:
    """``|mean - truth| < k MCSE`` with MCSE = sd / sqrt(bulk ESS) of ``x`` [chain, draw]."""
    ess = float(az.ess(x))
    mcse = x.std() / math.sqrt(ess)
    assert ess > 100, f"ESS {ess:.0f}"
    assert abs(x.mean() - truth) < k * mcse, f"{x.mean():.4f} vs {truth:.4f}, MCSE {mcse:.4f}"


def _batched(potential):
    return PotentialTarget(lambda row: potential(row[None])[0], batched=potential)


def test_skewed_gamma_through_the_exp_transform():
    """``x ~ Gamma(2, 1)`` sampled as ``theta = log x`` (``p(theta) ~ e^{2 theta - e^theta}``,
    skewed): ``E[theta] = digamma(2)``, ``E[x] = 2``, ``E[x^2] = 6``. The chains' trees
    differ in depth (the left tail is long, the right one short), so this also checks that
    chains stopping on their own leave each other's draws exact."""
    target = _batched(lambda t: -(2.0 * t[:, 0] - torch.exp(t[:, 0])))
    draws, sampler = _sample(target, 1, 600, 150)
    theta = draws[..., 0]
    _assert_mean(theta, float(torch.digamma(torch.tensor(2.0, dtype=DT))))
    _assert_mean(np.exp(theta), 2.0)
    _assert_mean(np.exp(2 * theta), 6.0)
    assert sampler.info()["trajectory"] == "no-u-turn"


def test_correlated_gaussian_moments():
    """A 4-D Gaussian with correlation 0.9 and scales 1 to 8 (the diagonal mass matrix
    cannot whiten it): means and covariance within the Monte Carlo error."""
    scales = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=DT)
    corr = 0.1 * torch.eye(4, dtype=DT) + 0.9
    cov = scales[:, None] * corr * scales
    mean = torch.tensor([1.0, -2.0, 0.0, 3.0], dtype=DT)
    precision = torch.linalg.inv(cov)

    def potential(t):
        d = t - mean
        return 0.5 * ((d @ precision) * d).sum(-1)

    draws, _ = _sample(_batched(potential), 4, 400, 150)
    for i in range(4):
        _assert_mean(draws[..., i], float(mean[i]))
    centred = draws - mean.numpy()
    for i, j in ((0, 0), (0, 3), (2, 3), (3, 3)):
        _assert_mean(centred[..., i] * centred[..., j], float(cov[i, j]))


def test_subtrees_that_end_leave_the_target_exact():
    """With ``max_energy = 0.5`` and a stiff quartic wall (``theta^4 / 0.01``), states past
    ``-log u + 0.5`` end their subtree in many updates; the draws of the skewed target
    ``N(0, 1)`` cut by that wall on the right (``p ~ e^{-theta^2/2 - 100 theta^4 [theta >
    0]}``) must still have the quadrature mean and second moment."""

    def potential(t):
        x = t[:, 0]
        return 0.5 * x**2 + 100.0 * torch.clamp(x, min=0) ** 4

    grid = torch.linspace(-12, 12, 400001, dtype=DT)[:, None]
    dens = torch.exp(-potential(grid))
    mean = float((grid[:, 0] * dens).sum() / dens.sum())
    second = float((grid[:, 0] ** 2 * dens).sum() / dens.sum())
    target = _batched(potential)
    torch.manual_seed(0)
    theta = torch.randn(4, 1, dtype=DT)
    sampler = HamiltonianSliceSampler(100, trajectory=None, init_step=0.5, max_energy=0.5)
    logp = target.log_density(theta)
    kept, ended = [], 0
    for i in range(700):
        theta, logp = sampler.sweep(target, theta, logp)
        if i >= 100:
            kept.append(theta[:, 0])
            ended += int(sampler.diverging.sum())
    draws = torch.stack(kept, 1).numpy()
    assert ended > 0.1 * draws.size, f"{ended} of {draws.size} updates had a subtree end"
    _assert_mean(draws, mean)
    _assert_mean(draws**2, second)


def test_length_follows_the_scale_not_the_step():
    """Without a mass matrix, on ``N(0, s^2)`` in 5-D the length in time a tree reaches
    before it turns grows with ``s`` (about ``pi s``), whatever the step; the fixed length
    does not."""
    lengths = []
    for s in (1.0, 10.0):
        target = _batched(lambda t, s=s: 0.5 * ((t / s) ** 2).sum(-1))
        _, sampler = _sample(target, 5, 100, 100, mass="unit")
        lengths.append(sampler.info()["length_mean"])
    assert 5.0 < lengths[1] / lengths[0] < 20.0, lengths


def test_one_tree_by_hand_on_a_flat_target():
    """A flat target (no force): every state has the energy of the start, all are in the
    slice, and momenta never change, so no subtree turns and the tree reaches ``max_depth``:
    ``2^3 - 1`` steps for each of 3 chains, the chosen state on the line ``z + t v``."""

    def rest(z):
        return torch.zeros(len(z), dtype=DT), torch.zeros_like(z)

    z = torch.zeros(3, 2, dtype=DT)
    torch.manual_seed(1)
    tree = no_u_turn_trajectory(z, *rest(z), rest, 0.25, False, 1000.0, max_depth=3)
    assert tree.leapfrogs == 7
    assert tree.states.tolist() == [7.0] * 3 and tree.depth.tolist() == [3] * 3
    assert tree.step.in_slice.tolist() == [1.0] * 3 and tree.step.accept.tolist() == [1.0] * 3
    torch.manual_seed(1)
    v = torch.randn(3, 2, dtype=DT)
    t = (tree.step.z * v).sum(-1) / (v * v).sum(-1)  # the time along each chain's line
    torch.testing.assert_close(tree.step.z, t[:, None] * v)
    steps = t / 0.25
    torch.testing.assert_close(steps, steps.round())
    assert bool((steps.abs() <= 7).all())


def test_bad_lengths_are_named():
    with pytest.raises(ValueError, match="trajectory"):
        HamiltonianSliceSampler(2, trajectory=-1.0)
    with pytest.raises(ValueError, match="max_depth"):
        HamiltonianSliceSampler(2, max_depth=0)


def test_floor_by_hand():
    """The longest scale of four points ``(+-2, 0), (0, +-1)`` is ``sqrt(8 / 3)`` (their
    covariance is ``diag(8, 2) / 3``); a floor of 3 at step 0.25 asks for 12 states, none for
    one."""
    z = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=DT)
    assert longest_scale(z) == pytest.approx(math.sqrt(8 / 3))
    assert least_states(3.0, 0.25) == 12
    assert least_states(0.0, 0.1) == 1
    assert least_states(2.0, 0.3) == 7


def test_no_tree_turns_below_the_floor():
    """On ``N(0, 1)`` with step 0.1 a tree turns after about ``pi / 0.1 = 31`` states; with
    ``min_states = 200`` no U-turn counts before 256 states, so every tree has at least 255
    new ones (depth 8), and without a floor fewer."""

    def rest(z):
        return -0.5 * (z * z).sum(-1), -z

    z = torch.randn(6, 3, dtype=DT)
    torch.manual_seed(2)
    short = no_u_turn_trajectory(z, *rest(z), rest, 0.1, False, 1000.0)
    long = no_u_turn_trajectory(z, *rest(z), rest, 0.1, False, 1000.0, min_states=200)
    assert bool((short.states < 255).all()), short.states
    assert bool((long.states >= 255).all()), long.states


def test_floor_keeps_the_target_exact():
    """A 2-D Gaussian with correlation 0.95 under a diagonal mass matrix: the floor
    (``pi / 2 * sqrt(1.95)``) is longer than many no-U-turn trees there, so U-turns below it
    are ignored in many updates; means and second moments stay within the Monte Carlo
    error."""
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]], dtype=DT)
    mean = torch.tensor([1.0, -1.0], dtype=DT)
    precision = torch.linalg.inv(cov)

    def potential(t):
        d = t - mean
        return 0.5 * ((d @ precision) * d).sum(-1)

    draws, sampler = _sample(_batched(potential), 2, 500, 150)
    assert sampler.info()["floor"] > 1.5
    for i in range(2):
        _assert_mean(draws[..., i], float(mean[i]))
    centred = draws - mean.numpy()
    _assert_mean(centred[..., 0] * centred[..., 1], 0.95)
    _assert_mean(centred[..., 1] ** 2, 1.0)


def _skewed_rest(z):
    """A correlated, skewed 3-D log density (no Gaussian part) and its gradient."""
    a = torch.tensor([[2.0, 0.9, 0.0], [0.9, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=DT)
    logp = -0.5 * ((z @ a) * z).sum(-1) - torch.exp(z[:, 0]) + z[:, 0]
    grad = (
        -(z @ a)
        - torch.exp(z[:, :1]) * torch.tensor([1.0, 0, 0], dtype=DT)
        + torch.tensor([1.0, 0, 0], dtype=DT)
    )
    return logp, grad


@pytest.mark.parametrize(
    ("eps", "gaussian", "min_states", "max_energy"),
    [(0.3, False, 1, 1000.0), (0.05, False, 1, 1000.0), (0.3, True, 1, 1000.0),
     (0.3, False, 8, 1000.0), (1.0, False, 1, 1.0)],
)  # fmt: skip
def test_one_chain_tree_is_the_chains_tree(eps, gaussian, min_states, max_energy):
    """From the same generator state, the one-chain strategy builds the tree the batched one
    builds for one chain: the same state chosen, the same steps, depth and divergence, over
    200 trees from random starts (short and long trees, a floor, and a step so large that
    subtrees end at divergences)."""
    start = torch.Generator().manual_seed(3)
    trees = []
    for _ in range(200):
        z = 2.0 * torch.randn(1, 3, dtype=DT, generator=start)
        args = (z, *_skewed_rest(z), _skewed_rest, eps, gaussian, max_energy, 10, min_states)
        seed = int(torch.randint(0, 2**31, (), generator=start))
        one = one_chain_tree(*args, generator=torch.Generator().manual_seed(seed))
        many = chains_tree(*args, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(one.step.z, many.step.z)
        assert torch.equal(one.step.logp_rest, many.step.logp_rest)
        assert torch.equal(one.step.grad, many.step.grad)
        assert (one.leapfrogs, one.states.tolist(), one.depth.tolist()) == (
            many.leapfrogs, many.states.tolist(), many.depth.tolist()
        )  # fmt: skip
        assert one.step.diverging.tolist() == many.step.diverging.tolist()
        torch.testing.assert_close(one.step.accept, many.step.accept, rtol=1e-12, atol=0)
        torch.testing.assert_close(one.step.in_slice, many.step.in_slice, rtol=0, atol=0)
        trees.append((one.leapfrogs, bool(one.step.diverging), bool((one.step.z != z).any())))
    steps = [t[0] for t in trees]
    assert min(steps) < max(steps)  # trees of several sizes
    assert sum(t[2] for t in trees) > 50  # many trees moved
    if max_energy < 10:
        assert any(t[1] for t in trees)  # some ended at a divergence
