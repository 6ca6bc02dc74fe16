"""The marginal likelihood ``p(y) = integral p(y | theta) p(theta) dtheta`` of a Pyro model, by
annealed importance sampling (Neal 2001) with slice-sampling transitions.

Particles start as draws from the prior and move through the tempered targets
``p_beta(theta) ~ p(theta) p(y | theta)^beta``, ``0 = beta_0 < ... < beta_K = 1`` (the
geometric path from prior to posterior). Before the move to ``beta_k`` each particle's log
weight gains ``(beta_k - beta_{k-1}) log p(y | theta)``; the move leaves ``p_beta_k``
invariant and its settings do not depend on the particles, so the estimator is exact AIS:
``mean(exp(log_weights))`` is unbiased for ``p(y)``. Two moves (``transition``):

- ``hamiltonian``: one slice update along a Hamiltonian trajectory
  (:mod:`bayes_spheres.kernels.hamiltonian`, the ``Slice`` kernel's default), on the fast
  path's target (:class:`~bayes_spheres.kernels.logistic.LogisticTarget`, found in the model
  as the kernel finds it: a Bernoulli likelihood with logits linear in the latents under a
  Gaussian prior, such as the flat and shared-mean priors). The prior is the exact Gaussian
  flow and the likelihood, raised to ``beta``, gives the kicks, so an update costs O(N) per
  step. The step size at ``beta = 1`` is the kernel's own warm-up adaptation on separate
  pilot chains (or given); at ``beta`` it is ``step / sqrt(beta)``, as the likelihood's
  curvature scales.
- ``coordinate``: a sweep of univariate slice updates with fixed widths
  (:class:`bayes_spheres.kernels.sampler.SliceSampler`) through Pyro's potential; any model
  with continuous latent sites.

``auto`` takes the first where the model allows it.

The tempered model is the user's model under :class:`Tempering`, which scales the log density
of every site the model observes (``obs=``) by ``beta``; the potential is Pyro's
(:func:`pyro.infer.mcmc.util.initialize_model`, constrained sites in unconstrained space), run
for all particles at once where the model broadcasts (checked, as the kernel does).

    evidence = annealed_importance_sampling(model, x, y, particles=200, temperatures=200)
    evidence.log_evidence, evidence.standard_error

References: R. M. Neal (2001), "Annealed importance sampling", Statistics and Computing 11(2);
R. M. Neal (2003), "Slice sampling", Ann. Statist. 31(3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, MAX_LEAPFROGS, HamiltonianSliceSampler
from bayes_spheres.kernels.logistic import LogisticTarget
from bayes_spheres.kernels.paths import PATHS, Problem, Refused
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    unravel,
)
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.settings import SliceSettings


class Tempering(Messenger):
    """A Pyro handler that scales the log density of the sites the model observes by
    ``beta`` (mutable): the likelihood's power on the path from prior (``beta = 0``) to
    posterior (``beta = 1``). ``Tempering(beta)(model)`` is the tempered model. Sites
    conditioned from outside (``poutine.condition``) and deterministic sites are not data:
    wrapped inside any conditioning, the handler sees the model's own ``obs=`` only."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def _pyro_sample(self, msg: dict) -> None:
        if (
            msg["is_observed"]
            and not msg["infer"].get("_deterministic", False)
            and not site_is_subsample(msg)
        ):
            msg["scale"] = msg["scale"] * self.beta


@dataclass
class Evidence:
    """``log p(y)`` estimated from ``particles`` weighted particles.

    ``standard_error`` is the delta-method error of ``log mean(w)``:
    ``sd(w) / (sqrt(particles) mean(w))``; ``effective_particles`` Kish's
    ``(sum w)^2 / sum w^2``. Both are only as good as the spread of the weights they see: a
    handful of effective particles means the error bar itself is unreliable.
    """

    log_evidence: float
    standard_error: float
    effective_particles: float
    log_weights: Tensor
    temperatures: int
    info: dict = field(default_factory=dict)  # the transition and its settings

    @property
    def particles(self) -> int:
        return len(self.log_weights)


def temperature_schedule(temperatures: int, power: float = 4.0) -> Tensor:
    """``beta_k = (k / K)^power``, k = 0..K: dense near the prior, where the likelihood's
    power changes the target most (``power = 1``: evenly spaced)."""
    if not (isinstance(temperatures, int) and temperatures >= 1):
        raise ValueError(f"temperatures={temperatures!r}: must be an integer >= 1")
    if not (power > 0 and math.isfinite(power)):
        raise ValueError(f"power={power!r}: must be a positive finite number")
    # on the CPU: the schedule is read as Python floats
    return torch.linspace(0.0, 1.0, temperatures + 1, dtype=torch.float64) ** power


class Transition(StrEnum):
    """The move at each temperature (module docstring)."""

    AUTO = "auto"
    HAMILTONIAN = "hamiltonian"
    COORDINATE = "coordinate"


class Schedule(StrEnum):
    """``power``: :func:`temperature_schedule`; ``adaptive``: :func:`thermodynamic_schedule`
    from a pilot run along the power schedule."""

    POWER = "power"
    ADAPTIVE = "adaptive"


def thermodynamic_schedule(betas: Tensor, spread: Tensor, temperatures: int) -> Tensor:
    """``temperatures`` steps from 0 to 1 at equal increments of the thermodynamic length
    ``integral sd_beta(log p(y | theta)) dbeta`` (Gelman & Meng 1998; the spread ``sd`` [K]
    measured at ``betas[1:]`` by a pilot run, linear in between). With well-mixed moves the
    variance of a particle's log weight is about ``length^2 / temperatures``, the least any
    schedule of that many steps gives. A floor of 1e-3 of the largest spread keeps some
    steps in every stretch of the pilot's path."""
    if not (isinstance(temperatures, int) and temperatures >= 1):
        raise ValueError(f"temperatures={temperatures!r}: must be an integer >= 1")
    spread = spread.double().cpu().nan_to_num(0.0)
    spread = torch.cat([spread[:1], spread]).clamp_min(1e-3 * float(spread.max()) + 1e-12)
    betas = betas.double().cpu()
    length = torch.cat([betas.new_zeros(1), torch.cumsum(
        0.5 * (spread[1:] + spread[:-1]) * torch.diff(betas), 0
    )])  # fmt: skip
    # on the CPU: the schedule is read as Python floats
    at = torch.linspace(0.0, float(length[-1]), temperatures + 1, dtype=torch.float64)
    schedule = torch.from_numpy(np.interp(at.numpy(), length.numpy(), betas.numpy()))
    schedule[0], schedule[-1] = 0.0, 1.0
    return schedule


def annealed_importance_sampling(
    model: Callable[..., Any],
    *args: Any,
    particles: int = 100,
    temperatures: int = 200,
    schedule: Schedule | str = Schedule.ADAPTIVE,
    power: float = 4.0,
    pilot_particles: int = 8,
    pilot_temperatures: int = 200,
    transition: Transition | str = Transition.AUTO,
    sweeps: int = 1,
    trajectory: float = 1.5,
    step_size: float | None = None,
    pilot_updates: int = 120,
    init_width: float = 1.0,
    max_steps: int = 20,
    seed: int = 0,
    progress: bool = False,
    fixed: dict[str, Tensor] | None = None,
    **kwargs: Any,
) -> Evidence:
    """``log p(y)`` of ``model(*args, **kwargs)`` (its observed sites are ``y``) by AIS.

    ``temperatures``: K steps from prior to posterior, placed by ``schedule``
    (:class:`Schedule`): ``power`` is :func:`temperature_schedule` (``power``); ``adaptive``
    first runs ``pilot_particles`` along a power schedule of ``pilot_temperatures`` steps and
    places the K steps by :func:`thermodynamic_schedule`. ``transition``:
    :class:`Transition`; ``sweeps``: moves per temperature. ``hamiltonian``: ``trajectory``
    (whitened time per update) and ``step_size`` at ``beta = 1`` (None: adapted by
    ``pilot_updates`` warm-up updates of 4 pilot chains at the posterior, as the ``Slice``
    kernel adapts it). ``coordinate``: ``init_width``, ``max_steps``, the slice width
    (unconstrained space, fixed) and Neal's ``m``. Pilots use their own particles, so the
    main run's estimate stays exact AIS. The same ``seed`` gives the same estimate.
    ``fixed``: latent sites held at these values, so the estimate is ``p(y | fixed)``; they
    are conditioned outside the tempering, which therefore leaves their densities alone.
    """
    for name, value in (
        ("particles", particles), ("sweeps", sweeps), ("pilot_particles", pilot_particles)
    ):  # fmt: skip
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r}: must be an integer >= 1")
    transition, schedule = _choice(Transition, transition), _choice(Schedule, schedule)
    if not (trajectory > 0 and (step_size is None or step_size > 0)):
        raise ValueError(
            f"trajectory={trajectory!r}, step_size={step_size!r}: must be positive (step_size "
            "may be None: adapted)"
        )
    betas = temperature_schedule(temperatures, power)
    pilot_betas = temperature_schedule(pilot_temperatures, power)
    pyro.set_rng_seed(seed)
    tempering = Tempering(beta=1.0)
    target_model = tempering(model)
    if fixed:
        model = poutine.condition(model, data=fixed)
        target_model = poutine.condition(target_model, data=fixed)
    init_params, potential_fn, transforms, prototype = initialize_model(
        target_model, model_args=args, model_kwargs=kwargs
    )
    shapes = {name: value.shape for name, value in init_params.items()}
    like = next(iter(init_params.values()))

    def prior_draws(count: int) -> Tensor:
        return _prior_draws(model, args, kwargs, transforms, shapes, count).to(like)

    fast, reason = None, "transition='coordinate'"
    if transition is not Transition.COORDINATE:
        problem = Problem(model, args, kwargs, potential_fn, transforms, shapes, prototype)
        points = like.reshape(1, -1).expand(particles, -1)  # the form is weighed for them
        try:  # the kernel's own probe of its fast path
            fast = PATHS["fast"].probe(problem, SliceSettings(), points).target
        except Refused as error:
            if transition is Transition.HAMILTONIAN:
                raise ValueError(
                    f"transition='hamiltonian' needs a logistic likelihood with logits linear "
                    f"in the latents under a Gaussian prior: {error}"
                ) from error
            reason = str(error)
    if fast is not None:
        if step_size is None:
            step_size = _pilot_step_size(fast, prior_draws(4), trajectory, pilot_updates)

        def run_path(theta: Tensor, path: Tensor) -> tuple[Tensor, Tensor, dict]:
            return _hamiltonian_path(fast, theta, path, sweeps, trajectory, step_size, progress)
    else:

        def run_path(theta: Tensor, path: Tensor) -> tuple[Tensor, Tensor, dict]:
            log_weights, spread, info = _coordinate_path(
                target_model, tempering, args, kwargs, transforms, shapes, prototype,
                potential_fn, theta, path, sweeps, init_width, max_steps, progress,
            )  # fmt: skip
            return log_weights, spread, {**info, "reason": reason}

    if schedule is Schedule.ADAPTIVE:
        _, spread, _ = run_path(prior_draws(pilot_particles), pilot_betas)
        betas = thermodynamic_schedule(pilot_betas, spread, temperatures)
    log_weights, _, info = run_path(prior_draws(particles), betas)
    info["schedule"] = schedule.value
    return _summary(log_weights.detach().cpu().double(), temperatures, info)


def _choice(kind: type[StrEnum], value: object) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        name = kind.__name__.lower()
        raise ValueError(f"{name}={value!r}: must be one of {allowed}") from None


def _pilot_step_size(
    target: LogisticTarget, theta: Tensor, trajectory: float, updates: int
) -> float:
    """The step size the ``Slice`` kernel's warm-up adapts at the posterior, from ``theta``."""
    sampler = HamiltonianSliceSampler(
        warmup=updates, trajectory=trajectory, warmup_trajectory=trajectory
    )
    logp = target.log_density(theta)
    for _ in range(updates):
        theta, logp = sampler.sweep(target, theta, logp)
    return sampler.step_size


def _hamiltonian_path(
    target: LogisticTarget,
    theta: Tensor,
    betas: Tensor,
    sweeps: int,
    trajectory: float,
    step_size: float,
    progress: bool,
) -> tuple[Tensor, Tensor, dict]:
    """AIS log weights with slice updates along Hamiltonian trajectories of the tempered fast
    target (module docstring), the spread of ``log p(y | theta)`` over the particles at each
    temperature, and settings. The step at ``beta`` is ``step_size / sqrt(beta)``, at most
    ``trajectory`` (one step: the prior's exact flow dominates)."""
    posterior = target.splitting()
    z = posterior.to_z(theta)
    log_weights = theta.new_zeros(len(theta))
    spread, in_slice, leapfrogs = [], [], 0
    for k in tqdm(range(1, len(betas)), desc="AIS", disable=not progress, leave=False):
        beta = float(betas[k])
        log_likelihood, gradient = posterior.rest(z)
        log_weights = log_weights + (beta - float(betas[k - 1])) * log_likelihood
        spread.append(log_likelihood.std() if len(z) > 1 else log_likelihood.new_zeros(()))
        if k == len(betas) - 1:
            break  # the weights are complete; a move at beta = 1 would change nothing
        tempered = target.splitting(beta=beta)
        logp, grad = beta * log_likelihood, beta * gradient
        base = min(step_size / math.sqrt(beta), trajectory) if beta > 0 else trajectory
        for _ in range(sweeps):
            # on the CPU: a number
            eps = base * (0.9 + 0.2 * float(torch.rand(())))
            steps = min(max(1, round(trajectory / eps)), MAX_LEAPFROGS)
            step = tempered.trajectory(z, logp, grad, eps, steps, MAX_ENERGY)
            z, logp, grad = step.z, step.logp_rest, step.grad
            in_slice.append(float(step.in_slice.mean()))
            leapfrogs += steps
    moves = max(len(in_slice), 1)
    info = {
        "transition": Transition.HAMILTONIAN.value,
        "step_size": step_size,
        "trajectory": trajectory,
        "in_slice_mean": sum(in_slice) / moves,
        "leapfrogs_per_move": leapfrogs / moves,
    }
    return log_weights, torch.stack(spread), info


def _coordinate_path(
    target_model: Callable,
    tempering: Tempering,
    args: tuple,
    kwargs: dict,
    transforms: dict,
    shapes: dict,
    prototype: Any,
    potential_fn: Callable,
    theta: Tensor,
    betas: Tensor,
    sweeps: int,
    init_width: float,
    max_steps: int,
    progress: bool,
) -> tuple[Tensor, Tensor, dict]:
    """AIS log weights with coordinate slice sweeps through Pyro's potential of the tempered
    model (``tempering.beta`` set per temperature), and the spread of the log likelihood at
    each temperature."""

    def potential(points: Tensor) -> Tensor:
        return potential_fn(unravel(points, shapes))

    batched = BatchedPotential(target_model, args, kwargs, transforms, shapes, prototype)
    reason = batched_potential(batched, potential, theta[:2])
    target = PotentialTarget(potential, None if reason else batched)

    def log_likelihood(points: Tensor) -> Tensor:
        tempering.beta = 0.0
        log_prior = target.log_density(points)
        tempering.beta = 1.0
        return target.log_density(points) - log_prior

    sampler = SliceSampler(
        theta.shape[-1],
        directions=Directions.COORDINATE,
        init_width=init_width,
        max_steps=max_steps,
        dtype=theta.dtype,
        device=theta.device,
    )
    log_weights = theta.new_zeros(len(theta))
    spread = []
    for k in tqdm(range(1, len(betas)), desc="AIS", disable=not progress, leave=False):
        values = log_likelihood(theta)
        log_weights = log_weights + float(betas[k] - betas[k - 1]) * values
        spread.append(values.std() if len(theta) > 1 else values.new_zeros(()))
        tempering.beta = float(betas[k])
        logp = target.log_density(theta)
        for _ in range(sweeps):
            theta, logp = sampler.sweep(target, theta, logp)
    tempering.beta = 1.0
    return log_weights, torch.stack(spread), {"transition": Transition.COORDINATE.value}


def _prior_draws(
    model: Callable, args: tuple, kwargs: dict, transforms: dict, shapes: dict, particles: int
) -> Tensor:
    """``particles`` draws of the latent sites from the prior, unconstrained, flat [P, size]."""
    rows = []
    for _ in range(particles):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
        values = [
            transforms[name](trace.nodes[name]["value"]).reshape(-1) if name in transforms
            else trace.nodes[name]["value"].reshape(-1)
            for name in shapes
        ]  # fmt: skip
        rows.append(torch.cat(values).detach())
    return torch.stack(rows)


def _summary(log_weights: Tensor, temperatures: int, info: dict) -> Evidence:
    particles = len(log_weights)
    top = log_weights.max()
    weights = torch.exp(log_weights - top)
    mean = weights.mean()
    standard_error = float(weights.std(unbiased=True) / (math.sqrt(particles) * mean))
    if particles == 1:
        standard_error = math.inf
    return Evidence(
        log_evidence=float(top + torch.log(mean)),
        standard_error=standard_error,
        effective_particles=float(weights.sum() ** 2 / (weights**2).sum()),
        log_weights=log_weights,
        temperatures=temperatures,
        info=info,
    )


@dataclass
class SiteQuadrature:
    """``log p(y)`` of a model with one scalar latent site ``site`` integrated out by
    Gauss-Hermite quadrature: ``p(y) = sum_i c_i p(y | site = s_i)``, each conditional
    evidence by :func:`annealed_importance_sampling`. ``standard_error`` is the delta-method
    error from the nodes' own errors (the quadrature's error is not in it: compare
    ``nodes``)."""

    site: str
    values: Tensor  # the nodes s_i, constrained
    log_coefficients: Tensor  # log c_i (the quadrature weights of the site's prior)
    conditional: list[Evidence]

    @property
    def log_terms(self) -> Tensor:
        # on the CPU: the nodes' estimates are Python floats
        evidences = torch.tensor([e.log_evidence for e in self.conditional], dtype=torch.float64)
        return self.log_coefficients + evidences

    @property
    def log_evidence(self) -> float:
        return float(torch.logsumexp(self.log_terms, 0))

    @property
    def standard_error(self) -> float:
        share = torch.softmax(self.log_terms, 0)
        # on the CPU: the nodes' errors are Python floats
        errors = torch.tensor([e.standard_error for e in self.conditional], dtype=torch.float64)
        return float(torch.sqrt(((share * errors) ** 2).sum()))


def evidence_over_site(
    model: Callable[..., Any], site: str, *args: Any, nodes: int = 7, **settings: Any
) -> SiteQuadrature:
    """``log p(y)`` of ``model(*args)`` with its scalar latent site ``site`` (Normal or
    LogNormal prior, as the model states it) integrated out by ``nodes``-point Gauss-Hermite
    quadrature in the site's unconstrained coordinate; at each node
    :func:`annealed_importance_sampling` (``settings``) estimates the evidence with the site
    held at the node's value (``fixed``). For a hierarchical prior whose other
    latents are Gaussian given the scale (the study's hierarchical model), each conditional
    model is on the fast path."""
    if not (isinstance(nodes, int) and nodes >= 1):
        raise ValueError(f"nodes={nodes!r}: must be an integer >= 1")
    with torch.random.fork_rng():
        trace = poutine.trace(model).get_trace(*args)
    node = trace.nodes.get(site)
    if node is None or node["type"] != "sample" or node["is_observed"]:
        latent = [
            n for n, v in trace.nodes.items() if v["type"] == "sample" and not v["is_observed"]
        ]
        raise ValueError(f"site={site!r}: not a latent sample site of the model; it has {latent}")
    prior = node["fn"]
    if prior.batch_shape or prior.event_shape:
        raise ValueError(f"site={site!r}: has shape {tuple(prior.shape())}; must be a scalar")
    base = prior
    if isinstance(prior, dist.LogNormal):
        base = prior.base_dist
    if not isinstance(base, dist.Normal):
        raise ValueError(
            f"site={site!r}: prior {type(prior).__name__}; must be Normal or LogNormal"
        )
    points, weights = np.polynomial.hermite.hermgauss(nodes)
    like = node["value"]
    unconstrained = base.loc + math.sqrt(2.0) * base.scale * like.new_tensor(points)
    values = torch.exp(unconstrained) if base is not prior else unconstrained
    log_coefficients = torch.from_numpy(np.log(weights / math.sqrt(math.pi)))
    seed = settings.pop("seed", 0)
    conditional = [
        annealed_importance_sampling(
            model, *args, seed=seed * nodes + i, fixed={site: value}, **settings
        )
        for i, value in enumerate(values)
    ]  # each node its own random stream, so that their errors are independent
    return SiteQuadrature(site, values.detach().cpu(), log_coefficients, conditional)
