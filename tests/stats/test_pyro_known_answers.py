"""Known-answer tests of :class:`bayes_spheres.kernels.Slice` driven through Pyro's MCMC API,
exactly as users call it::

    mcmc = MCMC(Slice(model, directions=mode), num_samples=..., warmup_steps=..., num_chains=...)
    mcmc.run(*args)
    mcmc.get_samples(group_by_chain=True)

Where the cases come from (pyro-ppl/pyro):

- ``tests/infer/mcmc/test_hmc.py`` and ``test_nuts.py``: the ``GaussianChain`` fixture and its
  table of expected means and precisions (``TEST_CASES``, checked here against the exact
  posterior), ``test_beta_bernoulli`` (with its ``pyro.plate``), ``test_gamma_normal`` (the Gamma
  prior put on the precision so that the posterior is a known Gamma), ``test_dirichlet_categorical``
  (a simplex site), ``test_gamma_beta`` and ``test_logistic_regression`` (posteriors by numerical
  quadrature, in 1-D, 2-D and 3-D);
- ``tests/infer/mcmc/test_mcmc_api.py``: ``normal_normal_model``, the plate model of
  ``test_save_params``, the chain regimes of ``test_num_chains`` (``cpu_count`` monkeypatched),
  ``test_sequential_consistent`` (in a form that does not presume chains are drawn one at a
  time), ``test_null_model_with_hook`` (a model without latent sites
  gives ``{}``), ``test_mcmc_diagnostics``, ``StreamingMCMC`` with ``StackStats`` and
  ``mcmc.summary()``;
- ``tests/infer/mcmc/test_valid_models.py``: the model of ``test_obs_mask_ok`` (an imputed site,
  also run in float32);
- ``examples/eight_schools``: the (non-centred) model and data, against a 2-D quadrature of the
  posterior of ``(mu, tau)`` with the school effects integrated out in closed form.

The other targets have closed forms: Gamma and LogNormal sites (skewed, constrained), the
marginals of LKJ correlations (Lewandowski et al. 2009: ``(r + 1) / 2 ~ Beta(b, b)`` with
``b = eta - 1 + d / 2``), bivariate and 100-D Gaussians with correlation 0.9 and unit variances,
and Neal's funnel (centred; a Hamiltonian trajectory through its neck must report divergences).

Tolerances come from the Monte Carlo standard error, never from a fixed number: for each
coordinate and each checked function ``f`` (``x``, and ``x**2`` for the variance, at least on
every skewed target), ``|mean f - E f| < K * sd(f) / sqrt(bulk ESS(f))`` with ``K = 4`` and ESS
from ``arviz.ess``; a check also needs ``ESS >= MIN_ESS`` (a chain that barely moves would
otherwise pass with a wide tolerance) and split R-hat (``arviz.rhat``) below ``RHAT_MAX``. Seeds
are fixed (``pyro.set_rng_seed``; data from ``numpy`` generators). Every mode is checked on a
skewed target in the default subset; the bigger cases are marked ``slow``.

Unless a test chooses the regime, Pyro is made to draw chains one after another
(``cpu_count`` patched to 1: Pyro uses worker processes when ``num_chains <= cpu_count - 1``),
so that results do not depend on the machine's core count.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from itertools import combinations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.mcmc.api import StreamingMCMC
from pyro.ops.streaming import StackStats, StatsOfDict
from scipy.special import digamma, gammaln, log_expit

from bayes_spheres.kernels import Slice

K = 4.0  # tolerance in Monte Carlo standard errors
MIN_ESS = 100.0  # fewer effective draws than this make a check too weak to count
RHAT_MAX = 1.05
MODES = ("coordinate", "factor", "hamiltonian")
slow = pytest.mark.slow

# Pyro warns when it draws chains one after another; that is what most tests ask for.
pytestmark = pytest.mark.filterwarnings("ignore:num_chains=")


def modes(*fast: str) -> list:
    """The three modes, those not in ``fast`` marked slow."""
    return [m if m in fast else pytest.param(m, marks=slow) for m in MODES]


# ------------------------------------------------------------------------------------------
# running the kernel as a user does, and checking against known answers


def set_cpu_count(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Pyro runs chains in worker processes iff ``num_chains <= cpu_count() - 1``; it asks
    ``torch.multiprocessing.cpu_count``, the others are patched too to be safe."""
    for module in (torch.multiprocessing, os, multiprocessing):
        monkeypatch.setattr(module, "cpu_count", lambda: n)


@pytest.fixture(autouse=True)
def _sequential_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    set_cpu_count(monkeypatch, 1)


def run_slice(
    model,
    directions: str,
    *args,
    draws: int = 300,
    warmup: int = 150,
    chains: int = 2,
    seed: int = 0,
    initial_params: dict | None = None,
    hook_fn=None,
    **kernel_kwargs,
) -> MCMC:
    pyro.set_rng_seed(seed)
    mcmc = MCMC(
        Slice(model, directions=directions, **kernel_kwargs),
        num_samples=draws,
        warmup_steps=warmup,
        num_chains=chains,
        initial_params=initial_params,
        hook_fn=hook_fn,
        disable_progbar=True,
    )
    mcmc.run(*args)
    return mcmc


def draws_of(mcmc: MCMC) -> dict[str, np.ndarray]:
    """``get_samples(group_by_chain=True)`` as float64 arrays [chain, draw, *site shape]."""
    return {
        k: v.detach().to(torch.float64).numpy()
        for k, v in mcmc.get_samples(group_by_chain=True).items()
    }


def _columns(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(values.shape[0], values.shape[1], -1)


def check_expectation(values: np.ndarray, truth, what: str, k: float = K) -> None:
    """Per coordinate of ``values`` [chain, draw, ...]: ``|mean - truth| < k * MCSE`` with
    ``MCSE = sd / sqrt(bulk ESS)``, and ``ESS >= MIN_ESS``; all failures are reported."""
    cols = _columns(values)
    truth = np.broadcast_to(np.asarray(truth, dtype=np.float64), values.shape[2:]).reshape(-1)
    failures = []
    for j in range(cols.shape[2]):
        x = cols[:, :, j]
        if not np.isfinite(x).all():
            failures.append(f"{what}[{j}]: non-finite draws")
            continue
        ess = float(az.ess(x))
        mcse = x.std() / math.sqrt(ess) if ess > 0 else math.inf
        err = abs(x.mean() - truth[j])
        line = (
            f"{what}[{j}]: mean {x.mean():.4f}, truth {truth[j]:.4f}, |err| {err:.4f}, "
            f"MCSE {mcse:.4f}, ESS {ess:.0f}"
        )
        if os.environ.get("KA_DEBUG"):
            print("DBG", line)
        if not ess >= MIN_ESS:
            failures.append(line + f" (ESS below {MIN_ESS:.0f})")
        elif not err < k * mcse:
            failures.append(line + f" (|err| > {k:g} MCSE)")
    assert not failures, "\n".join(failures)


def check_rhat(values: np.ndarray, what: str, limit: float = RHAT_MAX) -> None:
    cols = _columns(values)
    rhats = [float(az.rhat(cols[:, :, j])) for j in range(cols.shape[2])]
    bad = [f"{what}[{j}]: R-hat {r:.3f}" for j, r in enumerate(rhats) if not r < limit]
    assert not bad, "\n".join(bad)


def check_moments(values: np.ndarray, mean, second=None, what: str = "x") -> None:
    """The mean, and with ``second`` the raw second moment ``E[x**2]`` (hence the variance),
    within ``K`` MCSE; and R-hat."""
    check_rhat(values, what)
    check_expectation(values, mean, what)
    if second is not None:
        check_expectation(np.asarray(values) ** 2, second, f"{what}**2")


def gaussian_posterior(precision: np.ndarray, linear: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean and covariance of the Gaussian ``exp(-x'Qx/2 + b'x)``."""
    cov = np.linalg.inv(precision)
    return cov @ linear, cov


def moments_on_grid(log_density: np.ndarray, weights: np.ndarray, **functions) -> dict:
    """Expectations of ``functions`` (arrays on the grid) under ``exp(log_density) * weights``
    (quadrature weights, Jacobians included); asserts that the grid's edges hold no mass."""
    p = np.exp(log_density - log_density.max()) * weights
    edge = max(np.take(p, idx, axis=ax).max() for ax in range(p.ndim) for idx in (0, -1))
    assert edge < 1e-10 * p.max(), "quadrature grid too small"
    p /= p.sum()
    return {name: float((p * f).sum()) for name, f in functions.items()}


# ------------------------------------------------------------------------------------------
# conjugate Gaussians (test_mcmc_api.normal_normal_model; test_hmc.GaussianChain)


def normal_normal_model(data):
    x = torch.tensor([0.0])
    y = pyro.sample("y", dist.Normal(x, torch.ones(data.shape)))
    pyro.sample("obs", dist.Normal(y, torch.tensor([1.0])), obs=data)
    return y


@pytest.mark.parametrize("directions", MODES)
def test_normal_normal(directions):
    data = torch.tensor([2.0, -1.0])
    y = draws_of(run_slice(normal_normal_model, directions, data))["y"]
    mean, var = data.numpy() / 2.0, 0.5
    check_moments(y, mean, var + mean**2, "y")


class GaussianChain:
    """test_hmc.py's fixture: ``loc_i ~ N(loc_{i-1}, 1)``, ``obs ~ N(loc_L, 1)`` (ones)."""

    def __init__(self, dim, chain_len, num_obs):
        self.dim, self.chain_len, self.num_obs = dim, chain_len, num_obs

    def model(self, data):
        loc = torch.zeros(self.dim)
        for i in range(1, self.chain_len + 1):
            loc = pyro.sample(f"loc_{i}", dist.Normal(loc=loc, scale=torch.ones(self.dim)))
        pyro.sample("obs", dist.Normal(loc, torch.ones(self.dim)), obs=data)

    @property
    def data(self):
        return torch.ones(self.num_obs, self.dim)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact posterior means and variances of ``loc_1 .. loc_L`` (each coordinate)."""
        n = self.chain_len
        diff = np.eye(n) - np.eye(n, k=-1)  # loc_i - loc_{i-1}, loc_0 = 0
        precision = diff.T @ diff
        precision[-1, -1] += self.num_obs
        linear = np.zeros(n)
        linear[-1] = self.num_obs
        mean, cov = gaussian_posterior(precision, linear)
        return mean, np.diag(cov)


# test_hmc.py's TEST_CASES: (chain_len, num_obs), expected means and precisions as printed there
PYRO_GAUSSIAN_CHAINS = [
    (3, 1, [0.25, 0.50, 0.75], [1.33, 1, 1.33]),
    (4, 1, [0.20, 0.40, 0.60, 0.80], [1.25, 0.83, 0.83, 1.25]),
    (2, 100, [0.5, 1.0], [2.0, 100]),
    (9, 1, [0.1 * i for i in range(1, 10)], [1.11, 0.63, 0.48, 0.42, 0.4, 0.42, 0.48, 0.63, 1.11]),
]


def test_gaussian_chain_truth_matches_pyro_table():
    for chain_len, num_obs, means, precs in PYRO_GAUSSIAN_CHAINS:
        mean, var = GaussianChain(1, chain_len, num_obs).posterior()
        np.testing.assert_allclose(mean, means, atol=0.005)
        np.testing.assert_allclose(1.0 / var, precs, rtol=0.02)


def _check_gaussian_chain(fixture: GaussianChain, directions: str, draws: int, warmup: int):
    samples = draws_of(run_slice(fixture.model, directions, fixture.data, draws=draws,
                                 warmup=warmup))  # fmt: skip
    mean, var = fixture.posterior()
    for i in range(fixture.chain_len):
        check_moments(samples[f"loc_{i + 1}"], mean[i], var[i] + mean[i] ** 2, f"loc_{i + 1}")


@pytest.mark.parametrize("directions", modes("factor"))
def test_gaussian_chain(directions):
    _check_gaussian_chain(GaussianChain(dim=1, chain_len=3, num_obs=1), directions, 300, 150)


@slow
@pytest.mark.parametrize(
    "chain_len, num_obs, directions, draws",
    [
        *[(3, 1, m, 600) for m in MODES],
        *[(4, 1, m, 600) for m in MODES],
        *[(2, 100, m, 600) for m in MODES],
        (9, 1, "factor", 600),
        (9, 1, "hamiltonian", 2000),
    ],
    ids=lambda v: str(v),
)
def test_gaussian_chain_pyro_cases(chain_len, num_obs, directions, draws):
    """test_hmc's four chains, one coordinate each (10 or 5 there: the same structure). On the
    9-step chain, coordinate-wise updates decorrelate like Gibbs sweeps on a random walk
    (about 0.05 effective draws per sweep, measured), which would need thousands of sweeps: that
    mode is left out there, and the Hamiltonian one gets more draws."""
    _check_gaussian_chain(GaussianChain(1, chain_len, num_obs), directions, draws, 300)


# ------------------------------------------------------------------------------------------
# conjugate pairs with constrained sites (test_hmc.py, test_nuts.py)


def _bernoulli_data(probs, n, seed) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor((rng.random((n, len(probs))) < np.asarray(probs)).astype(np.float64))


@pytest.mark.parametrize("directions", modes("coordinate", "factor", "hamiltonian"))
def test_beta_bernoulli(directions):
    """test_hmc.test_beta_bernoulli with its plate (dim=-2); 30 draws, not 1,000, so that the
    Beta posteriors are skewed."""
    alpha = beta = torch.tensor([1.1, 1.1])

    def model(data):
        p_latent = pyro.sample("p_latent", dist.Beta(alpha, beta))
        with pyro.plate("data", data.shape[0], dim=-2):
            pyro.sample("obs", dist.Bernoulli(p_latent), obs=data)
        return p_latent

    data = _bernoulli_data([0.9, 0.1], 30, seed=1)
    p = draws_of(run_slice(model, directions, data))["p_latent"]
    a = (alpha + data.sum(0)).numpy()
    b = (beta + (1 - data).sum(0)).numpy()
    assert ((p > 0) & (p < 1)).all()
    check_moments(p, a / (a + b), a * (a + 1) / ((a + b) * (a + b + 1)), "p_latent")


@pytest.mark.parametrize("directions", modes("factor"))
def test_gamma_normal_precision(directions):
    """test_nuts.test_gamma_normal with the Gamma(1, 1) prior on the precision ``lam`` of
    ``Normal(3, lam ** -0.5)`` (there: on the scale), so that the posterior is
    ``Gamma(1 + n / 2, 1 + sum (x - 3)**2 / 2)``; 20 draws, a skewed posterior."""

    def model(data):
        lam = pyro.sample("lam", dist.Gamma(torch.ones(2), torch.ones(2)))
        pyro.sample("obs", dist.Normal(3.0, lam.rsqrt()), obs=data)

    rng = np.random.default_rng(2)
    data = torch.tensor(3.0 + rng.standard_normal((20, 2)) * np.array([0.5, 2.0]))
    lam = draws_of(run_slice(model, directions, data))["lam"]
    a = 1.0 + data.shape[0] / 2.0
    b = (1.0 + ((data - 3.0) ** 2).sum(0) / 2.0).numpy()
    assert (lam > 0).all()
    check_moments(lam, a / b, a * (a + 1) / b**2, "lam")
    check_expectation(np.log(lam), digamma(a) - np.log(b), "log lam")


@pytest.mark.parametrize("directions", modes("factor"))
def test_dirichlet_categorical(directions):
    """test_hmc.test_dirichlet_categorical: a simplex site; 30 draws, a skewed posterior."""

    def model(data):
        p_latent = pyro.sample("p_latent", dist.Dirichlet(torch.ones(3)))
        pyro.sample("obs", dist.Categorical(p_latent), obs=data)

    rng = np.random.default_rng(3)
    data = torch.tensor(rng.choice(3, size=30, p=[0.1, 0.6, 0.3]))
    p = draws_of(run_slice(model, directions, data))["p_latent"]
    conc = 1.0 + np.bincount(data.numpy(), minlength=3)
    total = conc.sum()
    assert (p > 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    check_moments(p, conc / total, conc * (conc + 1) / (total * (total + 1)), "p_latent")


@pytest.mark.parametrize("directions", MODES)
def test_skewed_positive_sites(directions):
    """Gamma(3, 1) (mean 3, variance 3) and LogNormal(1, 0.5) sites: skewed targets behind
    Pyro's exp transform; a mirrored or unconstrained answer fails the means and the logs."""

    def model():
        pyro.sample("g", dist.Gamma(3.0, 1.0))
        pyro.sample("s", dist.LogNormal(1.0, 0.5))

    samples = draws_of(run_slice(model, directions))
    g, s = samples["g"], samples["s"]
    assert (g > 0).all() and (s > 0).all()
    check_moments(g, 3.0, 12.0, "g")
    check_expectation(np.log(g), digamma(3.0), "log g")
    check_moments(s, math.exp(1.125), math.exp(2.5), "s")
    check_expectation(np.log(s), 1.0, "log s")


@pytest.mark.parametrize("directions", modes("factor"))
def test_gamma_beta(directions):
    """test_nuts.test_gamma_beta: ``alpha, beta ~ Gamma(1, 1)``, ``x ~ Beta(alpha, beta)``;
    40 draws of Beta(5, 1) (5,000 there), against a 2-D quadrature in ``log alpha, log beta``."""

    def model(data):
        alpha = pyro.sample("alpha", dist.Gamma(1.0, 1.0))
        beta = pyro.sample("beta", dist.Gamma(1.0, 1.0))
        pyro.sample("x", dist.Beta(alpha, beta), obs=data)

    rng = np.random.default_rng(4)
    data = np.clip(rng.beta(5.0, 1.0, size=40), 1e-12, 1 - 1e-12)
    samples = draws_of(run_slice(model, directions, torch.tensor(data)))

    u = np.linspace(-8.0, 5.0, 1301)
    a, b = np.meshgrid(np.exp(u), np.exp(u), indexing="ij")
    n, s1, s0 = len(data), np.log(data).sum(), np.log1p(-data).sum()
    log_post = -a - b + n * (gammaln(a + b) - gammaln(a) - gammaln(b)) + (a - 1) * s1
    log_post += (b - 1) * s0
    m = moments_on_grid(log_post, a * b, a=a, a2=a**2, b=b, b2=b**2)
    assert (samples["alpha"] > 0).all() and (samples["beta"] > 0).all()
    check_moments(samples["alpha"], m["a"], m["a2"], "alpha")
    check_moments(samples["beta"], m["b"], m["b2"], "beta")


# ------------------------------------------------------------------------------------------
# plates, LKJ, obs_mask


@pytest.mark.parametrize("directions", modes("hamiltonian"))
def test_plate_model(directions):
    """test_mcmc_api.test_save_params's model: ``x ~ N(0, 1)``; in a plate of 2,
    ``y ~ N(x, 1)`` and ``obs ~ N(y, 1)`` (here observed at 1.5 and -0.5, not 0)."""
    obs = torch.tensor([1.5, -0.5])

    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        with pyro.plate("plate", 2):
            y = pyro.sample("y", dist.Normal(x, 1.0))
            pyro.sample("obs", dist.Normal(y, 1.0), obs=obs)

    samples = draws_of(run_slice(model, directions))
    precision = np.array([[3.0, -1.0, -1.0], [-1.0, 2.0, 0.0], [-1.0, 0.0, 2.0]])
    mean, cov = gaussian_posterior(precision, np.array([0.0, *obs.tolist()]))
    second = np.diag(cov) + mean**2
    assert samples["y"].shape[2:] == (2,)
    check_moments(samples["x"], mean[0], second[0], "x")
    check_moments(samples["y"], mean[1:], second[1:], "y")
    check_expectation(samples["x"][..., None] * samples["y"], cov[0, 1:] + mean[0] * mean[1:],
                      "x*y")  # fmt: skip


@pytest.mark.parametrize("directions", modes("coordinate"))
def test_lkj_marginals(directions):
    """LKJCholesky(3, eta=2): each correlation ``r`` has ``(r + 1) / 2 ~ Beta(b, b)``,
    ``b = eta - 1 + d / 2 = 2.5``: ``E r = 0``, ``E r^2 = 1 / (2 b + 1)``,
    ``E r^4 = 3 / ((2 b + 1)(2 b + 3))``."""
    d, eta = 3, 2.0

    def model():
        pyro.sample("L", dist.LKJCholesky(d, torch.tensor(eta)))

    chol = draws_of(run_slice(model, directions))["L"]
    corr = chol @ np.swapaxes(chol, -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, atol=1e-6)
    assert (np.diagonal(chol, axis1=-2, axis2=-1) > 0).all()
    np.testing.assert_array_equal(np.triu(chol, 1), 0.0)
    r = np.stack([corr[..., i, j] for i, j in combinations(range(d), 2)], -1)
    b = eta - 1 + d / 2
    check_moments(r, 0.0, 1 / (2 * b + 1), "r")
    check_expectation(r**4, 3 / ((2 * b + 1) * (2 * b + 3)), "r**4")


def obs_mask_model(data, mask):
    """test_valid_models.test_obs_mask_ok's model."""
    x = pyro.sample("x", dist.Normal(0.0, 1.0))
    with pyro.plate("plate", len(data)):
        pyro.sample("y", dist.Normal(x, 1.0), obs=data, obs_mask=mask)


def run_masked(directions: str, dtype: str, mask: torch.Tensor, **kernel_kwargs) -> dict:
    """``obs_mask_model`` on data (7, 7, 7) under the default dtype ``dtype`` (restored after);
    draws as float64 arrays."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        data = torch.tensor([7.0, 7.0, 7.0])
        # 800 draws: a product moment's MCSE from ArviZ's ESS is rough at 400 (seed 0 gave
        # E[x y2] 4.1 MCSE off; seeds 1, 2 and float64 were within 2)
        mcmc = run_slice(obs_mask_model, directions, data, mask, draws=800, **kernel_kwargs)
        samples = mcmc.get_samples(group_by_chain=True)
    finally:
        torch.set_default_dtype(old)
    assert set(samples) == {"x", "y_unobserved"}
    assert all(v.dtype == getattr(torch, dtype) for v in samples.values())
    return {k: v.double().numpy() for k, v in samples.items()}


def obs_mask_cases(fast: tuple = ()) -> list:
    """Every mode in float64 and float32; the ``fast`` pairs in the default subset."""
    return [
        pytest.param(m, d, marks=() if (m, d) in fast else slow)
        for m in MODES
        for d in ("float64", "float32")
    ]


@pytest.mark.parametrize("directions, dtype", obs_mask_cases())
def test_obs_mask_all_imputed(directions, dtype):
    """Nothing observed (mask all False): the imputed ``y_unobserved`` is the prior
    predictive, ``y_i ~ N(0, 2)`` with ``cov(y_i, y_j) = cov(x, y_i) = 1``, and ``x ~ N(0, 1)``."""
    samples = run_masked(directions, dtype, torch.zeros(3, dtype=torch.bool))
    x, y = samples["x"], samples["y_unobserved"]
    check_moments(x, 0.0, 1.0, "x")
    check_moments(y, 0.0, 2.0, "y_unobserved")
    check_expectation(y[..., 0] * y[..., 1], 1.0, "y0*y1")
    check_expectation(x * y[..., 2], 1.0, "x*y2")


@pytest.mark.parametrize("directions, dtype", obs_mask_cases(fast=(("factor", "float32"),)))
def test_obs_mask_partly_observed(directions, dtype):
    """test_obs_mask_ok's case: only the middle datum observed. Then ``x ~ N(3.5, 1/2)`` and the
    imputed ``y_unobserved[0, 2] ~ N(x, 1)``: ``N(3.5, 3/2)``, covariance 1/2 between them.

    Pyro gives ``y_unobserved[1]`` (the observed entry) no density: the posterior is flat, so
    improper, along it, and the chain random-walks there; that entry is not checked. Moves along
    lines or trajectories leave the other coordinates' marginal exact whatever that entry does;
    a scale move ``theta <- g theta`` scales it too, and its conditional for ``g`` (weighted by
    ``g**(P - 1)``, ``P`` counting that entry) then no longer leaves the others' marginal exact,
    so scale moves are off here."""
    samples = run_masked(directions, dtype, torch.tensor([False, True, False]), scale_moves=0)
    x = samples["x"]
    y = samples["y_unobserved"][..., [0, 2]]
    check_moments(x, 3.5, 0.5 + 3.5**2, "x")
    check_moments(y, 3.5, 1.5 + 3.5**2, "y_unobserved")
    check_expectation(y[..., 0] * y[..., 1], 0.5 + 3.5**2, "y0*y2")
    check_expectation(x * y[..., 0], 0.5 + 3.5**2, "x*y0")


# ------------------------------------------------------------------------------------------
# correlated Gaussians


@pytest.mark.parametrize("directions", modes("factor", "hamiltonian"))
def test_bivariate_correlated_gaussian(directions):
    mean = torch.tensor([1.0, -1.0])
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]])

    def model():
        pyro.sample("x", dist.MultivariateNormal(mean, cov))

    # coordinate-wise updates on correlation 0.9 decorrelate slowly: more draws
    draws = 2000 if directions == "coordinate" else 300
    x = draws_of(run_slice(model, directions, draws=draws))["x"]
    check_moments(x, mean.numpy(), 1.0 + mean.numpy() ** 2, "x")
    check_expectation((x[..., 0] - 1.0) * (x[..., 1] + 1.0), 0.9, "cov")


@slow
@pytest.mark.parametrize(
    ("directions", "mass"),
    [
        ("factor", "diagonal"),
        ("hamiltonian", "dense"),
        pytest.param("hamiltonian", "diagonal", marks=pytest.mark.xfail(
            reason="every variance is 1, so a diagonal mass is the identity and the condition "
            "number stays 901: R-hat above 1.1 here; Pyro's NUTS at its default (diagonal) mass "
            "fails the same way (R-hat 1.27 at 4 x (300 + 500), bench/slice_vs_nuts.py)",
            strict=True,
        )),
    ],
)  # fmt: skip
def test_100d_correlated_gaussian(directions, mass):
    """100 coordinates, unit variances, every correlation 0.9 (eigenvalues 90.1 and 0.1: a
    condition number of 901). Coordinate-wise updates would need thousands of sweeps per
    independent draw, so that mode is not run; the hamiltonian mode needs the dense mass
    matrix that such a posterior asks for (docs/mcmc.md, the generic-path bench)."""
    dim = 100
    cov = 0.1 * torch.eye(dim) + 0.9 * torch.ones(dim, dim)

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(dim), cov))

    # a dense mass matrix is learnt from every chain's warm-up draws: 4 chains, as the bench
    kernel = {"mass": mass, "chains": 4} if directions == "hamiltonian" else {}
    x = draws_of(run_slice(model, directions, draws=250, warmup=300, **kernel))["x"]
    check_moments(x, 0.0, 1.0, "x")
    check_expectation(x[..., :10] * x[..., 10:20], 0.9, "x_i*x_j")
    check_expectation(x.mean(-1), 0.0, "mean of x")  # the slow, leading direction


# ------------------------------------------------------------------------------------------
# logistic regression (test_hmc.py, test_nuts.py), eight schools (examples/eight_schools)


@pytest.mark.parametrize("directions", MODES)
def test_logistic_regression_1d(directions):
    """``beta ~ N(0, 1)``, 20 points, ``y ~ Bernoulli(logits=beta x)``: a skewed posterior whose
    mean and second moment a 1-D quadrature gives exactly."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(20)
    y = (rng.random(20) < 1 / (1 + np.exp(-2.0 * x))).astype(np.float64)
    xt, yt = torch.tensor(x), torch.tensor(y)

    def model():
        beta = pyro.sample("beta", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Bernoulli(logits=beta * xt), obs=yt)

    grid = np.linspace(-12.0, 12.0, 24001)
    logits = grid[:, None] * x
    log_post = -0.5 * grid**2 + (y * log_expit(logits) + (1 - y) * log_expit(-logits)).sum(-1)
    m = moments_on_grid(log_post, np.ones_like(grid), b=grid, b2=grid**2, b3=grid**3)
    assert abs(m["b3"] - 3 * m["b"] * m["b2"] + 2 * m["b"] ** 3) > 1e-3  # skewed indeed
    beta = draws_of(run_slice(model, directions))["beta"]
    check_moments(beta, m["b"], m["b2"], "beta")


@slow
@pytest.mark.parametrize("directions", MODES)
def test_logistic_regression_pyro(directions):
    """test_nuts.test_logistic_regression: 2,000 points in 3-D, true coefficients (1, 2, 3),
    ``beta ~ N(0, I)``; the posterior by a 3-D quadrature on a grid around the mode, whitened
    by the Hessian there."""
    dim, n = 3, 2000
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, dim))
    y = (rng.random(n) < 1 / (1 + np.exp(-x @ np.arange(1.0, dim + 1.0)))).astype(np.float64)
    xt, yt = torch.tensor(x), torch.tensor(y)

    def model():
        beta = pyro.sample("beta", dist.Normal(torch.zeros(dim), torch.ones(dim)))
        pyro.sample("y", dist.Bernoulli(logits=(beta * xt).sum(-1)), obs=yt)

    def log_post(b):  # b [..., dim]
        a = b @ x.T
        return -0.5 * (b**2).sum(-1) + (y * log_expit(a) + (1 - y) * log_expit(-a)).sum(-1)

    mode = np.zeros(dim)
    for _ in range(50):  # Newton
        p = 1 / (1 + np.exp(-x @ mode))
        hess = np.eye(dim) + (x * (p * (1 - p))[:, None]).T @ x
        mode = mode + np.linalg.solve(hess, x.T @ (y - p) - mode)
    chol = np.linalg.cholesky(np.linalg.inv(hess))
    z = np.linspace(-9.0, 9.0, 73)
    zz = np.stack(np.meshgrid(z, z, z, indexing="ij"), -1).reshape(-1, dim)
    b = mode + zz @ chol.T
    lp = np.concatenate([log_post(chunk) for chunk in np.array_split(b, 100)])
    shape = (len(z),) * dim
    m = moments_on_grid(lp.reshape(shape), np.ones(shape), **{
        f"m{i}": b[:, i].reshape(shape) for i in range(dim)
    } | {f"s{i}": b[:, i].reshape(shape) ** 2 for i in range(dim)})  # fmt: skip
    beta = draws_of(run_slice(model, directions, draws=500, warmup=300))["beta"]
    check_moments(beta, [m[f"m{i}"] for i in range(dim)], [m[f"s{i}"] for i in range(dim)],
                  "beta")  # fmt: skip


EIGHT_SCHOOLS_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
EIGHT_SCHOOLS_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def eight_schools(sigma, y):
    """examples/eight_schools/mcmc.py's (non-centred) model, conditioned on ``y``."""
    eta = pyro.sample("eta", dist.Normal(torch.zeros(8), torch.ones(8)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))
    pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def eight_schools_truth(mu_scale: float = 10.0, tau_scale: float = 25.0) -> dict:
    """E[mu], E[tau], their second moments and E[theta_1] by quadrature over ``(mu, log tau)``
    for ``mu ~ N(0, mu_scale)``, ``tau ~ HalfCauchy(tau_scale)`` (the example's: 10, 25);
    ``theta = mu + tau eta`` integrates out: ``y_j | mu, tau ~ N(mu, sigma_j^2 + tau^2)``."""
    y, s2 = np.array(EIGHT_SCHOOLS_Y), np.array(EIGHT_SCHOOLS_SIGMA) ** 2
    mu = np.linspace(-60.0, 70.0, 651)
    tau = np.exp(np.linspace(-26.0, 8.0, 1361))
    mu_, tau_ = np.meshgrid(mu, tau, indexing="ij")
    v = s2 + tau_[..., None] ** 2
    log_post = -0.5 * (mu_ / mu_scale) ** 2 - np.log1p((tau_ / tau_scale) ** 2)
    log_post += (-0.5 * np.log(v) - 0.5 * (y - mu_[..., None]) ** 2 / v).sum(-1)
    theta_1 = (y[0] / s2[0] + mu_ / tau_**2) / (1 / s2[0] + 1 / tau_**2)
    return moments_on_grid(log_post, tau_, mu=mu_, mu2=mu_**2, tau=tau_, tau2=tau_**2,
                           theta_1=theta_1)  # fmt: skip


def test_eight_schools_truth():
    """The quadrature against published values and against importance sampling.

    With Stan's priors (``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``) it gives the posterior
    means in the literature, E[mu] = 4.4 and E[tau] = 3.6. With the Pyro example's wider
    priors (10 and 25) the means move to about 6.4 and 5.7; checked here by self-normalised
    importance sampling from the prior (tolerance: 4 standard errors of that estimate)."""
    stan = eight_schools_truth(5.0, 5.0)
    assert abs(stan["mu"] - 4.4) < 0.05 and abs(stan["tau"] - 3.6) < 0.05
    m = eight_schools_truth()
    rng = np.random.default_rng(7)
    n = 1_000_000
    mu, tau = rng.normal(0.0, 10.0, n), np.abs(25.0 * rng.standard_cauchy(n))
    y, s2 = np.array(EIGHT_SCHOOLS_Y), np.array(EIGHT_SCHOOLS_SIGMA) ** 2
    v = s2 + tau[:, None] ** 2
    log_w = (-0.5 * np.log(v) - 0.5 * (y - mu[:, None]) ** 2 / v).sum(-1)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    for name, f in (("mu", mu), ("tau", tau)):
        estimate = (w * f).sum()
        se = math.sqrt((w**2 * (f - estimate) ** 2).sum())
        assert abs(estimate - m[name]) < 4 * se, (name, estimate, m[name], se)


@slow
@pytest.mark.parametrize("directions", MODES)
def test_eight_schools(directions):
    sigma, y = torch.tensor(EIGHT_SCHOOLS_SIGMA), torch.tensor(EIGHT_SCHOOLS_Y)
    samples = draws_of(run_slice(eight_schools, directions, sigma, y, draws=500, warmup=300))
    m = eight_schools_truth()
    assert (samples["tau"] > 0).all()
    check_moments(samples["mu"], m["mu"], m["mu2"], "mu")
    check_moments(samples["tau"], m["tau"], m["tau2"], "tau")
    theta = samples["mu"] + samples["tau"] * samples["eta"]
    check_expectation(theta[..., 0], m["theta_1"], "theta_1")


# ------------------------------------------------------------------------------------------
# the MCMC API (test_mcmc_api.py)


def constrained_model():
    pyro.sample("g", dist.Gamma(3.0, 1.0))
    pyro.sample("p", dist.Dirichlet(torch.tensor([2.0, 3.0, 5.0])))


def _check_constrained(samples: dict[str, np.ndarray], chains: int, draws: int) -> None:
    g, p = samples["g"], samples["p"]
    assert g.shape == (chains, draws), g.shape
    assert p.shape == (chains, draws, 3), f"simplex site of shape {p.shape}: unconstrained?"
    assert (g > 0).all(), "the Gamma site came back unconstrained"
    assert (p > 0).all() and np.allclose(p.sum(-1), 1.0), "the simplex site came back off it"
    check_moments(g, 3.0, 12.0, "g")
    conc = np.array([2.0, 3.0, 5.0])
    check_moments(p, conc / 10.0, conc * (conc + 1) / 110.0, "p")


@pytest.mark.parametrize("regime", [pytest.param("parallel", marks=slow), "sequential"])
@pytest.mark.parametrize("directions", modes("factor"))
def test_constrained_sites_in_both_chain_regimes(directions, regime, monkeypatch):
    """Pyro runs chains in worker processes when ``num_chains <= cpu_count - 1``, else one after
    another (test_mcmc_api.test_num_chains); both must return constrained values."""
    set_cpu_count(monkeypatch, 16 if regime == "parallel" else 1)
    mcmc = run_slice(constrained_model, directions)
    sampler = type(mcmc.sampler).__name__
    assert sampler == ("_MultiSampler" if regime == "parallel" else "_UnarySampler")
    _check_constrained(draws_of(mcmc), 2, 300)


def test_sequential_chains_start_from_different_points():
    """In the shape of test_mcmc_api.test_sequential_consistent (nothing of one chain is left
    for the next): chains drawn one after another each start at a point of their own (Pyro's
    ``kernel.initial_params`` when the chain's first sweep is done), neither the previous
    chain's start nor its last draw, and their first draws differ.

    Pyro's test itself swaps the seeds of the two chains between two runs and expects swapped
    chains; that presumes a chain's draws depend only on the RNG state at its own ``setup``,
    which a kernel that advances sequential chains together need not satisfy, so it is not
    used here (:func:`test_fixed_seed_reproduces_the_chains` covers reproducibility)."""
    starts = {}

    def hook(kernel, params, stage, i):
        if i == 0 and stage.startswith("Warmup"):
            starts[stage] = kernel.initial_params["x"].clone()

    def model():
        pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    mcmc = run_slice(model, "factor", draws=5, warmup=5, chains=3, hook_fn=hook)
    assert len(starts) == 3
    for (c1, a), (c2, b) in combinations(starts.items(), 2):
        assert not torch.equal(a, b), f"{c1} and {c2} both started at {a.tolist()}"
    x = mcmc.get_samples(group_by_chain=True)["x"]
    for c, start in enumerate(list(starts.values())[1:], 1):
        assert not torch.equal(start, x[c - 1, -1]), f"chain {c} started at chain {c - 1}'s end"
    for i, j in combinations(range(3), 2):
        assert not torch.equal(x[i, 0], x[j, 0])


@pytest.mark.parametrize("directions", modes("factor"))
def test_fixed_seed_reproduces_the_chains(directions):
    """The same seed gives the same chains, and the two chains are not copies of each other."""
    data = torch.tensor([1.0])
    runs = [
        run_slice(normal_normal_model, directions, data, draws=50, warmup=50).get_samples(
            group_by_chain=True
        )["y"]
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.equal(runs[0][0], runs[0][1])


# Pyro's _Worker sets ``kernel.initial_params`` on the one kernel object for every chain before
# the worker processes start, so every worker starts at the last chain's point; Pyro's own NUTS
# starts both chains at -300 in this test too (pyro-ppl 1.9.2). Not the kernel's to fix.
PYRO_PARALLEL_STARTS = pytest.mark.xfail(
    reason="Pyro's parallel regime hands every worker the last chain's start", strict=False
)


@pytest.mark.parametrize(
    "regime", [pytest.param("parallel", marks=PYRO_PARALLEL_STARTS), "sequential"]
)
@pytest.mark.parametrize("directions", modes("coordinate", "factor", "hamiltonian"))
def test_initial_params_honoured(directions, regime, monkeypatch):
    """Chains given far-apart starts (unconstrained space, as Pyro's ``initial_params``) are
    still near them after one update of a very broad posterior (no warm-up, so no adapted
    step: a no-U-turn trajectory of the first step, 0.1 jittered by 10 %, reaches at most 113
    away, a univariate slice at most 20 widths of 1)."""
    set_cpu_count(monkeypatch, 16 if regime == "parallel" else 1)

    def model():
        pyro.sample("x", dist.Normal(0.0, 1000.0))
        pyro.sample("s", dist.LogNormal(0.0, 1000.0))

    starts = {"x": torch.tensor([300.0, -300.0]), "s": torch.tensor([200.0, -200.0])}
    mcmc = run_slice(model, directions, draws=3, warmup=0, initial_params=starts)
    samples = draws_of(mcmc)
    assert (samples["s"] > 0).all(), "the LogNormal site came back unconstrained"
    x, log_s = samples["x"][:, 0], np.log(samples["s"][:, 0])  # each chain's first draw
    for c in range(2):
        assert abs(x[c] - starts["x"][c].item()) < 150, x[c]
        assert abs(log_s[c] - starts["s"][c].item()) < 150, log_s[c]


def test_summary_and_diagnostics(capsys):
    mcmc = run_slice(constrained_model, "factor", draws=100, warmup=50)
    mcmc.summary()
    out = capsys.readouterr().out
    assert "g" in out and "p[0]" in out and "n_eff" in out and "r_hat" in out
    diag = mcmc.diagnostics()
    assert diag["g"]["n_eff"].shape == () and diag["p"]["r_hat"].shape == (3,)
    assert set(diag["divergences"]) == {"chain 0", "chain 1"}


@pytest.mark.parametrize("directions", modes("factor"))
def test_streaming_mcmc(directions):
    pyro.set_rng_seed(0)
    mcmc = StreamingMCMC(
        Slice(constrained_model, directions=directions),
        num_samples=300,
        warmup_steps=150,
        num_chains=2,
        statistics=StatsOfDict(default=StackStats),
        disable_progbar=True,
    )
    mcmc.run()
    stats = mcmc.get_statistics(group_by_chain=True)
    samples = {
        name: torch.stack([stats[(c, name)]["samples"] for c in range(2)]).double().numpy()
        for name in ("g", "p")
    }
    _check_constrained(samples, 2, 300)
    assert set(mcmc.diagnostics()["divergences"]) == {"chain 0", "chain 1"}


def test_arviz_from_pyro():
    mcmc = run_slice(constrained_model, "factor", draws=100, warmup=50)
    idata = az.from_pyro(mcmc)
    g = idata.posterior["g"].values
    assert g.shape == (2, 100)
    assert (g > 0).all()
    assert idata.posterior["p"].shape == (2, 100, 3)
    assert idata.sample_stats["diverging"].shape == (2, 100)
    summary = az.summary(idata, var_names=["g"])
    assert float(summary.loc["g", "r_hat"]) < RHAT_MAX


@pytest.mark.parametrize("num_chains", [1, 2])
def test_model_without_latent_sites(num_chains):
    """test_mcmc_api.test_null_model_with_hook: a model with no latent site gives ``{}`` and
    the hook sees every step, as NUTS does."""

    def model():
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))
        return torch.tensor(1)

    results = {}
    for name, kernel in [("nuts", NUTS(model)), ("slice", Slice(model))]:
        iters = []

        def hook(kernel, samples, stage, i, iters=iters):
            assert samples == {}
            iters.append((stage, i))

        mcmc = MCMC(kernel, num_samples=10, warmup_steps=10, num_chains=num_chains,
                    hook_fn=hook, disable_progbar=True)  # fmt: skip
        mcmc.run()
        results[name] = (mcmc.get_samples(), mcmc.get_samples(group_by_chain=True), iters)
    assert results["nuts"][0] == {} and results["nuts"][1] == {}
    assert results["slice"][0] == {} and results["slice"][1] == {}
    assert results["slice"][2] == results["nuts"][2]


def funnel(n: int):
    """Neal's funnel, centred: ``y ~ N(0, 3)``, ``x ~ N(0, exp(y / 2))``."""
    y = pyro.sample("y", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(n), torch.exp(y / 2)).to_event(1))


def test_divergences_reported_on_the_funnel():
    """NUTS reports divergences in the funnel's neck (13 in 2 x 200 draws after 200 warm-up
    steps, seed 0); so must trajectories of fixed step size, in Pyro's shape:
    ``{"chain i": [indices of divergent draws]}``."""
    draws = 150
    mcmc = run_slice(funnel, "hamiltonian", 3, draws=draws, warmup=100)
    div = mcmc.diagnostics()["divergences"]
    assert set(div) == {"chain 0", "chain 1"}
    for indices in div.values():
        assert all(isinstance(i, int) and 0 <= i < draws for i in indices), indices
    total = sum(len(v) for v in div.values())
    assert total >= 1, "no divergence reported in the funnel's neck"
    assert int(az.from_pyro(mcmc).sample_stats["diverging"].sum()) == total


@pytest.mark.parametrize("directions", ["coordinate", "factor"])
def test_no_divergences_without_trajectories(directions):
    """Univariate slice updates cannot diverge: empty lists, in Pyro's shape."""
    mcmc = run_slice(funnel, directions, 3, draws=50, warmup=20)
    assert mcmc.diagnostics()["divergences"] == {"chain 0": [], "chain 1": []}
