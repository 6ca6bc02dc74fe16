"""``Slice``: a Pyro :class:`~pyro.infer.mcmc.MCMCKernel` for slice sampling along Hamiltonian
trajectories (the default), along warm-up covariance eigenvectors (factor slice sampling) or
along coordinates::

    mcmc = MCMC(Slice(model), num_samples=1000, warmup_steps=200, num_chains=4)
    mcmc.run(data)
    mcmc.get_samples(group_by_chain=True)
    arviz.from_pyro(mcmc)

A thin shell, in the shape of Pyro's ``RandomWalkKernel``, over pure steps
(:mod:`~bayes_spheres.kernels.chains`): ``setup`` reads the model as ``HMC`` does, the first
``sample`` probes the paths (:mod:`~bayes_spheres.kernels.paths`: fast, conditional or
generic; ``diagnostics()["path"]`` and ``["path_reason"]`` say which and why), and each
``sample`` is one update. Settings are one :class:`~bayes_spheres.kernels.settings.SliceSettings`
(``Slice(model, settings)``, or its fields as keywords: ``Slice(model, trajectory=3.0)``).

**Chains.** Each ``setup`` starts one chain, as Pyro's contract wants: in worker processes
(``num_chains <= cpu_count - 1``) or one after another, a chain's draws depend only on the
random stream after its own ``setup``. To advance all of a run's chains together in one
process (one batched update for all of them, which costs about one chain's on the fast
path), run the kernel with :class:`~bayes_spheres.kernels.vectorized.VectorizedMCMC` instead
of ``MCMC`` (docs/mcmc.md weighs the two).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from pyro.infer.autoguide.initialization import init_to_uniform
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from torch import Tensor

from bayes_spheres.kernels import chains
from bayes_spheres.kernels.chains import ChainState
from bayes_spheres.kernels.paths import Path, Problem
from bayes_spheres.kernels.settings import SliceSettings

# what the progress bar shows of the sampler's info(), by the names it shows
LOGGED = {"step_size": "step", "accept_mean": "accept", "width_median": "width",
          "evaluations_per_update": "evals/update"}  # fmt: skip


class Slice(MCMCKernel):
    """Slice sampling for any Pyro model with continuous latent sites (module docstring).

    :param model: a Pyro model; or give ``potential_fn`` (over a dict of unconstrained site
        values), with ``transforms`` and, before ``run``, ``initial_params``.
    :param settings: the kernel's settings (:class:`SliceSettings`, its defaults if None);
        ``**overrides`` replace some of its fields.
    :param init_strategy: Pyro's initialisation strategy for a chain's starting point.
    """

    def __init__(
        self,
        model: Callable | None = None,
        settings: SliceSettings | None = None,
        *,
        potential_fn: Callable[[dict[str, Tensor]], Tensor] | None = None,
        transforms: dict | None = None,
        init_strategy: Callable = init_to_uniform,
        **overrides: object,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model and potential_fn")
        self.settings = replace(settings or SliceSettings(), **overrides)
        self.model, self.potential_fn, self.transforms = model, potential_fn, transforms
        self.init_strategy = init_strategy
        self._initial_params: dict[str, Tensor] | None = None
        self.problem: Problem | None = None
        self.path: Path | None = None
        super().__init__()

    def chains(
        self, num_chains: int, *args: object, initial_params: dict | None = None, **kwargs: object
    ) -> tuple[Problem, Tensor]:
        """The model read as :mod:`~bayes_spheres.kernels.chains` needs it, and the starting
        points [C, P] of ``num_chains`` chains (``initial_params``: each site [C, ...])."""
        problem, initial = chains.start(
            self.model, self.potential_fn, self.transforms, args, kwargs, num_chains,
            initial_params, self.init_strategy,
        )  # fmt: skip
        self.potential_fn, self.transforms = problem.potential_fn, problem.transforms
        return problem, initial

    # -- Pyro's MCMCKernel interface -------------------------------------------------------

    def setup(self, warmup_steps: int, *args: object, **kwargs: object) -> None:
        given = self._initial_params
        given = None if given is None else {k: v[None] for k, v in given.items()}
        self.problem, initial = self.chains(1, *args, initial_params=given, **kwargs)
        self._warmup_steps, self._initial = warmup_steps, initial
        self._initial_params = chains.site_values(self.problem, initial[0])
        self.path, self._state = None, None
        self._diverging: list[bool] = []
        self._log_density: list[float] = []

    def sample(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._initial.shape[1] == 0:  # no latent sites
            return params
        if self.path is None:  # the first update probes the paths
            self.path, self._state = chains.init(
                self.problem, self.settings, self._initial, self._warmup_steps
            )
        self._state: ChainState = chains.step(self.path, self._state)
        self._diverging.append(bool(self._state.diverging[0]))
        self._log_density.append(float(chains.log_density(self.path, self._state)[0]))
        return chains.site_values(self.problem, self._state.theta[0])

    def cleanup(self) -> None:
        self._initial_params = None  # the next chain draws its own starting point

    @property
    def initial_params(self) -> dict[str, Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, Tensor]) -> None:
        self._initial_params = params

    def logging(self) -> OrderedDict:
        info = self.path.sampler.info() if self.path is not None else {}
        shown = [(k, name) for k, name in LOGGED.items() if isinstance(info.get(k), int | float)]
        return OrderedDict((name, f"{info[k]:.3g}") for k, name in shown)

    def diagnostics(self) -> dict:
        """This chain's divergent updates after warm-up (an energy rise above
        ``max_energy``, as Pyro's HMC counts them), the path taken and why, the sampler's
        adapted settings, and the log density (``-potential``, Pyro's) at each draw."""
        if self.path is None:
            return {"divergences": []}
        kept = range(self._warmup_steps, len(self._diverging))
        return {
            "divergences": [t - self._warmup_steps for t in kept if self._diverging[t]],
            **chains.info(self.path),
            "log_density": [self._log_density[t] for t in kept],
        }
