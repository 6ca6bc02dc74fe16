"""``Slice``: a Pyro :class:`~pyro.infer.mcmc.MCMCKernel` for slice sampling along Hamiltonian
trajectories (the default), along warm-up covariance eigenvectors (factor slice sampling) or
along coordinates::

    mcmc = MCMC(Slice(model), num_samples=1000, warmup_steps=200, num_chains=4)
    mcmc.run(data)
    mcmc.get_samples(group_by_chain=True)
    arviz.from_pyro(mcmc)

A thin shell over the pure algorithms (:mod:`~bayes_spheres.kernels.hamiltonian`,
:mod:`~bayes_spheres.kernels.sampler`), in the shape of Pyro's ``RandomWalkKernel``: ``setup``
builds the potential with :func:`pyro.infer.mcmc.util.initialize_model` as ``HMC`` does
(constrained sites move in unconstrained space through Pyro's transforms).

**The fast path is found, not chosen.** At the first update the kernel probes the model
(:func:`~bayes_spheres.kernels.logistic.linear_logistic_target`): a Bernoulli likelihood whose
logits are linear in the latents under a Gaussian prior (the study's flat and shared-mean
models, or a user's own such model) is sampled in O(N + P) per step and chain, any other model
through Pyro's potential. ``diagnostics()`` says which path ran; ``fast=False`` forces the
generic one.

**The conditional path** (:mod:`~bayes_spheres.kernels.conditional`), along Hamiltonian
trajectories only: where the model is of that kind once a few non-Gaussian sites are given
(a hierarchical prior ``s ~ p(s)``, ``w | s ~ N(loc(s), scale(s)^2)``, logits linear in
``w``), each update is a Gibbs sweep: the Gaussian sites given the rest on the fast path, in
their whitened coordinates ``z = (w - loc) / scale``, then the given sites by coordinate
slice updates twice, given ``z`` and given ``w`` (interweaving, Yu & Meng 2011). It is taken
only after the kernel checks, at the initial point, that the logits are linear in ``z``, that
the conditional's log density moves as Pyro's potential of the model does, and that the
change of coordinates round-trips.

**Chains.** Pyro runs chains in worker processes when ``num_chains <= cpu_count - 1``, else
one after another in this process. In the second regime (``vectorize_chains=True``) the kernel
advances all of the run's chains together while Pyro draws the first one, one batched update
for all of them, and hands Pyro each later chain's recorded draws when Pyro asks for that
chain: the same ``[chain, draw]`` samples, diagnostics and hooks, at the cost of one chain on
the fast path (its steps are small tensor operations, whose cost hardly grows with the number
of chains). The chains share the step size adapted in warm-up (on their mean acceptance
statistic); after warm-up each is a Markov chain of its own. In worker processes each chain
runs alone and adapts its own.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import torch
from pyro.infer.autoguide.initialization import init_to_uniform
from pyro.infer.mcmc.api import _UnarySampler
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.conditional import (
    ConditionalSampler,
    ConditionalTarget,
    conditional_target,
)
from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, HamiltonianSliceSampler, Mass
from bayes_spheres.kernels.logistic import NotLinearLogistic, linear_logistic_target
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    unravel,
)
from bayes_spheres.kernels.protocols import Target
from bayes_spheres.kernels.sampler import Directions, SliceSampler

FAST_PATH_SCALE_MOVES = 3  # docs/mcmc.md: what they buy on the flat model at the paper's scale
FAST_PATH_WARMUP_TRAJECTORY = 1.5  # docs/mcmc.md: warm-up trajectories on the flat model


@dataclass
class _ChainBatch:
    """Chains advanced together for one run of Pyro's sequential sampler ``runner``."""

    runner: object | None
    initial: Tensor  # [C, P]
    states: list[Tensor] = field(default_factory=list)  # per update, [C, P]
    diverging: list[Tensor] = field(default_factory=list)  # per update, [C]
    log_density: list[Tensor] = field(default_factory=list)  # per update, [C]
    info: dict = field(default_factory=dict)
    served: int = 0  # chains handed to Pyro so far

    @property
    def size(self) -> int:
        return len(self.initial)


def _sequential_runner() -> _UnarySampler | None:
    """Pyro's sampler that runs chains one after another, if it is the one calling ``setup``.

    ``MCMC`` does not tell a kernel how many chains it will ask for; the sequential sampler
    knows (``num_chains``, and ``initial_params`` for all of them)."""
    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, _UnarySampler):
            return candidate
        frame = frame.f_back
    return None


def _positive(name: str, value: object, integer: bool = False, zero: bool = False) -> None:
    kinds = int if integer else int | float
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value >= 0 if zero else value > 0)):
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name}={value!r}: must be {what} {'>= 0' if zero else '> 0'}")


def _choice(name: str, value: object, kind: type[StrEnum]) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"{name}={value!r}: must be one of {allowed}") from None


class Slice(MCMCKernel):
    """Slice sampling for any Pyro model with continuous latent sites (module docstring).

    :param model: a Pyro model; or give ``potential_fn`` (over a dict of unconstrained site
        values), with ``transforms`` and, before ``run``, ``initial_params``.
    :param directions: ``"hamiltonian"`` (slices along Hamiltonian trajectories),
        ``"factor"`` (eigenvectors of the warm-up covariance, Tibbits et al. 2014) or
        ``"coordinate"``.
    :param trajectory: hamiltonian: the length in time of a trajectory (on the fast path in
        prior-whitened units, ``pi / 2`` a quarter period of the prior).
    :param warmup_trajectory: hamiltonian: the length while adapting; None: 1.5 on the fast
        path (more, cheaper updates adapt the step better; the prior whitens it, so there is
        no mass matrix to learn), ``trajectory`` on the generic path (the mass matrix is
        learnt from the warm-up draws, and short trajectories leave its long directions
        unexplored: on a 100-D Gaussian with correlation 0.9, 1.5 left R-hat at 1.28 where
        ``trajectory`` gave 1.007, docs/mcmc.md).
    :param target_accept: hamiltonian: the mean ``min(1, e^-dH)`` the step size is adapted to.
    :param mass: hamiltonian, generic path: the mass matrix adapted in warm-up, ``"diagonal"``,
        ``"dense"`` or ``"unit"``. The fast path is whitened by the prior instead.
    :param scale_moves: scale moves ``theta <- g theta`` after each update (Liu & Sabatti
        2000), 0 for none; None: 3 on the fast path (a Gaussian prior cut by constraints,
        whose radius univariate and short Hamiltonian moves change slowly), 0 on the generic
        path (where the origin of the unconstrained space means nothing in particular, and a
        flat direction, e.g. the observed half of an ``obs_mask`` site, drifts without end).
    :param init_width: the initial width of univariate slices (and of the scale moves).
    :param max_steps: Neal's ``m``: the most widths stepping-out may span.
    :param max_energy: hamiltonian: an energy rise above this marks a divergent update.
    :param fast: take the fast path where the model allows it.
    :param batch_potential: on the generic path, evaluate Pyro's potential for all chains in
        one run of the model where the first update's check finds it equal to Pyro's per
        point (``kernels/potential.py``); False: always per point (a model whose code
        branches on values across its batch, e.g. ``if (x > 4).any():``, can pass the check
        and still differ later).
    :param vectorize_chains: advance sequential chains together (module docstring).
    :param init_strategy: Pyro's initialisation strategy for the chains' starting points.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable[[dict[str, Tensor]], Tensor] | None = None,
        transforms: dict | None = None,
        directions: Directions | str = Directions.HAMILTONIAN,
        trajectory: float = 6.0,
        warmup_trajectory: float | None = None,
        target_accept: float = 0.8,
        mass: Mass | str = Mass.DIAGONAL,
        scale_moves: int | None = None,
        init_width: float = 1.0,
        max_steps: int = 20,
        max_energy: float = MAX_ENERGY,
        fast: bool = True,
        batch_potential: bool = True,
        vectorize_chains: bool = True,
        init_strategy: Callable = init_to_uniform,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model and potential_fn")
        _positive("trajectory", trajectory)
        if warmup_trajectory is not None:
            _positive("warmup_trajectory", warmup_trajectory)
        if not (isinstance(target_accept, int | float) and 0 < target_accept < 1):
            raise ValueError(f"target_accept={target_accept!r}: must be in (0, 1)")
        if scale_moves is not None:
            _positive("scale_moves", scale_moves, integer=True, zero=True)
        _positive("init_width", init_width)
        _positive("max_steps", max_steps, integer=True)
        _positive("max_energy", max_energy)
        self.model, self.potential_fn, self.transforms = model, potential_fn, transforms
        self.directions = _choice("directions", directions, Directions)
        self.mass = _choice("mass", mass, Mass)
        self.trajectory, self.warmup_trajectory = float(trajectory), warmup_trajectory
        self.target_accept, self.scale_moves = float(target_accept), scale_moves
        self.init_width, self.max_steps, self.max_energy = float(init_width), max_steps, max_energy
        self.fast, self.vectorize_chains, self.init_strategy = fast, vectorize_chains, init_strategy
        self.batch_potential = batch_potential
        self._initial_params: dict[str, Tensor] | None = None
        self._batch: _ChainBatch | None = None
        self._chain = 0  # this chain's index in the batch
        self._t = 0  # updates so far in this chain
        self.path: str | None = None  # "fast" or "generic" once a chain has run
        self.path_reason = ""
        self.potential: str | None = None  # the generic path's: "batched" or "per point"
        self.potential_reason = ""
        self._sampler: SliceSampler | HamiltonianSliceSampler | None = None
        self._prototype = None
        super().__init__()

    # -- Pyro's MCMCKernel interface -------------------------------------------------------

    def setup(self, warmup_steps: int, *args: object, **kwargs: object) -> None:
        self._warmup_steps, self._args, self._kwargs = warmup_steps, args, kwargs
        self._t = 0
        runner = _sequential_runner() if self.vectorize_chains else None
        batch = self._batch
        if batch is not None and runner is not None and batch.runner is runner:
            if batch.served < batch.size:  # a later chain of the batch: hand over its draws
                self._chain, batch.served = batch.served, batch.served + 1
                self._initial_params = self._unravel(batch.initial[self._chain])
                return
        self._batch, self._chain = None, 0
        chains = runner.num_chains if runner is not None else 1
        given = runner.initial_params if runner is not None else None
        if self.model is not None:
            init, self.potential_fn, self.transforms, self._prototype = initialize_model(
                self.model, model_args=args, model_kwargs=kwargs,
                init_strategy=self.init_strategy, num_chains=chains,
            )  # fmt: skip
            if chains == 1:
                init = {k: v[None] for k, v in init.items()}
        elif self._initial_params is not None:
            init = {k: v[None] for k, v in self._initial_params.items()}
            chains = 1
        else:
            raise ValueError("Slice(potential_fn=...) needs initial_params")
        if given is not None:
            init = {k: torch.as_tensor(v) for k, v in given.items()}
        elif self._initial_params is not None:  # set on the kernel for its (first) chain
            init = {k: torch.cat([v[None], init[k][1:]]) for k, v in self._initial_params.items()}
        self._shapes = {k: v.shape[1:] for k, v in init.items()}
        flat = [v.reshape(len(v), -1) for v in init.values()]
        # on the CPU: a model with no latent sites
        initial = torch.cat(flat, 1) if flat else torch.zeros(chains, 0)
        self._batch = _ChainBatch(runner, initial.detach(), served=1)
        self._initial_params = self._unravel(initial[0])
        self._sampler = None

    def sample(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = self._batch
        if batch.initial.shape[1] == 0:  # no latent sites
            return params
        if self._chain > 0:
            theta = batch.states[self._t][self._chain]
        else:
            theta = self._advance()
        self._t += 1
        return self._unravel(theta)

    def cleanup(self) -> None:
        # Pyro calls this at the end of each chain (the sequential sampler twice); the next
        # chain draws its own starting point unless Pyro hands it one.
        self._initial_params = None
        if self._batch is not None and self._batch.served >= self._batch.size:
            self._batch.states, self._batch.diverging, self._batch.log_density = [], [], []
            if self._batch.runner is None:
                self._batch = None

    @property
    def initial_params(self) -> dict[str, Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, Tensor]) -> None:
        self._initial_params = params

    def logging(self) -> OrderedDict:
        s = self._sampler
        if isinstance(s, ConditionalSampler):
            s = s.samplers[0]
        if isinstance(s, HamiltonianSliceSampler):
            accept = s.accept_sum / max(s.iteration, 1)
            return OrderedDict([("step", f"{s.step_size:.2e}"), ("accept", f"{accept:.2f}")])
        if isinstance(s, SliceSampler):
            width = float(s.widths.mean())
            return OrderedDict(
                [("width", f"{width:.2e}"), ("evals/update", f"{s.calls_per_update:.1f}")]
            )
        return OrderedDict()

    def diagnostics(self) -> dict:
        """This chain's divergent updates after warm-up (hamiltonian mode: an energy rise
        above ``max_energy``, as Pyro's HMC counts them), the path that ran, the sampler's
        adapted settings and the log density (``-potential``, Pyro's) at each draw."""
        batch = self._batch
        if batch is None or batch.initial.shape[1] == 0:
            return {"divergences": []}
        if self._chain == 0 and self._sampler is not None:
            batch.info = {
                "path": self.path,
                "path_reason": self.path_reason,
                **self._sampler.info(),
            }
            if self.path == "generic":  # how Pyro's potential was evaluated
                batch.info |= {
                    "potential": self.potential,
                    "potential_reason": self.potential_reason,
                }
        kept = range(self._warmup_steps, len(batch.diverging))
        divergences = [
            t - self._warmup_steps for t in kept if bool(batch.diverging[t][self._chain])
        ]
        log_density = [float(batch.log_density[t][self._chain]) for t in kept]
        return {"divergences": divergences, **batch.info, "log_density": log_density}

    # -- the work --------------------------------------------------------------------------

    def _unravel(self, theta: Tensor) -> dict[str, Tensor]:
        return unravel(theta, self._shapes)

    def _advance(self) -> Tensor:
        """One update of every chain in the batch; returns the first chain's state."""
        batch = self._batch
        if self._sampler is None:
            self._target = self._find_target(batch.initial)
            self._sampler = self._new_sampler(batch.initial.shape[1], batch.initial)
            self._theta = batch.initial.clone()
            self._logp = self._target.log_density(self._theta)
        with torch.no_grad():
            self._theta, self._logp = self._sampler.sweep(self._target, self._theta, self._logp)
        diverging = getattr(self._sampler, "diverging", None)
        if diverging is None:
            # on the CPU: diagnostics
            diverging = torch.zeros(batch.size, dtype=torch.bool)
        batch.diverging.append(diverging.cpu())
        batch.log_density.append(self._logp.cpu() + self._target_constant)
        if batch.size > 1:
            batch.states.append(self._theta.clone())
        return self._theta[0]

    def _find_target(self, initial: Tensor) -> Target | ConditionalTarget:
        """The fast path's target where the model has one, else Pyro's potential: batched
        over the points (chains) where the model allows it (checked), else point by point."""
        potential = self.potential_fn
        self._target_constant = 0.0
        self.path, self.path_reason = "generic", "fast=False"
        if self.fast and self.model is None:
            self.path_reason = "potential_fn given: no model to probe"
        elif self.fast:
            try:
                target = linear_logistic_target(
                    self.model,
                    self._args,
                    self._kwargs,
                    self._shapes,
                    potential,
                    initial[0],
                    self._prototype,
                )
            except NotLinearLogistic as err:
                self.path_reason = str(err)
            else:
                self.path = "fast"
                self.path_reason = "logistic likelihood, linear logits, Gaussian prior"
                self._target_constant = target.prior_constant
                return target
            if self.directions is Directions.HAMILTONIAN:
                try:
                    target = conditional_target(
                        self.model, self._args, self._kwargs, self._shapes, self.transforms,
                        potential, initial[0], self._prototype,
                    )  # fmt: skip
                except NotLinearLogistic as err:
                    self.path_reason += f"; not conditionally either: {err}"
                else:
                    self.path = "conditional"
                    self.path_reason = (
                        f"{self.path_reason}; given {target.hyper}: logistic likelihood, "
                        f"linear logits, Gaussian sites {target.gaussian}"
                    )
                    return target
        generic = PotentialTarget(lambda theta: potential(self._unravel(theta)))
        self.potential, self.potential_reason = "per point", "potential_fn given: no model"
        if not self.batch_potential:
            self.potential_reason = "batch_potential=False"
        elif self.model is not None:
            with torch.random.fork_rng():  # the probe leaves the chains' random stream alone
                self._batch_potential(generic, initial)
        return generic

    def _batch_potential(self, generic: PotentialTarget, initial: Tensor) -> None:
        """Give ``generic`` the batched potential if it equals Pyro's (``batched_potential``)."""
        latent = {
            name
            for name, site in self._prototype.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
        }
        if latent != set(self._shapes):
            self.potential_reason = "discrete latent sites: Pyro's enumerating potential"
            return
        batched = BatchedPotential(
            self.model, self._args, self._kwargs, self.transforms, self._shapes, self._prototype
        )
        reason = batched_potential(batched, generic.potential, initial)
        if reason is None:
            generic.batched = batched
            self.potential, self.potential_reason = "batched", "equal to Pyro's per point"
        else:
            self.potential_reason = reason

    def _new_sampler(
        self, size: int, like: Tensor
    ) -> SliceSampler | HamiltonianSliceSampler | ConditionalSampler:
        fast = self.path in ("fast", "conditional")
        scale_moves = self.scale_moves
        if scale_moves is None:
            scale_moves = FAST_PATH_SCALE_MOVES if fast else 0
        warmup_trajectory = self.warmup_trajectory
        if warmup_trajectory is None:
            warmup_trajectory = FAST_PATH_WARMUP_TRAJECTORY if fast else None
        if self.path == "conditional":

            def new_sampler() -> HamiltonianSliceSampler:
                return self._hamiltonian(scale_moves, warmup_trajectory)

            return ConditionalSampler(len(like), new_sampler, self.init_width, self.max_steps)
        if self.directions is Directions.HAMILTONIAN:
            return self._hamiltonian(scale_moves, warmup_trajectory)
        return SliceSampler(
            size, self.directions, warmup=self._warmup_steps, init_width=self.init_width,
            max_steps=self.max_steps, scale_moves=scale_moves, dtype=like.dtype,
            device=like.device,
        )  # fmt: skip

    def _hamiltonian(
        self, scale_moves: int, warmup_trajectory: float | None
    ) -> HamiltonianSliceSampler:
        return HamiltonianSliceSampler(
            self._warmup_steps, self.trajectory, init_step=0.1,
            target_accept=self.target_accept, warmup_trajectory=warmup_trajectory,
            mass=self.mass, scale_moves=scale_moves, scale_width=self.init_width,
            max_steps=self.max_steps, max_energy=self.max_energy,
        )  # fmt: skip
