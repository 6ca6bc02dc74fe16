"""MCMC rows of Table 1: slice sampling (Neal 2003), "1,000 samples" forming the ensemble.

The slice kernel runs C chains at once: by default along Hamiltonian trajectories
(:class:`~bayes_spheres.kernels.hamiltonian.HamiltonianSliceSampler`), or with univariate
updates along coordinates or covariance eigenvectors
(:class:`~bayes_spheres.kernels.sampler.SliceSampler`). On the study's models with a Gaussian
prior (flat, shared mean) it uses the fast path
:class:`~bayes_spheres.kernels.targets.LogisticTarget`, on the others Pyro's potential (any
model). ``kernel="nuts"`` runs Pyro's NUTS on
the same model as a baseline. Convergence (R-hat, bulk/tail ESS; ArviZ) goes to ``info``.
"""

from __future__ import annotations

import logging
import math
import time
from enum import StrEnum

import numpy as np
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from torch import Tensor
from tqdm.auto import tqdm

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.bootstrap import BatchedObjective
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.targets import LogisticTarget, PotentialTarget, Target
from bayes_spheres.models import SphereModel

log = logging.getLogger(__name__)

RHAT_WARN = 1.01
ESS_WARN = 100


class KernelName(StrEnum):
    SLICE = "slice"
    NUTS = "nuts"


def logistic_target(model: SphereModel, phi: Tensor, y: Tensor) -> LogisticTarget:
    """The fast path for ``model``: its activations as ``X theta + a0`` and its prior as a
    quadratic, both read off the Pyro model itself (and checked at a random point).

    Raises ``ValueError`` when the model has a constrained site, activations that are not
    linear in the latents, or a prior that is not Gaussian (e.g. the hierarchical models).
    """
    objective = BatchedObjective(model, phi, y, torch.ones(1, len(y)))
    p = objective.size
    theta = torch.cat([phi.new_zeros(1, p), torch.eye(p, dtype=phi.dtype)]).requires_grad_(True)
    w, b, log_prior = objective.weights(theta)
    (grad,) = torch.autograd.grad(log_prior.sum(), theta)
    w, b, log_prior, grad = w.detach(), b.detach(), log_prior.detach(), grad.detach()
    a_w, a_b = w[1:] - w[0], b[1:] - b[0]
    shift = grad[0]
    precision = shift[None, :] - grad[1:]
    probe = torch.randn(2, p, dtype=phi.dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w_r, b_r, lp_r = objective.weights(probe)
    quad = probe @ shift - 0.5 * ((probe @ precision) * probe).sum(-1)
    scale = 1.0 + float(lp_r.abs().max())
    if not (
        torch.allclose(w_r, w[0] + probe @ a_w, atol=1e-9)
        and torch.allclose(b_r, b[0] + probe @ a_b, atol=1e-9)
        and torch.allclose(lp_r - log_prior[0], quad, atol=1e-9 * scale)
    ):
        raise ValueError(f"{model.name}: activations not linear or prior not Gaussian")
    x = phi @ a_w.T + a_b
    offset = phi @ w[0] + b[0]
    return LogisticTarget(
        x, y, 0.5 * (precision + precision.T), shift, offset, prior_constant=float(log_prior[0])
    )


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    kernel: KernelName = KernelName.SLICE,
    directions: Directions = Directions.HAMILTONIAN,
    num_chains: int = 8,
    warmup: int = 120,
    thin: int = 5,
    init_width: float = 1.0,
    max_steps: int = 20,
    scale_moves: int = 3,
    trajectory: float = 6.0,
    target_accept: float = 0.8,
    warmup_trajectory: float | None = 1.5,
    fast: bool = True,
    threads: int | None = 1,
    progress: bool = True,
) -> Posterior:
    """``members`` draws from ``model``'s posterior: ``num_chains`` chains of
    ``ceil(members / num_chains)`` kept draws each, every ``thin``-th after ``warmup`` sweeps.
    R-hat, ESS and the returned samples (``posterior.nc``) use every draw after warm-up.

    ``scale_moves``: scale moves ``theta <- g theta`` (Liu & Sabatti 2000) after each sweep
    of the slice kernel, 0 for none. ``trajectory``, ``target_accept``: length and step-size
    goal of the trajectories of ``directions="hamiltonian"``
    (:class:`~bayes_spheres.kernels.hamiltonian.HamiltonianSliceSampler`), and
    ``warmup_trajectory`` a shorter length for its warm-up updates (None: the same). ``fast=False``
    forces the generic path (Pyro's potential) for the slice kernel. ``threads``: torch's
    intra-op threads while sampling, restored after
    (None: leave as is); one call works on [chains, 2, N] tensors, where a second thread only
    spin-waits, and on a shared 2-core machine that made a paper-scale fit ~10x slower.
    """
    if num_chains < 1 or warmup < 0 or thin < 1 or scale_moves < 0:
        raise ValueError(
            f"num_chains={num_chains}, warmup={warmup}, thin={thin}, scale_moves={scale_moves}: "
            "out of range"
        )
    draws = math.ceil(members / num_chains)
    phi, y = data.phi_train, data.y_train
    potential = FlatPotential.from_model(model, phi, y)
    gen = torch.Generator(device=phi.device).manual_seed(seed)
    # Pyro's default initialisation: uniform in (-2, 2) in unconstrained space, per chain.
    theta0 = 4.0 * torch.rand(num_chains, potential.size, generator=gen, dtype=phi.dtype) - 2.0
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if KernelName(kernel) is KernelName.SLICE:
            theta, lp, info = _run_slice(
                model, data, potential, theta0, draws, warmup, thin, gen, progress,
                directions=Directions(directions), init_width=init_width, max_steps=max_steps,
                scale_moves=scale_moves, fast=fast, trajectory=trajectory,
                target_accept=target_accept, warmup_trajectory=warmup_trajectory,
            )  # fmt: skip
        else:
            theta, lp, info = _run_nuts(
                model, data, potential, theta0, draws, warmup, thin, progress
            )
    finally:
        torch.set_num_threads(previous_threads)
    # Diagnostics and posterior.nc use every draw after warm-up (draws x thin per chain); the
    # ensemble keeps every thin-th. R-hat's noise over 501 coordinates falls with the draws it
    # sees, so judging convergence on the thinned 1,000 alone would be needlessly noisy.
    latents = potential.constrain(potential.unravel(theta))
    samples = _with_weights(model, latents, data.dim)
    convergence = diagnostics({k: samples[k] for k in latents})
    info.update(convergence)
    _warn_if_unconverged(convergence)
    w = samples["w"][:, thin - 1 :: thin].reshape(-1, data.dim)[:members]
    b = samples["b"][:, thin - 1 :: thin].reshape(-1)[:members]
    stats = {"lp": lp, "diverging": torch.zeros(lp.shape, dtype=torch.bool)}
    info = {"mcmc": info, "convergence": convergence}
    return Posterior(Ensemble(w, b, data.features), samples, info, sample_stats=stats)


def _run_slice(
    model: SphereModel,
    data: SphereData,
    potential: FlatPotential,
    theta: Tensor,
    draws: int,
    warmup: int,
    thin: int,
    gen: torch.Generator,
    progress: bool,
    directions: Directions,
    init_width: float,
    max_steps: int,
    scale_moves: int,
    fast: bool,
    trajectory: float,
    target_accept: float,
    warmup_trajectory: float | None,
) -> tuple[Tensor, Tensor, dict]:
    target: Target = PotentialTarget(potential)
    path = "generic"
    if fast:
        try:
            target, path = logistic_target(model, data.phi_train, data.y_train), "fast"
        except ValueError as err:
            log.info("slice: generic path (%s)", err)
    sampler: SliceSampler | HamiltonianSliceSampler
    if directions is Directions.HAMILTONIAN:
        sampler = HamiltonianSliceSampler(
            warmup, trajectory, target_accept=target_accept, scale_moves=scale_moves,
            warmup_trajectory=warmup_trajectory,
            scale_width=init_width, max_steps=max_steps, generator=gen,
        )  # fmt: skip
    else:
        sampler = SliceSampler(
            potential.size, directions, warmup, init_width, max_steps, scale_moves=scale_moves,
            dtype=theta.dtype, device=theta.device, generator=gen,
        )  # fmt: skip
    kept_theta, kept_lp = [], []
    start = time.perf_counter()
    with torch.no_grad():
        logp = target.log_density(theta)
        bar = tqdm(range(warmup + draws * thin), disable=not progress, desc="slice")
        for i in bar:
            theta, logp = sampler.sweep(target, theta, logp)
            if i >= warmup:  # every draw after warm-up; fit() thins for the ensemble
                kept_theta.append(theta)
                kept_lp.append(logp)
            if i % 10 == 0:
                bar.set_postfix(lp=f"{float(logp.mean()):.1f}")
    seconds = time.perf_counter() - start
    info = {
        "kernel": "slice",
        "path": path,
        "directions": str(directions),
        "scale_moves": scale_moves,
        "chains": len(theta),
        "warmup": warmup,
        "thin": thin,
        **sampler.info(),
        "seconds_per_sweep": round(seconds / max(warmup + draws * thin, 1), 4),
    }
    return torch.stack(kept_theta, 1), torch.stack(kept_lp, 1), info


def _run_nuts(
    model: SphereModel,
    data: SphereData,
    potential: FlatPotential,
    theta0: Tensor,
    draws: int,
    warmup: int,
    thin: int,
    progress: bool,
) -> tuple[Tensor, Tensor, dict]:
    """Pyro's NUTS, one chain after another (from the same initial points as the slice chains)."""
    chains = []
    for start in theta0:
        init = potential.unravel(start)
        mcmc = MCMC(
            NUTS(model),
            num_samples=draws * thin,
            warmup_steps=warmup,
            initial_params=init,
            disable_progbar=not progress,
        )
        mcmc.run(data.phi_train, data.y_train)
        raw = mcmc.get_samples()
        unconstrained = {
            k: potential.transforms[k](v) if k in potential.transforms else v
            for k, v in raw.items()
            if k in potential.shapes
        }
        flat = torch.cat([unconstrained[k].reshape(draws * thin, -1) for k in potential.shapes], 1)
        chains.append(flat)
    theta = torch.stack(chains)
    with torch.no_grad():
        lp = -torch.stack([torch.stack([potential(t) for t in chain]) for chain in theta])
    return theta, lp, {"kernel": "nuts", "chains": len(theta0), "warmup": warmup, "thin": thin}


def _with_weights(model: SphereModel, latents: dict[str, Tensor], dim: int) -> dict[str, Tensor]:
    """Latent draws [C, S, ...] plus the ``w`` [C, S, D] and ``b`` [C, S] they imply."""
    c, s = next(iter(latents.values())).shape[:2]
    flat = {k: v.reshape(c * s, *v.shape[2:]) for k, v in latents.items()}
    like = next(iter(flat.values()))
    tr = poutine.trace(poutine.condition(model.prior, data=flat)).get_trace(dim, like)
    w, b = tr.nodes["_RETURN"]["value"]
    out = {k: v.detach() for k, v in latents.items()}
    out["w"] = w.detach().reshape(c, s, dim)
    out["b"] = b.detach().expand(c * s).reshape(c, s)
    return out


def diagnostics(samples: dict[str, Tensor]) -> dict[str, float]:
    """Worst R-hat and smallest bulk/tail ESS over every coordinate (ArviZ; Vehtari et al.
    2021) of draws shaped [chain, draw, ...]."""
    import arviz as az

    idata = az.from_dict(posterior={k: v.cpu().numpy() for k, v in samples.items()})
    rhat = az.rhat(idata.posterior)
    bulk = az.ess(idata.posterior, method="bulk")
    tail = az.ess(idata.posterior, method="tail")

    def over(ds: object, fn: object) -> float:
        return float(fn(np.concatenate([np.ravel(ds[k].values) for k in samples])))

    return {
        "rhat_max": over(rhat, np.nanmax),
        "ess_bulk_min": over(bulk, np.nanmin),
        "ess_bulk_median": over(bulk, np.nanmedian),
        "ess_tail_min": over(tail, np.nanmin),
    }


def _warn_if_unconverged(convergence: dict[str, float]) -> None:
    if convergence["rhat_max"] > RHAT_WARN or convergence["ess_bulk_min"] < ESS_WARN:
        log.warning(
            "MCMC may not have converged: R-hat max %.3f (want <= %.2f), bulk ESS min %.0f "
            "(want >= %d); more warm-up or draws",
            convergence["rhat_max"],
            RHAT_WARN,
            convergence["ess_bulk_min"],
            ESS_WARN,
        )
