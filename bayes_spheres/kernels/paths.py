"""The kernel's three paths, as strategies probed in order from one table.

- ``fast``: a Bernoulli likelihood with logits linear in the latents under a Gaussian prior
  (:mod:`~bayes_spheres.kernels.fast.logistic`), read off the model and checked against Pyro's
  potential; the prior is whitened away and trajectories run on the fast integrator.
- ``conditional``: such a model once a few other sites are given (a hierarchical prior),
  sampled by Gibbs updates whose Gaussian block is on the fast integrator
  (:mod:`~bayes_spheres.kernels.conditional`); along Hamiltonian trajectories only.
- ``generic``: any model with continuous latent sites, through Pyro's potential, compiled
  (one chain) or batched over the chains (several) where a check finds that equal to Pyro's
  per point (:mod:`~bayes_spheres.kernels.potential`).

Each probe returns a :class:`Found` or raises :class:`Refused` with the reason; the first path
that does not refuse is taken, and :class:`Path` keeps why the earlier ones refused.
:func:`find_path` is what ``Slice`` runs at its first update; ``evidence/ais.py`` probes the same
table for its fast target. Each path carries its defaults for the settings left at None
(:class:`~bayes_spheres.kernels.settings.PathDefaults`): on the fast and conditional paths
the prior whitens the state, so short warm-up trajectories adapt the step well and scale
moves redraw the radius of a Gaussian prior cut by constraints (docs/mcmc.md); on the generic
path the origin of the unconstrained space means nothing in particular, so no scale moves, and
nothing sets the posterior's scales in advance, so trajectories end where they turn back
(``no-u-turn``; docs/published-targets.md measures it against the fixed length).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.conditional import ConditionalSampler, conditional_target
from bayes_spheres.kernels.fast.logistic import NotLinearLogistic
from bayes_spheres.kernels.fast.logistic_model import linear_logistic_target
from bayes_spheres.kernels.fused_gradient import fused_gradient
from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.interweaving import InterweavingSampler, decentring
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    replayed,
    unravel,
)
from bayes_spheres.kernels.protocols import Target
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.settings import NO_U_TURN, PathDefaults, SliceSettings

FAST_DEFAULTS = PathDefaults(trajectory=6.0, warmup_trajectory=1.5, scale_moves=3)
GENERIC_DEFAULTS = PathDefaults(trajectory=NO_U_TURN, warmup_trajectory=None, scale_moves=0)
INIT_STEP = 0.1  # the first step size along trajectories, before warm-up adapts it


class Refused(Exception):
    """A path does not apply to this model; the message says why."""


@dataclass(frozen=True)
class Problem:
    """What the probes read: the model (None where only a potential is given) with its
    arguments, Pyro's potential over unconstrained site values, transforms, the latent
    sites' shapes (flattened in this order) and Pyro's prototype trace."""

    model: Callable | None
    args: tuple
    kwargs: dict
    potential_fn: Callable[[dict[str, Tensor]], Tensor]
    transforms: dict
    shapes: dict[str, torch.Size]
    prototype: poutine.Trace | None

    def potential(self, theta: Tensor) -> Tensor:
        return self.potential_fn(unravel(theta, self.shapes))


@dataclass(frozen=True)
class Found:
    """A path's target, why it applies, and details for ``diagnostics()``."""

    target: Target
    reason: str
    constant: float = 0.0  # log density = target's + constant (the fast path drops it)
    details: dict = field(default_factory=dict)


Probe = Callable[[Problem, SliceSettings, Tensor], Found]
# (settings, warm-up updates, starting points [C, P], random stream) -> a sampler
SamplerFactory = Callable[[SliceSettings, int, Tensor, torch.Generator | None], object]


def probe_fast(problem: Problem, settings: SliceSettings, initial: Tensor) -> Found:
    if not settings.fast:
        raise Refused("fast=False")
    if problem.model is None:
        raise Refused("potential_fn given: no model to probe")
    try:
        target = linear_logistic_target(
            problem.model, problem.args, problem.kwargs, problem.shapes, problem.potential_fn,
            initial[0], problem.prototype, chains=len(initial),
            max_gram_bytes=settings.max_gram_bytes,
        )  # fmt: skip
    except NotLinearLogistic as err:
        raise Refused(str(err)) from err
    details = {k: getattr(target, k) for k in ("form", "form_reason") if hasattr(target, k)}
    reason = "logistic likelihood, linear logits, Gaussian prior"
    return Found(target, reason, target.prior_constant, details)


def probe_conditional(problem: Problem, settings: SliceSettings, initial: Tensor) -> Found:
    if not settings.fast:
        raise Refused("fast=False")
    if problem.model is None:
        raise Refused("potential_fn given: no model to probe")
    if settings.directions is not Directions.HAMILTONIAN:
        raise Refused(f"directions={settings.directions.value}: needs hamiltonian")
    try:
        target = conditional_target(
            problem.model, problem.args, problem.kwargs, problem.shapes, problem.transforms,
            problem.potential_fn, initial[0], problem.prototype,
        )  # fmt: skip
    except NotLinearLogistic as err:
        raise Refused(str(err)) from err
    reason = (
        f"given {target.hyper}: logistic likelihood, linear logits, Gaussian sites "
        f"{target.gaussian}"
    )
    details = {"potential": "per point", "potential_reason": "jit_compile=False"}
    if settings.jit_compile:  # the joint density of the hyper-parameters' moves, replayed
        with torch.random.fork_rng():
            compiled, details["potential_reason"] = replayed(
                target.reparameterised, problem.args, problem.kwargs, target.joint_shapes,
                target.joint_potential, torch.cat(target.split(initial[0]))[None],
            )  # fmt: skip
        if compiled is not None:
            target.joint_potential, details["potential"] = compiled, "compiled"
    return Found(target, reason, details=details)


def probe_generic(problem: Problem, settings: SliceSettings, initial: Tensor) -> Found:
    """Pyro's potential, in the cheapest form a check finds equal to it per point: compiled
    for one chain (each leapfrog step one replay, no Python of the model), batched for
    several (one run of the model for all chains), else compiled or per point."""
    forms = ("compiled", "batched") if len(initial) == 1 else ("batched", "compiled")
    refusals = []
    with torch.random.fork_rng():  # the checks leave the chains' random stream alone
        for form in forms:
            target, why = POTENTIAL_FORMS[form](problem, settings, initial)
            if target is not None:
                details = {"potential": form, "potential_reason": why}
                break
            refusals.append(why)
        else:
            target = PotentialTarget(problem.potential)
            details = {"potential": "per point", "potential_reason": "; ".join(refusals)}
        details["interweaving"] = "interweave=False"
        if settings.interweave:
            target.decentring, details["interweaving"] = decentring(
                problem.model, problem.args, problem.kwargs, problem.shapes,
                problem.transforms, initial[:1], settings.jit_compile,
            )  # fmt: skip
    return Found(target, "any model", details=details)


def batched_form(
    problem: Problem, settings: SliceSettings, initial: Tensor
) -> tuple[PotentialTarget | None, str]:
    """All chains in one run of the model, where that equals Pyro's potential per point."""
    if not settings.batch_potential:
        return None, "batch_potential=False"
    if problem.model is None:
        return None, "potential_fn given: no model to batch"
    latent = {
        name
        for name, site in problem.prototype.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }
    if latent != set(problem.shapes):
        return None, "discrete latent sites: Pyro's enumerating potential"
    batched = BatchedPotential(
        problem.model, problem.args, problem.kwargs, problem.transforms, problem.shapes,
        problem.prototype,
    )  # fmt: skip
    why = batched_potential(batched, problem.potential, initial)
    if why is not None:
        return None, why
    return PotentialTarget(problem.potential, batched), "batched: equal to Pyro's per point"


def compiled_form(
    problem: Problem, settings: SliceSettings, initial: Tensor
) -> tuple[PotentialTarget | None, str]:
    """Pyro's potential recorded once and replayed (``jit_compile``), where that equals it."""
    if not settings.jit_compile:
        return None, "jit_compile=False"
    if problem.model is None:
        return None, "potential_fn given: no model to compile"
    compiled, why = replayed(
        problem.model, problem.args, problem.kwargs, problem.shapes, problem.potential, initial
    )
    if compiled is None:
        return None, why
    if len(initial) > 1:  # the fused graph serves one chain's steps (kernels/fused_gradient.py)
        return PotentialTarget(compiled), why
    fused, fused_why = fused_gradient(problem.potential, initial)
    return PotentialTarget(compiled, fused=fused), f"{why}; {fused_why}"


# The generic path's forms of Pyro's potential (``probe_generic`` says which it tries first).
POTENTIAL_FORMS = {"batched": batched_form, "compiled": compiled_form}


def hamiltonian_sampler(
    settings: SliceSettings,
    warmup: int,
    like: Tensor,
    generator: torch.Generator | None,
    fit_to_warmup: bool = True,
) -> object:
    trajectory = None if settings.trajectory == NO_U_TURN else settings.trajectory
    return HamiltonianSliceSampler(
        warmup, trajectory, init_step=INIT_STEP, target_accept=settings.target_accept,
        warmup_trajectory=settings.warmup_trajectory, mass=settings.mass,
        scale_moves=settings.scale_moves, scale_width=settings.init_width,
        max_steps=settings.max_steps, max_energy=settings.max_energy, fit_to_warmup=fit_to_warmup,
        generator=generator,
    )  # fmt: skip


def univariate_sampler(
    settings: SliceSettings, warmup: int, like: Tensor, generator: torch.Generator | None
) -> object:
    return SliceSampler(
        like.shape[1], settings.directions, warmup=warmup, init_width=settings.init_width,
        max_steps=settings.max_steps, scale_moves=settings.scale_moves, dtype=like.dtype,
        device=like.device, generator=generator,
    )  # fmt: skip


def conditional_sampler(
    settings: SliceSettings, warmup: int, like: Tensor, generator: torch.Generator | None
) -> object:
    def new_sampler() -> HamiltonianSliceSampler:
        # one Gaussian block per value of the other sites: no one posterior to fit
        return hamiltonian_sampler(settings, warmup, like, generator, fit_to_warmup=False)

    return ConditionalSampler(len(like), new_sampler, settings.init_width, settings.max_steps)


# The sampler for each kind of direction (fast and generic paths).
BY_DIRECTIONS: dict[Directions, SamplerFactory] = {
    Directions.HAMILTONIAN: hamiltonian_sampler,
    Directions.FACTOR: univariate_sampler,
    Directions.COORDINATE: univariate_sampler,
}


def direction_sampler(
    settings: SliceSettings, warmup: int, like: Tensor, generator: torch.Generator | None
) -> object:
    return BY_DIRECTIONS[settings.directions](settings, warmup, like, generator)


def generic_sampler(
    settings: SliceSettings, warmup: int, like: Tensor, generator: torch.Generator | None
) -> object:
    """The sampler for the directions, then interweaving where the target has centred sites
    (``kernels/interweaving.py``)."""
    base = direction_sampler(settings, warmup, like, generator)
    return InterweavingSampler(base, warmup, settings.init_width, settings.max_steps, generator)


@dataclass(frozen=True)
class Strategy:
    probe: Probe
    defaults: PathDefaults
    sampler: SamplerFactory


# Probed in this order; the first that does not refuse is taken.
PATHS: dict[str, Strategy] = {
    "fast": Strategy(probe_fast, FAST_DEFAULTS, direction_sampler),
    "conditional": Strategy(probe_conditional, FAST_DEFAULTS, conditional_sampler),
    "generic": Strategy(probe_generic, GENERIC_DEFAULTS, generic_sampler),
}


@dataclass(frozen=True)
class Path:
    """The path taken: its name, the reasons (the refusals before it, then its own), its
    target, the settings it runs with (None filled in from its defaults) and its sampler."""

    name: str
    reason: str
    found: Found
    settings: SliceSettings
    sampler: object


def find_path(
    problem: Problem,
    settings: SliceSettings,
    initial: Tensor,
    warmup: int,
    generator: torch.Generator | None = None,
) -> Path:
    """The first path of :data:`PATHS` whose probe accepts ``problem`` at the chains'
    starting points ``initial`` [C, P], with its sampler for ``warmup`` adapting updates,
    drawing from ``generator`` (None: torch's global stream, which Pyro seeds)."""
    refusals = []
    for name, strategy in PATHS.items():
        try:
            found = strategy.probe(problem, settings, initial)
        except Refused as err:
            refusals.append(f"not {name}: {err}")
            continue
        on_path = settings.on_path(strategy.defaults)
        sampler = strategy.sampler(on_path, warmup, initial, generator)
        return Path(name, "; ".join([*refusals, found.reason]), found, on_path, sampler)
    raise AssertionError("the generic path takes any model")  # pragma: no cover
