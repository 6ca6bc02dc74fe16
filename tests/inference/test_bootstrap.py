"""Bootstrap (Hastie et al. 2001, sec. 8.4): batched L-BFGS against closed forms, and the
batched resample fits against the same fits done one at a time on repeated data."""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from bayes_spheres.data import load_spheres
from bayes_spheres.inference import Posterior, bootstrap
from bayes_spheres.inference import map as map_
from bayes_spheres.inference.batched_lbfgs import batched_lbfgs
from bayes_spheres.models import Flat, Hierarchical, SharedMean

# --- batched L-BFGS -------------------------------------------------------------------------


def random_quadratics(b: int, p: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SPD ``A_r`` [b, p, p] with eigenvalues from 0.1 up to about ``10^r``, and minimisers
    ``m_r`` [b, p]: rows differ in curvature, so they converge after different numbers of steps."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(b, p, p, generator=g, dtype=torch.float64))
    spread = torch.arange(b, dtype=torch.float64)[:, None] * torch.linspace(0, 1, p)
    eig = 0.1 * 10.0**spread * (1 + torch.rand(b, p, generator=g, dtype=torch.float64))
    a = q @ torch.diag_embed(eig) @ q.transpose(-1, -2)
    m = 3 * torch.randn(b, p, generator=g, dtype=torch.float64)
    return a, m


def quadratic(a: torch.Tensor, m: torch.Tensor, select=lambda rows: rows):
    """``f_r(x) = (x - m_r)^T A_r (x - m_r) / 2``, evaluated for problems ``select(rows)``.
    Written around the minimiser, so that f is exact near it and 1e-8 is within reach."""

    def objective(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        k = select(rows)
        r = x - m[k]
        return 0.5 * (r * (a[k] @ r[..., None])[..., 0]).sum(-1)

    return objective


def test_batched_lbfgs_finds_every_row_minimiser():
    b, p = 6, 5
    a, m = random_quadratics(b, p)
    seen = []
    objective = quadratic(a, m)

    def recording(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return objective(x, rows)

    x0 = torch.randn(b, p, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    start = x0.clone()
    x, info = batched_lbfgs(recording, x0, tolerance_grad=1e-11)
    torch.testing.assert_close(x, m, rtol=0, atol=1e-8)
    assert torch.equal(x0, start)  # the start is not modified
    assert info["problems"] == b and info["converged"] == b
    assert info["grad_max"] <= 1e-11
    assert info["iterations"] < 200
    # the rows finish at different times, and finished rows are no longer evaluated
    assert torch.equal(seen[0], torch.arange(b))
    assert min(len(r) for r in seen) < b


def test_batched_lbfgs_rows_do_not_interact():
    """Row r's answer does not depend on which other problems share the batch."""
    a, m = random_quadratics(4, 3, seed=2)
    x0 = torch.zeros(4, 3, dtype=torch.float64)
    together, _ = batched_lbfgs(quadratic(a, m), x0, tolerance_grad=1e-11)
    for r in range(4):
        alone, _ = batched_lbfgs(quadratic(a, m, lambda rows, r=r: rows + r), x0[:1])
        torch.testing.assert_close(together[r], alone[0], rtol=0, atol=1e-8)
        torch.testing.assert_close(alone[0], m[r], rtol=0, atol=1e-8)


def test_batched_lbfgs_stops_a_row_that_can_no_longer_move():
    """The documented stop: a row stops "when its line search finds no decrease (it is then
    at the optimum to rounding, or stuck)".

    Written as ``x^T A x / 2 - c^T x`` the objective carries rounding noise of about
    ``1e-15 |f|``, so near the optimum no step decreases it. The Armijo test
    ``f(x + t d) <= f + c1 t gd`` then still passes once ``t`` is so small that
    ``x + t d == x``: the row "moves" by zero, is counted as having decreased, and runs until
    ``max_iter`` (1000 by default), each iteration spending up to 30 halvings.
    """
    a, c = random_quadratics(3, 5)
    a, c = a[2:3], c[2:3]  # condition number about 100

    def expanded(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x * (a[rows] @ x[..., None])[..., 0]).sum(-1) - (c[rows] * x).sum(-1)

    x0 = torch.zeros(1, 5, dtype=torch.float64)
    x, info = batched_lbfgs(expanded, x0, max_iter=60, tolerance_grad=1e-12)
    optimum = torch.linalg.solve(a, c[..., None])[..., 0]
    torch.testing.assert_close(x, optimum, rtol=0, atol=1e-6)  # at the optimum to rounding
    assert info["converged"] == 0  # 1e-12 is below what rounding allows here
    assert info["iterations"] < 60, "a row that no longer moves kept iterating to max_iter"


# --- resample counts ------------------------------------------------------------------------


def test_resample_counts_rows_sum_to_n_and_are_reproducible():
    n, fits = 37, 200
    counts = bootstrap.resample_counts(n, fits, torch.Generator().manual_seed(5))
    assert counts.shape == (fits, n) and counts.dtype == torch.float64
    assert torch.equal(counts, counts.round()) and (counts >= 0).all()
    assert torch.equal(counts.sum(1), torch.full((fits,), float(n), dtype=torch.float64))
    again = bootstrap.resample_counts(n, fits, torch.Generator().manual_seed(5))
    assert torch.equal(counts, again)
    other = bootstrap.resample_counts(n, fits, torch.Generator().manual_seed(6))
    assert not torch.equal(counts, other)
    # each count is Binomial(n, 1/n), about Poisson(1): variance 1 - 1/n; the sample variance
    # of n * fits counts has SE about sqrt((mu_4 - sigma^4) / (n fits)) = sqrt(3 / (n fits))
    assert abs(float(counts.var()) - (1 - 1 / n)) < 5 * (3 / (n * fits)) ** 0.5


# --- batched fits equal separate fits -------------------------------------------------------


@pytest.fixture(scope="module")
def small_spheres():
    return load_spheres(dim=10, n_train=100, n_val=100, seed=0)


@pytest.mark.parametrize("model", [Flat(), SharedMean()], ids=["flat", "shared_mean"])
def test_batched_fits_equal_separate_fits_on_repeated_data(small_spheres, model):
    d = small_spheres
    members, seed = 20, 3
    post = bootstrap.fit(model, d, members=members, seed=seed)
    assert isinstance(post, Posterior)
    assert post.ensemble.size == members and post.ensemble.dim == 10
    # a few rows may stop at the rounding floor, a little above tolerance_grad = 1e-8
    assert post.info["bootstrap"]["grad_max"] < 1e-6
    # the generator's first (and only) use is the counts
    n = len(d.y_train)
    counts = bootstrap.resample_counts(n, members, torch.Generator().manual_seed(seed))
    latent_names = {"w", "b"} | ({"mu"} if isinstance(model, SharedMean) else set())
    assert set(post.samples) == latent_names
    for k in range(members):
        idx = torch.repeat_interleave(torch.arange(n), counts[k].long())
        assert len(idx) == n
        latents, _ = map_.map_estimate(model, d.phi_train[idx], d.y_train[idx])
        assert set(latents) == latent_names
        for name, value in latents.items():
            torch.testing.assert_close(post.samples[name][0, k], value, rtol=0, atol=1e-4)
        torch.testing.assert_close(post.ensemble.w[k], latents["w"], rtol=0, atol=1e-4)
        torch.testing.assert_close(post.ensemble.b[k], latents["b"], rtol=0, atol=1e-4)
    # resamples differ, so members differ
    assert post.ensemble.w.std(0).min() > 1e-3


class LabelNoise(Flat):
    """A user's model with a likelihood of its own: each label flipped with probability 0.1."""

    def likelihood(self, logits: torch.Tensor) -> dist.Bernoulli:
        return dist.Bernoulli(probs=0.1 + 0.8 * torch.sigmoid(logits))


@pytest.mark.parametrize(
    "model", [Flat(), SharedMean(), LabelNoise()], ids=["flat", "shared_mean", "label_noise"]
)
def test_batched_objective_is_the_models_negative_log_joint_on_the_resample(small_spheres, model):
    """Each fit's objective is the Pyro model's own -log p(latents, resampled data): its prior
    and its likelihood, whatever the model states (a user's likelihood included)."""
    d, fits = small_spheres, 3
    n = len(d.y_train)
    counts = bootstrap.resample_counts(n, fits, torch.Generator().manual_seed(0))
    objective = bootstrap.BatchedObjective(model, d.phi_train, d.y_train, counts)
    theta = torch.randn(fits, objective.size, generator=torch.Generator().manual_seed(1))
    values = objective(theta.double(), torch.arange(fits))
    for k in range(fits):
        idx = torch.repeat_interleave(torch.arange(n), counts[k].long())
        conditioned = poutine.condition(model, data=objective.unravel(theta[k].double()))
        trace = poutine.trace(conditioned).get_trace(d.phi_train[idx], d.y_train[idx])
        torch.testing.assert_close(values[k], -trace.log_prob_sum(), rtol=1e-12, atol=0)


def test_fit_is_reproducible_with_a_seed(small_spheres):
    model = Flat()
    a = bootstrap.fit(model, small_spheres, members=5, seed=1).ensemble
    b = bootstrap.fit(model, small_spheres, members=5, seed=1).ensemble
    c = bootstrap.fit(model, small_spheres, members=5, seed=2).ensemble
    assert torch.equal(a.w, b.w) and torch.equal(a.b, b.b)
    assert not torch.equal(a.w, c.w)


@pytest.mark.parametrize("centered", [True, False], ids=["centered", "noncentered"])
def test_hierarchical_model_is_refused_naming_the_site(small_spheres, centered):
    with pytest.raises(ValueError, match=r"site 's'.*real-valued|real-valued.*site 's'"):
        bootstrap.fit(Hierarchical(centered=centered), small_spheres, members=3)


def test_converged_fits_do_not_depend_on_the_start_and_early_stopped_ones_do(small_spheres):
    """The objective is convex: from zero or from the full data's MAP the converged fits
    agree; stopped after 3 iterations, the fits from zero are still near the origin."""
    model = Flat()
    kw = dict(members=4, seed=0)
    from_map = bootstrap.fit(model, small_spheres, **kw).ensemble
    from_zero = bootstrap.fit(model, small_spheres, init="zero", **kw).ensemble
    torch.testing.assert_close(from_zero.w, from_map.w, rtol=1e-4, atol=1e-5)
    early = bootstrap.fit(model, small_spheres, init="zero", max_iter=3, **kw).ensemble
    assert early.w.norm(dim=1).max() < 0.9 * from_map.w.norm(dim=1).min()
    with pytest.raises(ValueError, match=r"init='nope': must be one of map, zero"):
        bootstrap.fit(model, small_spheres, init="nope", **kw)
