"""Annealed importance sampling of a Pyro model's evidence: :func:`anneal`, the one loop over
temperatures (the move is a callable, ``bayes_spheres/evidence/moves.py``), and
:func:`annealed_importance_sampling`, which reads the model, picks the move and the schedule
(``bayes_spheres/evidence/__init__.py`` describes the estimator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres import checks
from bayes_spheres.evidence.moves import (
    HamiltonianMove,
    Move,
    Transition,
    coordinate_move,
    pilot_step_size,
    prior_draws,
)
from bayes_spheres.evidence.schedules import (
    Schedule,
    temperature_schedule,
    thermodynamic_schedule,
)
from bayes_spheres.evidence.tempering import Evidence, Tempering
from bayes_spheres.kernels.paths import PATHS, Problem, Refused
from bayes_spheres.kernels.settings import SliceSettings
from bayes_spheres.progress import bars_disabled


def anneal(move: Move, theta: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """AIS from the prior draws ``theta`` [P, size] along ``betas`` [K + 1]: before the move
    to ``beta_k`` each particle's log weight gains ``(beta_k - beta_{k-1}) log p(y | theta)``,
    then ``move`` leaves ``p_beta_k`` invariant. Returns the log weights [P] and the spread
    (sd over particles) of ``log p(y | theta)`` at each of ``betas[1:]`` [K]."""
    state = move.start(theta)
    log_weights = theta.new_zeros(len(theta))
    spread = []
    for k in tqdm(range(1, len(betas)), desc="AIS", disable=bars_disabled(), leave=False):
        log_likelihood = move.log_likelihood(state)
        log_weights = log_weights + float(betas[k] - betas[k - 1]) * log_likelihood
        spread.append(log_likelihood.std() if len(theta) > 1 else log_likelihood.new_zeros(()))
        if k == len(betas) - 1:
            break  # the weights are complete; a move at beta = 1 would change nothing
        state = move(state, float(betas[k]))
    return log_weights, torch.stack(spread)


@dataclass(frozen=True)
class AISSettings:
    """Annealed importance sampling's settings, checked when made.

    ``temperatures``: K steps from prior to posterior, placed by ``schedule``
    (:class:`Schedule`): ``power`` is :func:`temperature_schedule` (``power``); ``adaptive``
    first runs ``pilot_particles`` along a power schedule of ``pilot_temperatures`` steps and
    places the K steps by :func:`thermodynamic_schedule`. ``transition``:
    :class:`Transition`; ``sweeps``: moves per temperature. ``hamiltonian``: ``trajectory``
    (whitened time per update) and ``step_size`` at ``beta = 1`` (None: adapted by
    ``pilot_updates`` warm-up updates of 4 pilot chains at the posterior, as the ``Slice``
    kernel adapts it). ``coordinate``: ``init_width``, ``max_steps``, the slice width
    (unconstrained space, fixed) and Neal's ``m``.
    """

    particles: int = 100
    temperatures: int = 200
    schedule: Schedule = Schedule.ADAPTIVE
    power: float = 4.0
    pilot_particles: int = 8
    pilot_temperatures: int = 200
    transition: Transition = Transition.AUTO
    sweeps: int = 1
    trajectory: float = 1.5
    step_size: float | None = None
    pilot_updates: int = 120
    init_width: float = 1.0
    max_steps: int = 20

    def __post_init__(self) -> None:
        checked = {
            "schedule": checks.choice("schedule", self.schedule, Schedule),
            "transition": checks.choice("transition", self.transition, Transition),
            "power": checks.positive("power", self.power),
            "trajectory": checks.positive("trajectory", self.trajectory),
            "init_width": checks.positive("init_width", self.init_width),
        }
        if self.step_size is not None:
            checked["step_size"] = checks.positive("step_size", self.step_size)
        for name in ("particles", "temperatures", "pilot_particles", "pilot_temperatures",
                     "sweeps", "max_steps"):  # fmt: skip
            checks.integer(name, getattr(self, name), minimum=1)
        checks.integer("pilot_updates", self.pilot_updates)
        for name, value in checked.items():  # frozen: the checked, normalised values
            object.__setattr__(self, name, value)


SETTING_NAMES = frozenset(f.name for f in fields(AISSettings))


def annealed_importance_sampling(
    model: Callable[..., Any],
    *args: Any,
    settings: AISSettings | None = None,
    seed: int = 0,
    fixed: dict[str, Tensor] | None = None,
    **kwargs: Any,
) -> Evidence:
    """``log p(y)`` of ``model(*args, **kwargs)`` (its observed sites are ``y``) by AIS with
    ``settings`` (:class:`AISSettings`; a keyword named as one of its fields replaces that
    setting, e.g. ``particles=200``, and the other keywords go to the model). Pilots use
    their own particles, so the main run's estimate stays exact AIS. The same ``seed`` gives
    the same estimate. ``fixed``: latent sites held at these values, so the estimate is
    ``p(y | fixed)``; they are conditioned outside the tempering, which therefore leaves
    their densities alone.
    """
    overrides = {name: kwargs.pop(name) for name in SETTING_NAMES & set(kwargs)}
    s = replace(settings or AISSettings(), **overrides)
    particles, temperatures, transition, schedule = (
        s.particles, s.temperatures, s.transition, s.schedule
    )  # fmt: skip
    sweeps, trajectory, step_size, power = s.sweeps, s.trajectory, s.step_size, s.power
    pilot_particles, pilot_temperatures = s.pilot_particles, s.pilot_temperatures
    init_width, max_steps, pilot_updates = s.init_width, s.max_steps, s.pilot_updates
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
    problem = Problem(model, args, kwargs, potential_fn, transforms, shapes, prototype)

    def draws(count: int) -> Tensor:
        return prior_draws(model, args, kwargs, transforms, shapes, count).to(like)

    fast, reason = None, "transition='coordinate'"
    if transition is not Transition.COORDINATE:
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
    if fast is not None and step_size is None:
        step_size = pilot_step_size(fast, draws(4), trajectory, pilot_updates)

    def new_move(theta: Tensor) -> Move:  # one per run, so that its info is the run's own
        if fast is not None:
            return HamiltonianMove(fast, sweeps, trajectory, step_size)
        tempered = Problem(target_model, args, kwargs, potential_fn, transforms, shapes, prototype)
        return coordinate_move(
            tempering, tempered, theta[:2], sweeps, init_width, max_steps, reason
        )

    if schedule is Schedule.ADAPTIVE:
        theta = draws(pilot_particles)
        _, spread = anneal(new_move(theta), theta, pilot_betas)
        betas = thermodynamic_schedule(pilot_betas, spread, temperatures)
    theta = draws(particles)
    move = new_move(theta)
    log_weights, _ = anneal(move, theta, betas)
    info = {**move.info, "schedule": schedule.value}
    return Evidence.of(log_weights.detach().cpu().double(), temperatures, info)
