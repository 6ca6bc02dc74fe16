"""``Slice`` under Pyro's ``MCMC`` and ``StreamingMCMC``: the cases of Pyro's own
``tests/infer/mcmc/test_mcmc_api.py`` that apply to a kernel, with ``Slice`` in the place of
Pyro's kernels. Pyro runs chains in worker processes when ``num_chains <= cpu_count - 1``,
else one after another: the tests patch ``torch.multiprocessing.cpu_count`` to get each."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.mcmc import MCMC
from pyro.infer.mcmc.api import StreamingMCMC
from pyro.infer.mcmc.util import initialize_model
from pyro.ops.streaming import StackStats, StatsOfDict

from bayes_spheres.kernels import Slice

SEQUENTIAL, PARALLEL = 1, 16  # patched cpu counts


def normal_normal(data):
    """y ~ N(0, 1), data_i ~ N(y, 1): the posterior of y is N(sum / (n + 1), 1 / (n + 1))."""
    y = pyro.sample("y", dist.Normal(torch.zeros(1), torch.ones(1)))
    pyro.sample("obs", dist.Normal(y, 1.0), obs=data)


def run(runner, kernel, data=None, group_by_chain=True, **kw):
    """Samples [chain, draw, ...] from ``MCMC`` or ``StreamingMCMC`` (its stacked draws)."""
    if runner == "streaming":
        mcmc = StreamingMCMC(kernel, statistics=StatsOfDict(default=StackStats), **kw)
        mcmc.run(data)
        stats = mcmc.get_statistics(group_by_chain=True)
        chains = sorted({chain for chain, _ in stats})
        names = sorted({name for _, name in stats})
        return {n: torch.stack([stats[c, n]["samples"] for c in chains]) for n in names}
    mcmc = MCMC(kernel, disable_progbar=True, **kw)
    mcmc.run(data)
    return mcmc.get_samples(group_by_chain=group_by_chain)


@pytest.mark.parametrize("runner", ["default", "streaming"])
@pytest.mark.parametrize("directions", ["hamiltonian", "coordinate"])
@pytest.mark.filterwarnings("ignore:num_chains")
def test_posterior_of_the_normal_normal_model(runner, directions, monkeypatch):
    """Posterior N(0.5, 0.5) for one observation 1.0: mean and variance within 4 MCSE."""
    import arviz as az

    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    pyro.set_rng_seed(0)
    y = run(runner, Slice(normal_normal, directions=directions), torch.tensor([1.0]),
            num_samples=600, warmup_steps=100, num_chains=2)["y"]  # fmt: skip
    y = y.reshape(2, -1).numpy()
    ess = float(az.ess(y))
    assert abs(y.mean() - 0.5) < 4 * math.sqrt(0.5 / ess)
    assert abs(y.var() - 0.5) < 4 * 0.5 * math.sqrt(2.0 / ess)


@pytest.mark.parametrize(
    ("num_chains", "cpus"), [(1, 2), (2, 1), (2, 3)], ids=["one", "sequential", "parallel"]
)
@pytest.mark.parametrize("given", [True, False], ids=["initial_params", "drawn"])
@pytest.mark.filterwarnings("ignore:num_chains")
def test_num_chains_in_either_regime(num_chains, cpus, given, monkeypatch):
    """Every chain's draws come back, with initial points given to ``MCMC`` or drawn."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: cpus)
    data = torch.tensor([1.0])
    initial, _, transforms, _ = initialize_model(
        normal_normal, model_args=(data,), num_chains=num_chains
    )
    pyro.set_rng_seed(0)
    mcmc = MCMC(Slice(normal_normal), num_samples=10, warmup_steps=10, num_chains=num_chains,
                initial_params=initial if given else None, transforms=transforms,
                disable_progbar=True)  # fmt: skip
    mcmc.run(data)
    assert mcmc.get_samples(group_by_chain=True)["y"].shape == (num_chains, 10, 1)
    assert mcmc.diagnostics()["path"] == {f"chain {c}": "generic" for c in range(num_chains)}


@pytest.mark.parametrize("runner", ["default", "streaming"])
@pytest.mark.parametrize("num_chains", [1, 2])
@pytest.mark.filterwarnings("ignore:num_chains")
def test_a_potential_without_latent_sites_with_a_hook(runner, num_chains, monkeypatch):
    """Pyro's null model: no latent sites, a hook called at every iteration, in order."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    initial, potential_fn, transforms, _ = initialize_model(
        lambda: torch.tensor(1), num_chains=num_chains
    )
    calls = []

    def hook(kernel, params, stage, i):
        assert params == {}
        calls.append((stage.split(" ")[0], i))

    kernel = Slice(potential_fn=potential_fn, transforms=transforms)
    samples = run(runner, kernel, num_samples=10, warmup_steps=10, num_chains=num_chains,
                  initial_params=initial, hook_fn=hook)  # fmt: skip
    assert samples == {}
    if num_chains == 1:
        expected = [("Warmup", i) for i in range(10)] + [("Sample", i) for i in range(10)]
        assert calls == expected


@pytest.mark.parametrize("num_chains", [1, 2])
@pytest.mark.filterwarnings("ignore:num_chains")
def test_diagnostics_per_site_and_per_chain(num_chains, monkeypatch):
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)
    data = torch.tensor([2.0]).repeat(3)

    def model(data):
        y = pyro.sample("y", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(y, 1.0).to_event(1), obs=data)

    pyro.set_rng_seed(0)
    mcmc = MCMC(Slice(model), num_samples=10, warmup_steps=10, num_chains=num_chains,
                disable_progbar=True)  # fmt: skip
    mcmc.run(data)
    diagnostics = mcmc.diagnostics()
    assert diagnostics["y"]["n_eff"].shape == data.shape
    assert diagnostics["y"]["r_hat"].shape == data.shape
    chains = {f"chain {c}" for c in range(num_chains)}
    for key in ("divergences", "path", "path_reason", "log_density"):
        assert set(diagnostics[key]) == chains
    assert all(len(v) == 10 for v in diagnostics["log_density"].values())


@pytest.mark.parametrize("runner", ["default", "streaming"])
@pytest.mark.parametrize("directions", ["hamiltonian", "factor"])
@pytest.mark.filterwarnings("ignore:num_chains")
def test_sequential_consistent(runner, directions, monkeypatch):
    """Chains one after another, each seeded at its own ``setup``: a chain's draws depend on
    its seed only, not on the chain run before it (nothing is carried over)."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: SEQUENTIAL)

    def draws(seeds):
        class Seeded(Slice):
            def setup(self, warmup_steps, *args, **kwargs):
                self.chain = 0 if "chain" not in self.__dict__ else 1
                pyro.set_rng_seed(seeds[self.chain])
                super().setup(warmup_steps, *args, **kwargs)

        kernel = Seeded(normal_normal, directions=directions)
        return run(runner, kernel, torch.tensor([1.0]), num_samples=50, warmup_steps=50,
                   num_chains=2)["y"]  # fmt: skip

    first, second = draws((0, 1)), draws((1, 0))
    torch.testing.assert_close(first[0], second[1])
    torch.testing.assert_close(first[1], second[0])


@pytest.mark.parametrize("runner", ["default", "streaming"])
def test_potential_fn_with_initial_params(runner):
    """A potential with no model, and the initial point it needs: a standard normal."""

    def potential_fn(params):
        return 0.5 * (params["z"] ** 2).sum()

    pyro.set_rng_seed(0)
    kernel = Slice(potential_fn=potential_fn, directions="coordinate")
    samples = run(runner, kernel, num_samples=20, warmup_steps=10,
                  initial_params={"z": torch.tensor(0.0)})  # fmt: skip
    assert samples["z"].numel() == 20 and bool(samples["z"].std() > 0)


@pytest.mark.parametrize("save_params", ["xy", "x", "y"])
def test_save_params(save_params, capsys):
    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        with pyro.plate("plate", 2):
            y = pyro.sample("y", dist.Normal(x, 1.0))
            pyro.sample("obs", dist.Normal(y, 1.0), obs=torch.zeros(2))

    mcmc = MCMC(Slice(model), warmup_steps=2, num_samples=4, save_params=list(save_params),
                disable_progbar=True)  # fmt: skip
    mcmc.run()
    assert set(mcmc.get_samples()) == set(save_params)
    assert {k for k in mcmc.diagnostics() if k in "xy"} == set(save_params)
    mcmc.summary()
    assert "mean" in capsys.readouterr().out


def test_worker_processes_adapt_each_chain_alone(monkeypatch):
    """In worker processes each chain is its own kernel: both come back, constrained."""
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: PARALLEL)

    def model():
        pyro.sample("s", dist.Gamma(3.0, 1.0))

    pyro.set_rng_seed(0)
    mcmc = MCMC(Slice(model), num_samples=50, warmup_steps=20, num_chains=2,
                disable_progbar=True)  # fmt: skip
    mcmc.run()
    s = mcmc.get_samples(group_by_chain=True)["s"]
    assert s.shape == (2, 50) and bool((s > 0).all())
    assert not torch.equal(s[0], s[1])
