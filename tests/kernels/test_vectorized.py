"""``VectorizedMCMC``: all chains of a ``Slice`` kernel as one batch, read as ``MCMC`` is read
(samples, diagnostics, summary, ``arviz.from_pyro``)."""

from __future__ import annotations

import math

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from bayes_spheres.kernels import Slice, VectorizedMCMC


def gamma_normal():
    pyro.sample("s", dist.Gamma(3.0, 1.0))
    pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))


@pytest.mark.parametrize("directions", ["hamiltonian", "factor"])
def test_known_moments_and_what_arviz_reads(directions):
    """Gamma(3, 1) (a skewed site, through Pyro's exp transform) and N(0, I): means within
    4 MCSE, every draw of ``s`` positive, ArviZ's posterior and sample stats per chain."""
    pyro.set_rng_seed(0)
    mcmc = VectorizedMCMC(Slice(gamma_normal, directions=directions), num_samples=400,
                          warmup_steps=150, num_chains=4, disable_progbar=True)  # fmt: skip
    mcmc.run()
    idata = az.from_pyro(mcmc, log_likelihood=False)
    s, x = idata.posterior["s"].values, idata.posterior["x"].values
    assert s.shape == (4, 400) and x.shape == (4, 400, 2) and (s > 0).all()
    assert idata.sample_stats["diverging"].shape == (4, 400)
    for draws, truth in ((s, 3.0), (x[..., 0], 0.0), (x[..., 1], 0.0)):
        mcse = draws.std() / math.sqrt(float(az.ess(draws)))
        assert abs(draws.mean() - truth) < 4 * mcse
    assert float(az.rhat(idata)["s"]) < 1.02
    diagnostics = mcmc.diagnostics()
    assert diagnostics["path"] == {f"chain {c}": "generic" for c in range(4)}
    assert all(len(v) == 400 for v in diagnostics["log_density"].values())


def test_one_chain_is_the_chain_mcmc_gives():
    """One chain: the same draws as Pyro's ``MCMC`` over the same kernel and seed (the batch
    of one is the kernel's own chain)."""
    runs = []
    for runner in (MCMC, VectorizedMCMC):
        pyro.set_rng_seed(5)
        mcmc = runner(Slice(gamma_normal), num_samples=30, warmup_steps=20, num_chains=1,
                      disable_progbar=True)  # fmt: skip
        mcmc.run()
        runs.append(mcmc.get_samples(group_by_chain=True))
    for site in ("s", "x"):
        torch.testing.assert_close(runs[0][site], runs[1][site], rtol=0, atol=0)


def test_initial_params_and_seed():
    """Given starting points start the chains; the same seed gives the same draws."""
    init = {"s": torch.log(torch.tensor([1.0, 5.0])), "x": torch.tensor([[3.0, 3.0], [-3.0, 0.0]])}
    runs = []
    for _ in range(2):
        pyro.set_rng_seed(0)
        mcmc = VectorizedMCMC(Slice(gamma_normal, directions="coordinate"), num_samples=5,
                              warmup_steps=0, num_chains=2, initial_params=init,
                              disable_progbar=True)  # fmt: skip
        mcmc.run()
        runs.append(mcmc.get_samples(group_by_chain=True))
    torch.testing.assert_close(runs[0]["x"], runs[1]["x"], rtol=0, atol=0)
    # a coordinate sweep moves each coordinate by a slice step from its start: near it
    assert bool(((runs[0]["x"][:, 0] - init["x"]).abs() < 6.0).all())
    assert not torch.equal(runs[0]["x"][0], runs[0]["x"][1])


def test_no_latent_sites_and_bad_arguments(capsys):
    def model():
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))

    mcmc = VectorizedMCMC(Slice(model), num_samples=3, num_chains=2, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples() == {}
    mcmc.summary()
    assert "divergences: 0" in capsys.readouterr().out
    with pytest.raises(ValueError, match="num_chains=0: must be an integer >= 1"):
        VectorizedMCMC(Slice(model), num_samples=3, num_chains=0)
    with pytest.raises(TypeError, match="Slice kernel"):
        VectorizedMCMC(object(), num_samples=3)
