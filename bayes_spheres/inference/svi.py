"""Stochastic variational inference (Hoffman et al. 2013) with the paper's optimiser:
SGD with momentum 0.98, learning rate 0.01, minibatches of 100, 50,000 iterations (App. A).

Two engines run the same steps: Pyro's ``SVI`` with ``Trace_ELBO`` (any model and guide),
and, for Table 1's pairs, closed-form ELBO gradients
(:mod:`~bayes_spheres.inference.elbo_gradients`, about 10x faster per step at D = 500).
Predictions are Monte Carlo averages over ``members`` draws from the fitted guide.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from tqdm.auto import tqdm

from bayes_spheres import checks
from bayes_spheres.artifacts import save_elbo
from bayes_spheres.data import SphereData
from bayes_spheres.guides import GUIDES, GuideName, InitLoc
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.draws import guide_ensemble
from bayes_spheres.inference.elbo_gradients import (
    Momentum,
    Unsupported,
    closed_form_step,
    first_step_gap,
)
from bayes_spheres.models import SphereModel
from bayes_spheres.progress import bars_disabled
from bayes_spheres.torch_context import torch_settings

log = logging.getLogger(__name__)

STEPS_BEFORE_TIMING = 50


@dataclass(frozen=True)
class SGDSettings:
    """SGD with momentum (config: ``inference.optim``), checked when made: the paper's
    learning rate 0.01 and momentum 0.98 (App. A)."""

    lr: float = 0.01
    momentum: float = 0.98

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", checks.positive("lr", self.lr))
        object.__setattr__(self, "momentum", checks.unit_interval("momentum", self.momentum))


class LossScale(StrEnum):
    PER_DATUM = "per_datum"
    SUM = "sum"


class Engine(StrEnum):
    """Who computes a step: ``closed_form`` where the pair has one, else ``pyro`` (auto)."""

    AUTO = "auto"
    PYRO = "pyro"
    CLOSED_FORM = "closed_form"


class DivergedError(FloatingPointError):
    """The ELBO became NaN or infinite: the fit is not handed to the attack."""


@dataclass(frozen=True)
class SVISettings:
    """An SVI fit's settings, checked when made (``conf/inference/svi.yaml`` builds it as the
    ``inference`` node and ``optim`` as ``inference.optim``, so a bad value fails before any
    data are made, naming its full key); calling it fits (:func:`fit`).

    :param guide: ``full_covariance`` (a full-covariance Gaussian) or ``direction_scale``
        (``q(v) q(s)`` on the non-centered hierarchical model, :mod:`~bayes_spheres.guides`).
    :param init_scale: the guide's initial scale.
    :param init_loc: where the guide's mean starts: ``mean`` (the prior mean, deterministic)
        or ``median`` (Pyro's default, the median of a few prior draws: random).
    :param optim: SGD with momentum (:class:`SGDSettings`).
    :param num_steps: SGD steps; the paper's 50,000.
    :param batch_size: the minibatch; the paper's 100 (at most N is used).
    :param loss_scale: ``per_datum`` (``-ELBO / N``, PyTorch's mean reduction) or ``sum``
        (Pyro's ``-ELBO``, with which the paper's learning rate diverges at D = 500).
    :param engine: ``auto`` (closed-form gradients where the pair has them, Table 1's do),
        ``closed_form`` or ``pyro`` (Pyro's ``SVI``).
    :param jit: engine ``pyro``: compile the ELBO with PyTorch's tracer.
    :param validate: engine ``pyro``: Pyro's argument checks in the steps (slower; a fit that
        blows up is caught by its non-finite loss either way).
    :param pyro_mvn: Pyro's ``AutoMultivariateNormal`` itself as the full-covariance guide
        (the same SGD path for the same seed, slower; ``python bench/svi.py``).
    :param threads: torch's intra-op threads during the steps, restored after (None: leave as
        is); a step's tensors are small, and on a shared 2-core machine a second thread only
        spin-waits against other jobs (measured: up to 50x slower per step under load).
    """

    guide: GuideName = GuideName.FULL_COVARIANCE
    init_scale: float = 0.1
    init_loc: InitLoc = InitLoc.MEAN
    optim: SGDSettings = field(default_factory=SGDSettings)
    num_steps: int = 50_000
    batch_size: int = 100
    loss_scale: LossScale = LossScale.PER_DATUM
    engine: Engine = Engine.AUTO
    jit: bool = True
    validate: bool = False
    pyro_mvn: bool = False
    threads: int | None = 1

    def __post_init__(self) -> None:
        checked = {
            "guide": checks.choice("guide", self.guide, GuideName),
            "init_scale": checks.positive("init_scale", self.init_scale),
            "init_loc": checks.choice("init_loc", self.init_loc, InitLoc),
            "num_steps": checks.integer("num_steps", self.num_steps, minimum=1),
            "batch_size": checks.integer("batch_size", self.batch_size, minimum=1),
            "loss_scale": checks.choice("loss_scale", self.loss_scale, LossScale),
            "engine": checks.choice("engine", self.engine, Engine),
            "jit": checks.flag("jit", self.jit),
            "validate": checks.flag("validate", self.validate),
            "pyro_mvn": checks.flag("pyro_mvn", self.pyro_mvn),
            "threads": checks.optional_integer("threads", self.threads, minimum=1),
        }
        if not isinstance(self.optim, SGDSettings):
            raise checks.SettingError("optim", self.optim, "must be an SGDSettings")
        for name, value in checked.items():  # frozen: the checked, normalised values
            object.__setattr__(self, name, value)

    def __call__(
        self,
        model: SphereModel,
        data: SphereData,
        members: int = 1000,
        seed: int = 0,
    ) -> Posterior:
        return fit(model, data, members, seed, self)


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    settings: SVISettings | None = None,
    **overrides: Any,
) -> Posterior:
    """Fit ``model``'s posterior by SVI with ``settings`` (:class:`SVISettings`; keyword
    ``overrides`` replace single settings, e.g. ``fit(model, data, num_steps=100)``); an
    ensemble of ``members`` guide draws.

    The full-covariance guide is :class:`~bayes_spheres.guides.AutoFullCovarianceNormal`:
    Pyro's ``AutoMultivariateNormal`` family and parameterisation, with a log density that
    needs no triangular solve (``python bench/svi.py`` compares the two per step).
    ``loss_scale="per_datum"`` scales model and guide by ``1/N``; the optimum is the same as
    Pyro's ``-ELBO``'s. The closed-form engine computes each step's gradient in closed form
    (full-covariance guide on a Gaussian-prior linear model, direction x scale guide on the
    non-centered hierarchical model; ``jit`` and ``validate`` then do not apply) and draws the
    same noise in the same order as Pyro's eager ``SVI`` (the guide is set up first, without
    touching the random stream), so a seed gives the same fit on both, to rounding; Pyro's
    jit (``jit=True``) draws differently at its first, tracing step.
    Raises :class:`DivergedError` when the loss stops being finite,
    :class:`~bayes_spheres.checks.SettingError` for a bad setting, ``ValueError`` for
    ``engine=closed_form`` on a pair without one.
    """
    settings = replace(settings or SVISettings(), **overrides)
    guide, optim, engine = settings.guide, settings.optim, settings.engine
    num_steps, threads, validate = settings.num_steps, settings.threads, settings.validate
    del seed  # the caller seeds Pyro
    n = len(data.y_train)
    batch = min(settings.batch_size, n)
    phi, y = data.phi_train, data.y_train
    q = GUIDES[guide](
        model, init_scale=settings.init_scale, init_loc=settings.init_loc,
        pyro_mvn=settings.pyro_mvn,
    )  # fmt: skip
    factor = 1.0 / n if settings.loss_scale is LossScale.PER_DATUM else 1.0
    # set the guide (prototype trace, parameters) and the step up outside the random stream
    # that the steps draw from, so that both engines see the same noise
    with (
        torch.random.fork_rng(devices=[phi.device] if phi.is_cuda else []),
        pyro.validation_enabled(validate),
    ):
        q(phi, y, subsample_size=batch)
        step, used = _engine(engine, model, q, data, settings.pyro_mvn)
    if step is not None and (gap := first_step_gap(step, model, q, factor, phi, y, batch)):
        if engine is Engine.CLOSED_FORM:
            raise ValueError(f"inference.engine=closed_form: the first step's {gap}")
        log.warning("SVI on Pyro's engine: the closed-form first step's %s", gap)
        step, used = None, Engine.PYRO
    if step is None:
        sgd = pyro.optim.SGD({"lr": optim.lr, "momentum": optim.momentum})
        elbo = JitTrace_ELBO(ignore_jit_warnings=True) if settings.jit else Trace_ELBO()
        svi = SVI(poutine.scale(model, factor), poutine.scale(q, factor), sgd, elbo)

        def step_fn() -> float:
            with pyro.validation_enabled(validate):
                return svi.step(phi, y, subsample_size=batch)
    else:
        momentum = Momentum(optim.lr, optim.momentum)

        def step_fn() -> float:
            with torch.no_grad():
                return step(momentum, factor, batch)

    with torch_settings(threads):
        losses, wall, cpu = _steps(step_fn, num_steps, optim)
    for name, value in pyro.get_param_store().items():
        if not torch.isfinite(value).all():
            raise DivergedError(f"SVI left a non-finite parameter {name!r}")
    ensemble, samples = guide_ensemble(model, q, data, members)
    tail = losses[-min(1000, num_steps) :]
    timed = num_steps - min(STEPS_BEFORE_TIMING, num_steps - 1)
    info = {
        "final_loss": float(tail.mean()),
        "steps": num_steps,
        "guide": str(guide),
        "engine": str(used),
        "step_ms": round(1e3 * wall / timed, 4),
        "step_cpu_ms": round(1e3 * cpu / timed, 4),
    }
    log.info(
        "SVI: %d steps, mean loss over the last %d: %.4g", num_steps, len(tail), info["final_loss"]
    )
    elbo = -losses
    return Posterior(
        ensemble, samples, {"svi": info}, elbo=elbo,
        artifacts=(lambda out: save_elbo(out / "elbo.csv", out / "elbo.png", elbo),),
    )  # fmt: skip


def _engine(
    engine: Engine, model: SphereModel, q: Callable, data: SphereData, pyro_mvn: bool
) -> tuple[Callable | None, Engine]:
    """The closed-form step (None for Pyro's) and the engine that runs."""
    if engine is Engine.PYRO:
        return None, Engine.PYRO
    if pyro_mvn:
        if engine is Engine.CLOSED_FORM:
            raise ValueError(
                "inference.engine=closed_form with inference.pyro_mvn=true: Pyro's "
                "AutoMultivariateNormal runs on engine=pyro (or auto)"
            )
        return None, Engine.PYRO
    try:
        return closed_form_step(model, q, data.phi_train, data.y_train), Engine.CLOSED_FORM
    except Unsupported as err:
        if engine is Engine.CLOSED_FORM:
            raise ValueError(f"inference.engine=closed_form: {err}; use pyro or auto") from err
        log.info("SVI on Pyro's engine: %s", err)
        return None, Engine.PYRO


def _steps(
    step_fn: Callable[[], float],
    num_steps: int,
    optim: SGDSettings,
) -> tuple[np.ndarray, float, float]:
    """Run the steps; the losses, and the wall and CPU seconds of the timed steps."""
    losses = np.empty(num_steps)
    # steps after the first few (the jit compiles the ELBO at step 0) are timed for the record
    timed_from = min(STEPS_BEFORE_TIMING, num_steps - 1)
    bar = tqdm(range(num_steps), desc="SVI", disable=bars_disabled(), mininterval=1.0)
    for step in bar:
        if step == timed_from:
            wall, cpu = time.perf_counter(), time.process_time()
        try:
            loss = step_fn()
        except ValueError as err:  # Pyro's argument validation: parameters blew up
            loss, cause = math.nan, err
        else:
            cause = None
        if not math.isfinite(loss):
            last = f" (previous step {losses[step - 1]:.4g})" if step else ""
            raise DivergedError(
                f"SVI diverged at step {step}: loss {loss}{last}; try a smaller "
                f"inference.optim.lr (now {optim.lr}) or momentum (now {optim.momentum})"
            ) from cause
        losses[step] = loss
        if step % 1000 == 999:
            bar.set_postfix(loss=f"{losses[step - 999 : step + 1].mean():.4g}", refresh=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    bar.close()
    return losses, wall, cpu
