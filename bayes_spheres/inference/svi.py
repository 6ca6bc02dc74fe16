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
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from tqdm.auto import tqdm

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
from bayes_spheres.torch_context import torch_settings

log = logging.getLogger(__name__)

STEPS_BEFORE_TIMING = 50


@dataclass(frozen=True)
class SGDSettings:
    """SGD with momentum (config: ``inference.optim``)."""

    lr: float = 0.01
    momentum: float = 0.98


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


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    guide: GuideName = GuideName.FULL_COVARIANCE,
    init_scale: float = 0.1,
    init_loc: InitLoc = InitLoc.MEAN,
    optim: SGDSettings | None = None,
    num_steps: int = 50_000,
    batch_size: int = 100,
    loss_scale: LossScale = LossScale.PER_DATUM,
    jit: bool = True,
    validate: bool = False,
    pyro_mvn: bool = False,
    threads: int | None = 1,
    engine: Engine = Engine.AUTO,
    progress: bool = True,
) -> Posterior:
    """Fit ``guide`` to ``model``'s posterior by SVI; an ensemble of ``members`` guide draws.

    The full-covariance guide is :class:`~bayes_spheres.guides.AutoFullCovarianceNormal`:
    Pyro's ``AutoMultivariateNormal`` family and parameterisation, with a log density that
    needs no triangular solve (``python bench/svi.py`` compares the two per step);
    ``pyro_mvn=True`` uses ``AutoMultivariateNormal`` itself (the same SGD path for the same
    seed, slower). ``jit`` compiles the ELBO with PyTorch's tracer. ``validate`` keeps Pyro's
    argument checks on during the steps (off by default: they cost time every step, and a
    fit that blows up is caught by its non-finite loss either way). ``threads`` sets torch's
    intra-op threads during the steps and restores them after (None: leave as is): a step's
    tensors are small, and on a shared 2-core machine a second thread only spin-waits
    against other jobs (measured: up to 50x slower per step under load).
    ``loss_scale="per_datum"`` optimises ``-ELBO / N`` (model and guide both scaled by
    ``1/N``), the mean-reduced loss usual in PyTorch code; ``"sum"`` is Pyro's ``-ELBO``, with
    which the paper's learning rate diverges at D = 500. The optimum is the same.
    ``engine``: ``closed_form`` computes each step's gradient in closed form (full-covariance
    guide on a Gaussian-prior linear model, direction x scale guide on the non-centered
    hierarchical model; ``jit`` and ``validate`` then do not apply), ``pyro`` runs Pyro's
    ``SVI``, ``auto`` takes ``closed_form`` where the pair has it. The closed form draws the
    same noise in the same order as Pyro's eager ``SVI`` (the guide is set up first, without
    touching the random stream), so a seed gives the same fit on both, to rounding; Pyro's
    jit (``jit=True``) draws differently at its first, tracing step.
    Raises :class:`DivergedError` when the loss stops being finite, ``ValueError`` for
    ``engine=closed_form`` on a pair without one.
    """
    del seed  # the caller seeds Pyro
    optim = optim or SGDSettings()
    engine = Engine(engine)
    n = len(data.y_train)
    batch = min(batch_size, n)
    phi, y = data.phi_train, data.y_train
    q = GUIDES[GuideName(guide)](model, init_scale=init_scale, init_loc=init_loc, pyro_mvn=pyro_mvn)
    factor = 1.0 / n if LossScale(loss_scale) is LossScale.PER_DATUM else 1.0
    # set the guide (prototype trace, parameters) and the step up outside the random stream
    # that the steps draw from, so that both engines see the same noise
    with (
        torch.random.fork_rng(devices=[phi.device] if phi.is_cuda else []),
        pyro.validation_enabled(validate),
    ):
        q(phi, y, subsample_size=batch)
        step, used = _engine(engine, model, q, data, pyro_mvn)
    if step is not None and (gap := first_step_gap(step, model, q, factor, phi, y, batch)):
        if engine is Engine.CLOSED_FORM:
            raise ValueError(f"inference.engine=closed_form: the first step's {gap}")
        log.warning("SVI on Pyro's engine: the closed-form first step's %s", gap)
        step, used = None, Engine.PYRO
    if step is None:
        sgd = pyro.optim.SGD({"lr": optim.lr, "momentum": optim.momentum})
        elbo = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
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
        losses, wall, cpu = _steps(step_fn, num_steps, optim, progress)
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
    return Posterior(ensemble, samples, {"svi": info}, elbo=-losses)


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
    progress: bool,
) -> tuple[np.ndarray, float, float]:
    """Run the steps; the losses, and the wall and CPU seconds of the timed steps."""
    losses = np.empty(num_steps)
    # steps after the first few (the jit compiles the ELBO at step 0) are timed for the record
    timed_from = min(STEPS_BEFORE_TIMING, num_steps - 1)
    bar = tqdm(range(num_steps), desc="SVI", disable=not progress, mininterval=1.0)
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
