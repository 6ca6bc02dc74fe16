"""The marginal likelihood ``p(y) = integral p(y | theta) p(theta) dtheta`` of a Pyro model, by
annealed importance sampling (Neal 2001) with slice-sampling transitions.

Particles start as draws from the prior and move through the tempered targets
``p_beta(theta) ~ p(theta) p(y | theta)^beta``, ``0 = beta_0 < ... < beta_K = 1`` (the
geometric path from prior to posterior). Before the move to ``beta_k`` each particle's log
weight gains ``(beta_k - beta_{k-1}) log p(y | theta)``; the move is a sweep of univariate slice
updates (:class:`bayes_spheres.kernels.sampler.SliceSampler`, the steps of the ``Slice``
kernel) that leaves ``p_beta_k`` invariant, with fixed widths, so that the estimator is exact
AIS: ``mean(exp(log_weights))`` is unbiased for ``p(y)``.

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
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    unravel,
)
from bayes_spheres.kernels.sampler import Directions, SliceSampler


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


def annealed_importance_sampling(
    model: Callable[..., Any],
    *args: Any,
    particles: int = 100,
    temperatures: int = 200,
    power: float = 4.0,
    sweeps: int = 1,
    init_width: float = 1.0,
    max_steps: int = 20,
    seed: int = 0,
    progress: bool = False,
    **kwargs: Any,
) -> Evidence:
    """``log p(y)`` of ``model(*args, **kwargs)`` (its observed sites are ``y``) by AIS.

    ``temperatures``: K steps of :func:`temperature_schedule` (``power``); ``sweeps``: slice
    sweeps over every coordinate per temperature; ``init_width``, ``max_steps``: the slice
    width (unconstrained space, fixed) and Neal's ``m``. The same ``seed`` gives the same
    estimate.
    """
    for name, value in (("particles", particles), ("sweeps", sweeps)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r}: must be an integer >= 1")
    betas = temperature_schedule(temperatures, power)
    pyro.set_rng_seed(seed)
    tempering = Tempering(beta=1.0)
    target_model = tempering(model)
    init_params, potential_fn, transforms, prototype = initialize_model(
        target_model, model_args=args, model_kwargs=kwargs
    )
    shapes = {name: value.shape for name, value in init_params.items()}
    like = next(iter(init_params.values()))

    def potential(theta: Tensor) -> Tensor:
        return potential_fn(unravel(theta, shapes))

    theta = _prior_draws(model, args, kwargs, transforms, shapes, particles).to(like)
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
    log_weights = theta.new_zeros(particles)
    for k in tqdm(range(1, len(betas)), desc="AIS", disable=not progress, leave=False):
        log_weights = log_weights + float(betas[k] - betas[k - 1]) * log_likelihood(theta)
        tempering.beta = float(betas[k])
        logp = target.log_density(theta)
        for _ in range(sweeps):
            theta, logp = sampler.sweep(target, theta, logp)
    return _summary(log_weights.detach().cpu().double(), temperatures)


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


def _summary(log_weights: Tensor, temperatures: int) -> Evidence:
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
    )
