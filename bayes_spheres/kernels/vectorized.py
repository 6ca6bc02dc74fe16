"""``VectorizedMCMC``: all chains of a :class:`~bayes_spheres.kernels.Slice` kernel advanced
together in this process, one batched update for all of them per iteration.

A subclass of Pyro's :class:`~pyro.infer.mcmc.api.AbstractMCMC` (as Pyro's own
``StreamingMCMC`` is), with ``MCMC``'s reading side: ``get_samples``, ``diagnostics``,
``summary``, and what ``arviz.from_pyro`` reads::

    mcmc = VectorizedMCMC(Slice(model), num_samples=1000, warmup_steps=200, num_chains=8)
    mcmc.run(data)

The trade-off against ``MCMC`` (docs/mcmc.md): on the fast path an update's cost hardly grows
with the number of chains (its steps are small tensor operations), so C chains cost about
one; but the chains share one step size, adapted in warm-up on their mean acceptance
statistic, and one random offset per trajectory, so they are not independent of each other
during warm-up. After warm-up each is a Markov chain of its own. ``MCMC`` gives independent
chains, in worker processes or one after another.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.api import AbstractMCMC
from pyro.infer.mcmc.util import diagnostics, print_summary, select_samples
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres.kernels import chains
from bayes_spheres.kernels.slice import Slice


class VectorizedMCMC(AbstractMCMC):
    """``num_chains`` chains of ``kernel`` run as one batch (module docstring); the arguments
    are ``MCMC``'s. ``initial_params``: each site [num_chains, ...], unconstrained."""

    def __init__(
        self,
        kernel: Slice,
        num_samples: int,
        warmup_steps: int | None = None,
        num_chains: int = 1,
        initial_params: dict[str, Tensor] | None = None,
        disable_progbar: bool = False,
        disable_validation: bool = True,
    ) -> None:
        if not isinstance(kernel, Slice):
            raise TypeError(f"VectorizedMCMC runs a Slice kernel, not {type(kernel).__name__}")
        for name, value, least in (("num_samples", num_samples, 1), ("num_chains", num_chains, 1),
                                   ("warmup_steps", warmup_steps, 0)):  # fmt: skip
            if value is not None and not (isinstance(value, int) and value >= least):
                raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
        super().__init__(kernel, num_chains, None)
        self.num_samples = num_samples
        self.warmup_steps = num_samples if warmup_steps is None else warmup_steps
        self.initial_params, self.disable_progbar = initial_params, disable_progbar
        self.disable_validation = disable_validation
        self._args: tuple = ()
        self._kwargs: dict = {}
        self._samples: dict[str, Tensor] = {}
        self._chain_diagnostics: dict = {}

    @poutine.block
    def run(self, *args: object, **kwargs: object) -> None:
        """As ``MCMC.run``: outside any enclosing handler, and without Pyro's validation of
        distribution arguments by default (a trajectory may pass through states where they
        are not finite; those end its direction, as in Pyro's HMC)."""
        self._args, self._kwargs = args, kwargs
        with pyro.validation_enabled(not self.disable_validation):
            self._run(args, kwargs)

    def _run(self, args: tuple, kwargs: dict) -> None:
        kernel = self.kernel
        problem, initial = kernel.chains(
            self.num_chains, *args, initial_params=self.initial_params, **kwargs
        )
        self.transforms = problem.transforms
        total = self.warmup_steps + self.num_samples
        kept, diverging, log_density = [], [], []
        path = None
        if initial.shape[1] > 0:
            path, state = chains.init(problem, kernel.settings, initial, self.warmup_steps)
            kernel.path = path
            bar = tqdm(range(total), disable=self.disable_progbar, desc="Warmup")
            for i in bar:
                state = chains.step(path, state)
                if i >= self.warmup_steps:
                    bar.set_description("Sample", refresh=False)
                    kept.append(state.theta.clone())
                    diverging.append(state.diverging)
                    log_density.append(chains.log_density(path, state))
        theta = torch.stack(kept, 1) if kept else initial[:, None].expand(-1, self.num_samples, -1)
        self._samples = {
            name: (self.transforms[name].inv(value) if name in self.transforms else value)
            for name, value in chains.site_values(problem, theta).items()
        }
        self._record(path, diverging, log_density)

    def _record(self, path: object, diverging: list[Tensor], log_density: list[Tensor]) -> None:
        names = [f"chain {c}" for c in range(self.num_chains)]
        if path is None:
            self._chain_diagnostics = {"divergences": {name: [] for name in names}}
            return
        steps = torch.stack(diverging, 1)  # [C, S]
        lp = torch.stack(log_density, 1)
        shared = chains.info(path)
        self._chain_diagnostics = {
            "divergences": {n: steps[c].nonzero()[:, 0].tolist() for c, n in enumerate(names)},
            **{key: {n: value for n in names} for key, value in shared.items()},
            "log_density": {n: lp[c].tolist() for c, n in enumerate(names)},
        }

    def get_samples(
        self, num_samples: int | None = None, group_by_chain: bool = False
    ) -> dict[str, Tensor]:
        return select_samples(self._samples, num_samples, group_by_chain)

    def diagnostics(self) -> dict:
        """Pyro's ``n_eff`` and ``r_hat`` per site, then per chain what ``Slice`` reports."""
        return {**diagnostics(self._samples), **self._chain_diagnostics}

    def summary(self, prob: float = 0.9) -> None:
        print_summary(self._samples, prob=prob)
        count = sum(len(v) for v in self._chain_diagnostics["divergences"].values())
        print(f"Number of divergences: {count}")
