"""C chains of the slice kernel as pure steps over a state record: :func:`start` reads the
model (Pyro's :func:`~pyro.infer.mcmc.util.initialize_model`, as ``HMC`` does) and draws or
takes the starting points, :func:`init` probes the paths (``kernels/paths.py``) and
:func:`step` makes one update of every chain. ``Slice`` runs one chain through them per
``setup`` (Pyro's contract); :class:`~bayes_spheres.kernels.vectorized.VectorizedMCMC` runs
all of a run's chains at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor

from bayes_spheres.kernels.paths import Path, Problem, find_path
from bayes_spheres.kernels.potential import unravel
from bayes_spheres.kernels.settings import SliceSettings


@dataclass(frozen=True)
class ChainState:
    """Chains at ``theta`` [C, P] (unconstrained, flattened), the path's log density there
    [C] and whether the update that led here diverged [C]."""

    theta: Tensor
    logp: Tensor
    diverging: Tensor


def start(
    model: Callable | None,
    potential_fn: Callable | None,
    transforms: dict | None,
    args: tuple,
    kwargs: dict,
    chains: int,
    initial_params: dict[str, Tensor] | None,
    init_strategy: Callable,
) -> tuple[Problem, Tensor]:
    """The :class:`Problem` and the chains' starting points [C, P]: ``initial_params`` (each
    site [C, ...]) where given, else drawn by ``init_strategy`` (Pyro's)."""
    prototype = None
    if model is not None:
        init, potential_fn, transforms, prototype = initialize_model(
            model, model_args=args, model_kwargs=kwargs, init_strategy=init_strategy,
            num_chains=chains,
        )  # fmt: skip
        if chains == 1:
            init = {k: v[None] for k, v in init.items()}
    elif initial_params is None:
        raise ValueError("Slice(potential_fn=...) needs initial_params")
    if initial_params is not None:
        init = {k: torch.as_tensor(v) for k, v in initial_params.items()}
    shapes = {k: v.shape[1:] for k, v in init.items()}
    flat = [v.detach().reshape(chains, -1) for v in init.values()]
    # on the CPU: a model with no latent sites
    initial = torch.cat(flat, 1) if flat else torch.zeros(chains, 0)
    problem = Problem(model, args, kwargs, potential_fn, transforms or {}, shapes, prototype)
    return problem, initial


def init(
    problem: Problem,
    settings: SliceSettings,
    initial: Tensor,
    warmup: int,
    generator: torch.Generator | None = None,
) -> tuple[Path, ChainState]:
    """The path for these chains and their first state; every later draw of :func:`step`
    comes from ``generator`` (None: torch's global stream, which ``pyro.set_rng_seed``
    seeds, as Pyro's own kernels draw)."""
    path = find_path(problem, settings, initial, warmup, generator)
    theta = initial.clone()
    logp = path.found.target.log_density(theta)
    # on the CPU: diagnostics
    return path, ChainState(theta, logp, torch.zeros(len(theta), dtype=torch.bool))


def step(path: Path, state: ChainState) -> ChainState:
    """One update of every chain (the path's sampler adapts itself while warming up)."""
    sampler = path.sampler
    with torch.no_grad():
        theta, logp = sampler.sweep(path.found.target, state.theta, state.logp)
    diverging = getattr(sampler, "diverging", None)
    if diverging is None:  # univariate updates never diverge
        # on the CPU: diagnostics
        diverging = torch.zeros(len(theta), dtype=torch.bool)
    return ChainState(theta, logp, diverging.cpu())


def log_density(path: Path, state: ChainState) -> Tensor:
    """Pyro's log density (``-potential``) of each chain's state [C]."""
    return state.logp.cpu() + path.found.constant


def info(path: Path) -> dict:
    """The path, why, its details and the sampler's adapted settings (``diagnostics()``)."""
    return {
        "path": path.name,
        "path_reason": path.reason,
        **path.found.details,
        **path.sampler.info(),
    }


def site_values(problem: Problem, theta: Tensor) -> dict[str, Tensor]:
    return unravel(theta, problem.shapes)
