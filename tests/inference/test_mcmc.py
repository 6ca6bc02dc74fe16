"""inference.mcmc and the Slice kernel: fast path = generic path, Pyro/ArviZ integration,
configuration, and one quick pipeline run."""

from __future__ import annotations

import json
import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from bayes_spheres.config import ConfigError, validate
from bayes_spheres.data import load_spheres
from bayes_spheres.inference import mcmc
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.kernels import Slice, SliceSettings
from bayes_spheres.kernels.fast.logistic_model import model_target
from bayes_spheres.kernels.potential import PotentialTarget
from bayes_spheres.models import Flat, Hierarchical, SharedMean
from bayes_spheres.pipeline import run


def fit(model, data, members, seed=0, num_chains=8, warmup=120, thin=5, kernel="slice", **slice):
    """``mcmc.fit`` with its settings objects made from keywords (``slice``: the kernel's)."""
    settings = mcmc.MCMCSettings(kernel, num_chains, warmup, thin, slice=SliceSettings(**slice))
    return mcmc.fit(model, data, members, seed, settings)


@pytest.fixture(scope="module")
def small_data():
    return load_spheres(6, 60, 200, 1.0, 1.3, seed=0, dtype=torch.float64, device="cpu")


# one case per mode in the default suite, the rest slow
@pytest.mark.parametrize(
    ("model", "directions"),
    [pytest.param(Flat(), "coordinate", marks=pytest.mark.slow),
     pytest.param(SharedMean(), "coordinate", marks=pytest.mark.slow),
     (Flat(bias=False), "coordinate"),
     pytest.param(Flat(), "factor", marks=pytest.mark.slow),
     (SharedMean(), "factor"),
     pytest.param(Flat(bias=False), "factor", marks=pytest.mark.slow)],
    ids=["flat-coordinate", "shared_mean-coordinate", "flat_no_bias-coordinate",
         "flat-factor", "shared_mean-factor", "flat_no_bias-factor"],
)  # fmt: skip
def test_fast_path_gives_the_same_chain_as_the_generic_path(small_data, model, directions):
    kw = dict(members=40, seed=3, num_chains=2, warmup=30, directions=directions, scale_moves=1)
    fast = fit(model, small_data, fast=True, **kw)
    generic = fit(model, small_data, fast=False, **kw)
    assert fast.info["mcmc"]["path"] == "fast" and generic.info["mcmc"]["path"] == "generic"
    for site in generic.samples:
        torch.testing.assert_close(fast.samples[site], generic.samples[site], rtol=0, atol=1e-7)


def test_fast_path_log_density_matches_pyro(small_data):
    model = SharedMean(sigma_mu=3.0, sigma=0.5)
    target = model_target(model, small_data.phi_train, small_data.y_train)
    potential = FlatPotential.from_model(model, small_data.phi_train, small_data.y_train)
    theta = torch.randn(5, potential.size, generator=torch.Generator().manual_seed(0))
    exact = -torch.stack([potential(t) for t in theta])
    diff = target.log_density(theta) - exact
    torch.testing.assert_close(diff, diff[0].expand(5))  # equal up to a constant


@pytest.mark.parametrize("model", [Flat(), SharedMean(sigma_mu=3.0, sigma=0.5)])
def test_fast_scaling_ray_matches_the_log_density(small_data, model):
    """LogisticTarget's O(N) density along e^s theta (the offset does not scale) equals its
    log density at the scaled points, and Pyro's potential's up to one constant."""
    target = model_target(model, small_data.phi_train, small_data.y_train)
    potential = FlatPotential.from_model(model, small_data.phi_train, small_data.y_train)
    generic = PotentialTarget(potential)
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(3, potential.size, generator=gen, dtype=torch.float64)
    s = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    points = (torch.exp(s)[..., None] * theta[:, None]).reshape(12, -1)
    fast = target.scaling_ray(theta)(s)
    torch.testing.assert_close(fast, target.log_density(points).reshape(3, 4))
    diff = fast - generic.scaling_ray(theta)(s)
    torch.testing.assert_close(diff, diff[0, 0].expand(3, 4))


@pytest.mark.parametrize(
    ("directions", "path"), [("hamiltonian", "conditional"), ("factor", "generic")]
)
def test_hierarchical_models_take_the_conditional_path_along_trajectories(
    directions, path, small_data
):
    """Not the flat fast path (``s`` is positive); given ``s``, the Gaussian sites are on it
    when slicing along Hamiltonian trajectories (``kernels/conditional.py``)."""
    with pytest.raises(ValueError, match="support"):
        model_target(Hierarchical(), small_data.phi_train, small_data.y_train)
    post = fit(
        Hierarchical(centered=False), small_data, members=20, num_chains=2, warmup=10,
        thin=1, directions=directions,
    )  # fmt: skip
    assert post.info["mcmc"]["path"] == path
    assert "support" in post.info["mcmc"]["path_reason"]
    assert bool((post.samples["s"] > 0).all())
    assert post.samples["w"].shape == (2, 10, 6)


def test_posterior_shapes_and_diagnostics(small_data):
    """Samples (posterior.nc, R-hat, ESS) hold every draw after warm-up; the ensemble every
    thin-th of them."""
    post = fit(Flat(), small_data, members=30, num_chains=4, warmup=20, thin=2)
    assert post.ensemble.size == 30
    assert post.samples["w"].shape == (4, 16, 6) and post.samples["b"].shape == (4, 16)
    assert post.sample_stats["lp"].shape == (4, 16)
    # the recorded log density is Pyro's -potential at each draw
    potential = FlatPotential.from_model(Flat(), small_data.phi_train, small_data.y_train)
    theta = torch.cat([post.samples["w"][1, 3], post.samples["b"][1, 3, None]])
    torch.testing.assert_close(post.sample_stats["lp"][1, 3], -potential(theta))
    torch.testing.assert_close(post.ensemble.w[:8], post.samples["w"][0, 1::2])
    conv = post.info["convergence"]
    assert set(conv) >= {"rhat_max", "ess_bulk_min", "ess_tail_min"}
    assert conv["rhat_max"] >= 1.0 - 1e-6 and conv["ess_bulk_min"] > 0


@pytest.mark.slow
def test_logistic_regression_d10_matches_nuts():
    """Bayesian logistic regression with D = 10: slice and NUTS posterior means agree within
    their Monte Carlo standard errors."""
    data = load_spheres(10, 100, 100, 1.0, 1.3, seed=1, dtype=torch.float64, device="cpu")
    model = Flat(sigma=2.0)
    sl = fit(model, data, members=2000, num_chains=4, warmup=200)
    pyro.set_rng_seed(0)
    nuts = fit(model, data, members=600, num_chains=2, warmup=200, kernel="nuts")
    for site in ("w", "b"):
        a, b = sl.samples[site].numpy(), nuts.samples[site].numpy()
        a, b = a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1)
        for j in range(a.shape[-1]):
            se = np.hypot(a[..., j].std() / np.sqrt(az.ess(a[..., j])),
                          b[..., j].std() / np.sqrt(az.ess(b[..., j])))  # fmt: skip
            assert abs(a[..., j].mean() - b[..., j].mean()) < 4 * se, (site, j)


@pytest.mark.parametrize("cpus", [1, 16], ids=["sequential", "parallel"])
@pytest.mark.parametrize(
    ("directions", "keys"),
    [("coordinate", {"width", "evals/update"}), ("hamiltonian", {"step", "accept"})],
)
def test_slice_kernel_in_pyro_mcmc_and_arviz(directions, keys, cpus, monkeypatch):
    """In both of Pyro's chain regimes (worker processes when ``num_chains <= cpu_count - 1``,
    else one chain after another): constrained sites come back constrained."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)

    def model():
        pyro.sample("s", dist.Gamma(3.0, 1.0))
        pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    pyro.set_rng_seed(0)
    kernel = Slice(model, directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "chains drawn sequentially" on 2 cores
        m = MCMC(kernel, num_samples=200, warmup_steps=50, num_chains=2, disable_progbar=True)
        m.run()
    idata = az.from_pyro(m)
    assert idata.posterior["s"].shape == (2, 200)
    assert "diverging" in idata.sample_stats
    assert not bool(idata.sample_stats["diverging"].any())
    assert bool((idata.posterior["s"] > 0).all())
    if cpus == 1:  # in worker processes the parent's kernel never samples
        assert set(kernel.logging()) == keys
    assert "s" in m.transforms
    s = idata.posterior["s"].values  # Gamma(3, 1): mean 3, a skewed target
    mcse = s.std() / np.sqrt(float(az.ess(s)))
    assert abs(s.mean() - 3.0) < 4 * mcse


def test_a_no_u_turn_trajectory_asked_for_by_name_samples_a_correlated_gaussian(monkeypatch):
    """``Slice(model, trajectory="no-u-turn")`` on the generic path: the length follows the
    posterior (``diagnostics()`` says so), and the draws have the target's moments: a 2-D
    Gaussian, sds 1 and 3, correlation 0.9 (means and variances within 4 MCSE)."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 1)  # one after another
    cov = torch.tensor([[1.0, 2.7], [2.7, 9.0]], dtype=torch.float64)

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov))

    pyro.set_rng_seed(0)
    kernel = Slice(model, trajectory="no-u-turn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = MCMC(kernel, num_samples=400, warmup_steps=150, num_chains=2, disable_progbar=True)
        m.run()
    info = m.diagnostics()
    assert info["trajectory"] == {"chain 0": "no-u-turn", "chain 1": "no-u-turn"}
    x = m.get_samples(group_by_chain=True)["x"].numpy()
    for j, var in enumerate((1.0, 9.0)):
        draws = x[..., j]
        ess = float(az.ess(draws))
        assert abs(draws.mean()) < 4 * math.sqrt(var / ess), j
        # the variance's MCSE: sd of (x^2 - var) is var sqrt(2) for a Gaussian
        assert abs((draws**2).mean() - var) < 4 * var * math.sqrt(2 / ess), j


def test_slice_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        Slice()
    with pytest.raises(ValueError, match="init_width"):
        Slice(lambda: None, init_width=-1.0)
    with pytest.raises(ValueError, match="coordinates"):
        Slice(lambda: None, directions="coordinates")
    with pytest.raises(ValueError, match="trajectory"):
        Slice(lambda: None, directions="hamiltonian", trajectory=0.0)
    with pytest.raises(ValueError, match=r"trajectory='nuts': .*'no-u-turn' or None"):
        Slice(lambda: None, trajectory="nuts")
    with pytest.raises(ValueError, match="warmup_trajectory='no-u-turn': must be a finite"):
        Slice(lambda: None, warmup_trajectory="no-u-turn")
    for name in ("init_width", "trajectory", "warmup_trajectory", "max_energy"):
        with pytest.raises(ValueError, match=f"{name}=inf"):
            Slice(lambda: None, **{name: math.inf})
    with pytest.raises(ValueError, match="max_steps"):
        Slice(lambda: None, max_steps=2.5)
    with pytest.raises(ValueError, match="target_accept"):
        Slice(lambda: None, target_accept=1.0)
    with pytest.raises(ValueError, match="diagonal"):
        Slice(lambda: None, mass="full")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inference.kernel=hmc", "slice, nuts"),
        ("inference.slice.directions=eigen", "inference.slice.directions='eigen': .*coordinate"),
        ("inference.num_chains=0", "inference.num_chains=0: must be an integer >= 1"),
        ("inference.warmup=abc", "inference.warmup='abc': must be an integer >= 0"),
        ("inference.slice.trajectory=-1", "inference.slice.trajectory=-1: must be a finite"),
        ("inference.slice.trajectory=nuts", "inference.slice.trajectory='nuts': .*no-u-turn"),
    ],
)
def test_config_rejects_bad_enums(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(["inference=mcmc", override]))


def test_config_mcmc_attack_step(compose):
    plan = validate(compose(["inference=mcmc"]))
    assert plan.attack.step_size == 1e-4
    assert plan.resample and plan.fit.kernel == "slice" and plan.fit.slice == SliceSettings()
    plan = validate(compose(["inference=mcmc", "inference.slice.trajectory=no-u-turn"]))
    assert plan.fit.slice == SliceSettings(trajectory="no-u-turn")


def test_quick_pipeline_run(compose, tmp_path):
    cfg = compose(
        ["inference=mcmc", "inference.warmup=20", "inference.num_chains=4", "members=40",
         "restarts=2", "attack.max_steps=50", "data.dim=8", "data.n_train=60"]
    )  # fmt: skip
    result = run(cfg, tmp_path)
    assert {"rhat_max", "ess_bulk_min"} <= set(result)
    assert result["resampled_error"] is not None
    idata = az.from_netcdf(tmp_path / "posterior.nc")
    thin = cfg.inference.thin  # posterior.nc: every draw after warm-up, 10 members x thin
    assert idata.sample_stats["lp"].shape == (4, 10 * thin)
    summary = az.summary(idata, var_names=["w"])
    assert {"r_hat", "ess_bulk"} <= set(summary.columns)
    assert (tmp_path / "trace.png").stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rhat_max"] == result["rhat_max"]
