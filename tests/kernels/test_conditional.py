"""The slice kernel's conditional path (``bayes_spheres/kernels/conditional.py``) as users call
it, ``pyro.infer.MCMC(Slice(model))`` on a hierarchical logistic model: found from the model,
in both of Pyro's chain regimes, against posterior moments by quadrature within Monte Carlo
error; models it must not take refused with the reason. Its moves alone, from exact draws:
the orbit move of a global scale (``kernels/scale_moves.py``) against quadrature, and the
joint update of several hyper-parameters (``kernels/hyper.py``) against known moments."""

from __future__ import annotations

import functools
import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from bayes_spheres.kernels import Slice
from bayes_spheres.kernels.conditional import conditional_target
from bayes_spheres.kernels.hyper import HyperSampler
from bayes_spheres.kernels.scale_moves import orbit_exponents, orbit_update

SEQUENTIAL, PARALLEL = 1, 16  # patched cpu counts (Pyro: workers when chains <= cpus - 1)
PRIOR_MEDIAN, PRIOR_LOG_SD, BIAS_SCALE = 2.0, 0.5, 2.0


def centered(x, y):
    """``s ~ LogNormal(log 2, 0.5)``, ``w | s ~ N(0, s^2)``, ``b ~ N(0, 2^2)``,
    ``y ~ Bernoulli(sigmoid(x w + b))``: the study's hierarchical prior, whose bias has a scale
    of its own (so ``s`` is a global scale with an orbit move that scales ``b`` along)."""
    s = pyro.sample("s", dist.LogNormal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD))
    w = pyro.sample("w", dist.Normal(0.0, s))
    b = pyro.sample("b", dist.Normal(0.0, BIAS_SCALE))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * w + b), obs=y)


def noncentered(x, y):
    """:func:`centered` written as ``w = s z``, ``z ~ N(0, 1)`` (``b`` as before)."""
    s = pyro.sample("s", dist.LogNormal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD))
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, BIAS_SCALE))
    pyro.deterministic("w", s * z)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x * s * z + b), obs=y)


@pytest.fixture
def data():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, generator=g)
    y = torch.bernoulli(torch.sigmoid(2.0 * x - 0.5), generator=g)
    yield x, y
    torch.set_default_dtype(old)


def quadrature_moments(x, y) -> dict[str, tuple[float, float]]:
    """Posterior mean and standard deviation of ``s``, ``w`` and ``b`` on a grid over
    ``(log s, w, b)``."""
    u = torch.linspace(math.log(PRIOR_MEDIAN) - 3.0, math.log(PRIOR_MEDIAN) + 3.0, 121)
    w = torch.linspace(-12.0, 16.0, 281)
    b = torch.linspace(-12.0, 12.0, 241)
    uu, ww, bb = torch.meshgrid(u, w, b, indexing="ij")
    s = torch.exp(uu)
    logits = x * ww[..., None] + bb[..., None]
    log_joint = (
        dist.Normal(math.log(PRIOR_MEDIAN), PRIOR_LOG_SD).log_prob(uu)  # p(log s)
        + dist.Normal(0.0, s).log_prob(ww)
        + dist.Normal(0.0, BIAS_SCALE).log_prob(bb)
        + dist.Bernoulli(logits=logits).log_prob(y).sum(-1)
    )
    weight = torch.exp(log_joint - log_joint.max())
    weight = weight / weight.sum()
    moments = {}
    for name, value in (("s", s), ("w", ww), ("b", bb)):
        mean = float((weight * value).sum())
        moments[name] = (mean, float((weight * (value - mean) ** 2).sum().sqrt()))
    return moments


@pytest.mark.parametrize(
    ("model", "cpus"),
    # the worker-process regime on the non-centred model: slow (tests/inference/test_mcmc.py runs
    # the kernel in both regimes in the default suite)
    [(centered, SEQUENTIAL), pytest.param(noncentered, PARALLEL, marks=pytest.mark.slow)],
    ids=["centered-sequential", "noncentered-parallel"],
)
def test_hierarchical_logistic_takes_the_conditional_path_to_the_quadrature_moments(
    model, cpus, data, monkeypatch
):
    x, y = data
    truth = quadrature_moments(x, y)
    pyro.set_rng_seed(0)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)
    mcmc = MCMC(Slice(model), num_samples=400, warmup_steps=100, num_chains=2,
                disable_progbar=True)  # fmt: skip
    mcmc.run(x, y)
    diagnostics = mcmc.diagnostics()
    assert set(diagnostics["path"].values()) == {"conditional"}
    assert "given ['s']" in diagnostics["path_reason"]["chain 0"]
    # the hyper-parameters' joint density replayed: these moments test the recording
    assert set(diagnostics["potential"].values()) == {"compiled"}, diagnostics["potential"]
    # one orbit move (s with b); the centred step only where G -> z depends on s
    assert len(diagnostics["orbit_moves"]["chain 0"]["width"]) == 1
    steps = diagnostics["hyper_steps"]["chain 0"]  # s | z, s | w: decided after warm-up
    assert steps["given z"].startswith(("kept", "dropped")), steps
    if model is centered:
        assert steps["given G"].startswith(("kept", "dropped")), steps
    else:
        assert steps["given G"] == "not run: G -> z does not depend on H"
    idata = az.from_pyro(mcmc)
    assert float(az.rhat(idata)["s"]) < 1.05
    samples = mcmc.get_samples(group_by_chain=True)
    for name, (mean, sd) in truth.items():
        draws = samples[name].numpy() if name in samples else None
        if draws is None:  # noncentered: w = s z, read off the draws
            draws = (samples["s"] * samples["z"]).numpy()
        ess = float(az.ess(np.asarray(draws)))
        mcse = sd / math.sqrt(ess)
        assert abs(draws.mean() - mean) < 4.5 * mcse, (name, draws.mean(), mean, mcse)
        assert abs(draws.std() / sd - 1.0) < 0.25, (name, draws.std(), sd)


def test_without_jit_compile_the_joint_density_is_pyros_and_the_chain_the_same(data):
    """``jit_compile=False``: the hyper-parameters' moves call Pyro's potential of the
    reparameterised model; the recording equals it to rounding, so the same seed gives the
    same draws to 1e-8 either way."""
    x, y = data
    draws = {}
    for jit in (True, False):
        pyro.set_rng_seed(0)
        kernel = Slice(centered, jit_compile=jit)
        mcmc = MCMC(kernel, num_samples=20, warmup_steps=10, num_chains=1, disable_progbar=True)
        mcmc.run(x, y)
        assert kernel.diagnostics()["potential"] == ("compiled" if jit else "per point")
        draws[jit] = mcmc.get_samples()["s"]
    torch.testing.assert_close(draws[True], draws[False], rtol=1e-8, atol=0)


def test_a_gaussian_site_with_nonlinear_logits_is_refused_with_the_reason(data, monkeypatch):
    x, y = data

    def cubic(x, y):
        s = pyro.sample("s", dist.LogNormal(0.0, 0.5))
        w = pyro.sample("w", dist.Normal(0.0, s))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Bernoulli(logits=x * w**3), obs=y)

    pyro.set_rng_seed(0)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    mcmc = MCMC(Slice(cubic), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run(x, y)
    diagnostics = mcmc.diagnostics()
    assert diagnostics["path"]["chain 0"] == "generic"
    assert "not conditional: " in diagnostics["path_reason"]["chain 0"]


def sparse_logistic(x, y):
    """A horseshoe-like prior (the Inference Gym's sparse logistic regression):
    ``tau, lambda_j ~ Gamma(1/2, 1/2)``, ``z_j ~ N(0, 1)``, ``w = z lambda tau``."""
    d = x.shape[1]
    tau = pyro.sample("tau", dist.Gamma(0.5, 0.5))
    lam = pyro.sample("lam", dist.Gamma(0.5, 0.5).expand([d]).to_event(1))
    z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    pyro.sample("y", dist.Bernoulli(logits=x @ (z * lam * tau)).to_event(1), obs=y)


def group_offsets(x, y):
    """A scale and 20 heavy-tailed group offsets, 21 hyper-parameters (more than the cap of
    16 there was): ``s ~ LogNormal``, ``w ~ N(0, s^2)``, ``o_g ~ StudentT(3)``, logits
    ``x w + o_(n mod 20)``."""
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    w = pyro.sample("w", dist.Normal(0.0, s).expand([x.shape[1]]).to_event(1))
    offsets = pyro.sample("offsets", dist.StudentT(3.0, 0.0, 1.0).expand([20]).to_event(1))
    logits = x @ w + offsets[torch.arange(len(y)) % 20]
    pyro.sample("y", dist.Bernoulli(logits=logits).to_event(1), obs=y)


def test_twenty_one_hyper_parameters_take_the_conditional_path_a_horseshoe_does_not(
    monkeypatch,
):
    """No cap on the hyper-parameters: 21 are updated together along trajectories. A local
    scale (a horseshoe's, 21 coordinates too) is refused with the reason: Gibbs sweeps
    zig-zag along its funnel with its weights (``kernels/scale_moves.py::global_orbits``)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 20, generator=g)
    y = torch.bernoulli(torch.sigmoid(x[:, 0] - x[:, 1]), generator=g)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    diagnostics = {}
    for model in (group_offsets, sparse_logistic):
        pyro.set_rng_seed(0)
        mcmc = MCMC(Slice(model), num_samples=5, warmup_steps=5, disable_progbar=True)
        mcmc.run(x[:, :3] if model is group_offsets else x, y)
        diagnostics[model] = {k: v["chain 0"] for k, v in mcmc.diagnostics().items()
                              if isinstance(v, dict) and "chain 0" in v}  # fmt: skip
    offsets, horseshoe = diagnostics[group_offsets], diagnostics[sparse_logistic]
    assert offsets["path"] == "conditional"
    assert "given ['s', 'offsets']" in offsets["path_reason"]
    assert "leapfrogs_per_update" in offsets["hyper_given_z"]
    assert offsets["hyper_steps"]["given z"] == "run"
    assert horseshoe["path"] == "generic"
    assert (
        "'lam'[0] is a local scale (of 1 of 20 Gaussian coordinates)" in (horseshoe["path_reason"])
    )


def test_a_scaled_design_gives_the_jacobians_target_and_trajectory(data):
    """The hierarchical prior's logit matrix is ``[s x, 1]``: one factor per Gaussian site
    (``kernels/gaussian_block.py``). At another ``s`` the target built from the probes and the
    per-site Gram matrices equals the one from the model's Jacobian, and a trajectory on it
    is the same to rounding."""
    x, y = data
    with torch.random.fork_rng():
        problem, initial = Slice(centered).chains(1, x, y)
    target = conditional_target(
        centered, (x, y), {}, problem.shapes, problem.transforms, problem.potential_fn,
        initial[0], problem.prototype,
    )  # fmt: skip
    assert target.design is not None and [k for k, _ in target.orbits] == [0]
    hyper, z = target.split(initial[0])
    hyper = hyper + 0.7
    fast = target.conditional(hyper, z)
    design, target.design = target.design, None
    whole = target.conditional(hyper, z)
    target.design = design
    torch.testing.assert_close(fast.signed_x, whole.signed_x)
    torch.testing.assert_close(fast.signed_offset, whole.signed_offset)
    steps = []
    for block in (fast, whole):
        split = block.splitting()
        torch.manual_seed(3)
        lp, grad = split.rest(z[None])
        steps.append(split.trajectory(z[None], lp, grad, 0.2, 30, 1000.0).z)
    torch.testing.assert_close(steps[0], steps[1])


# -- the moves alone, from exact draws ------------------------------------------------------


def skewed_log_density(hyper, z):
    """``u ~ N(0, 1)``, ``z ~ N(0, I_2)``, times ``sigmoid(3 (e^u z_1 + z_2) - 1)``: skewed,
    and the orbit ``(u + t, z_1, e^t z_2)`` scales its logit but for the offset."""
    u = hyper[..., 0]
    logit = 3.0 * (torch.exp(u) * z[..., 0] + z[..., 1]) - 1.0
    return -0.5 * u**2 - 0.5 * (z**2).sum(-1) + torch.nn.functional.logsigmoid(logit)


def skewed_exact_draws(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact draws of :func:`skewed_log_density` by rejection from its Gaussian part."""
    kept = torch.empty(0, 3)
    while len(kept) < n:
        proposal = torch.randn(4 * n, 3, generator=generator)
        accept = torch.rand(4 * n, generator=generator) < torch.exp(
            skewed_log_density(proposal[:, :1], proposal[:, 1:]) + 0.5 * (proposal**2).sum(-1)
        )
        kept = torch.cat([kept, proposal[accept]])
    return kept[:n, :1], kept[:n, 1:]


@functools.cache
def skewed_moments() -> dict[str, float]:
    """``E u``, ``E u^2`` and ``E z_2^2`` of :func:`skewed_log_density` by quadrature."""
    grid = torch.linspace(-7.0, 7.0, 141)
    u, z1, z2 = torch.meshgrid(grid, grid, grid, indexing="ij")
    weight = torch.exp(skewed_log_density(u[..., None], torch.stack([z1, z2], -1)))
    weight = weight / weight.sum()
    return {"u": float((weight * u).sum()), "u^2": float((weight * u**2).sum()),
            "z2^2": float((weight * z2**2).sum())}  # fmt: skip


@pytest.mark.parametrize(
    ("exponents", "jacobian"),
    [((0.0, 1.0), True), ((-0.5, -0.5), True), ((0.0, 1.0), False), ((-0.5, -0.5), False)],
    ids=["scale-b-along", "a=1/2", "scale-b-along-no-jacobian", "a=1/2-no-jacobian"],
)
def test_orbit_moves_keep_exact_draws_exact_and_need_their_jacobian(exponents, jacobian):
    """Two moves ``(u, z) <- (u + t, e^(c t) z)`` from 2,000 exact draws leave them exact
    (``c = (0, 1)``: the hierarchical prior's move, ``z_w`` fixed and the bias scaled along;
    ``c = -1/2``: the ``(log s + t, e^(-a t) z)`` family): each moment within 4.5 standard
    errors of quadrature. Without the Jacobian ``e^(t sum c)`` the same test fails."""
    truth = skewed_moments()
    generator = torch.Generator().manual_seed(5)
    hyper, z = skewed_exact_draws(2000, generator)
    torch.manual_seed(6)
    direction, c = torch.ones(1), torch.tensor(exponents)
    for _ in range(2):
        start = hyper.clone()

        def density(chain, h, zz, start=start):
            missing = 0.0 if jacobian else float(c.sum()) * float(h[0] - start[chain, 0])
            return skewed_log_density(h, zz) - missing

        hyper, z, *_ = orbit_update(density, hyper, z, direction, c, width=2.0)
    draws = {"u": hyper[:, 0], "u^2": hyper[:, 0] ** 2, "z2^2": z[:, 1] ** 2}
    errors = {k: abs(float(v.mean()) - truth[k]) / (float(v.std()) / math.sqrt(len(v)))
              for k, v in draws.items()}  # fmt: skip
    if jacobian:
        assert max(errors.values()) < 4.5, errors
    else:
        assert max(errors.values()) > 4.5, errors


def test_orbit_exponents_scale_the_logits_of_a_global_scale_only():
    """``c = 1 - slopes``: the hierarchical ``s`` (its columns grow at rate 1, the bias's at
    0) gets ``(0, ..., 0, 1)``; a scale of every column has no move (it is ``H | z``); a
    local scale of one column in five is not global."""
    torch.testing.assert_close(orbit_exponents(torch.tensor([1.0, 1.0, 0.0])),
                               torch.tensor([0.0, 0.0, 1.0]))  # fmt: skip
    assert orbit_exponents(torch.ones(4)) is None
    assert orbit_exponents(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])) is None


def test_joint_hyper_updates_keep_exact_draws_exact():
    """:class:`HyperSampler` on three correlated log-gamma coordinates (no warm-up: a fixed
    step and unit mass): two no-U-turn slice updates of all three together from 500 exact
    draws leave them exact, means and second moments within 4.5 standard errors."""
    shape = torch.tensor([0.5, 2.0, 5.0])
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.8]])
    inverse = torch.linalg.inv(mix)

    def density(chain, x):
        y = inverse @ x
        return (shape * y - torch.exp(y)).sum()

    torch.manual_seed(7)
    x = torch.distributions.Gamma(shape, 1.0).sample((500,)).log() @ mix.T
    sampler = HyperSampler(3, warmup=0, init_step=0.4)
    for _ in range(2):
        x, _ = sampler.sweep(density, x)
    mean = mix @ torch.special.digamma(shape)
    covariance = mix @ torch.diag(torch.special.polygamma(1, shape)) @ mix.T
    second = covariance.diagonal() + mean**2
    for k in range(3):
        for draws, truth in ((x[:, k], mean[k]), (x[:, k] ** 2, second[k])):
            error = abs(float(draws.mean() - truth)) / (float(draws.std()) / math.sqrt(len(draws)))
            assert error < 4.5, (k, float(draws.mean()), float(truth))
    assert sampler.info()["leapfrogs_per_update"] > 1
