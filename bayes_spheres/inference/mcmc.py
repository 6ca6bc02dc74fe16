"""MCMC rows of Table 1: slice sampling (Neal 2003), "1,000 samples" forming the ensemble.

A thin adapter from Pyro's :class:`~pyro.infer.MCMC` to a :class:`Posterior`: the kernel is
:class:`~bayes_spheres.kernels.Slice` (or Pyro's NUTS, ``kernel="nuts"``, as a baseline), run
exactly as a user runs it, ``MCMC(Slice(model, ...), num_samples, warmup_steps, num_chains)``.
The kernel finds the fast path for the flat and shared-mean models itself. Convergence (R-hat,
bulk/tail ESS over every coordinate; ArviZ on ``az.from_pyro(mcmc)``) goes to ``info``.
"""

from __future__ import annotations

import logging
import math
import warnings
from enum import StrEnum

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.kernels import Directions, Mass, Slice
from bayes_spheres.models import SphereModel, weights_of

log = logging.getLogger(__name__)

RHAT_WARN = 1.01
ESS_WARN = 100


class KernelName(StrEnum):
    SLICE = "slice"
    NUTS = "nuts"


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
    scale_moves: int | None = None,
    trajectory: float = 6.0,
    target_accept: float = 0.8,
    warmup_trajectory: float | None = None,
    mass: Mass = Mass.DIAGONAL,
    fast: bool = True,
    threads: int | None = 1,
    progress: bool = True,
) -> Posterior:
    """``members`` draws from ``model``'s posterior: ``num_chains`` chains of
    ``ceil(members / num_chains)`` kept draws each, every ``thin``-th after ``warmup`` updates.
    R-hat, ESS and the returned samples (``posterior.nc``) use every draw after warm-up.

    The slice settings are :class:`~bayes_spheres.kernels.Slice`'s (same names, same
    defaults). ``threads``: torch's intra-op threads while sampling, restored after (None:
    leave as is); one update works on [chains, N] tensors, where a second thread only
    spin-waits, and on a shared 2-core machine that made a paper-scale fit ~10x slower.
    The global random stream is seeded with ``seed`` inside and restored after.
    """
    if not (isinstance(num_chains, int) and num_chains >= 1):
        raise ValueError(f"num_chains={num_chains!r}: must be an integer >= 1")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup={warmup!r}: must be an integer >= 0")
    if not (isinstance(thin, int) and thin >= 1):
        raise ValueError(f"thin={thin!r}: must be an integer >= 1")
    if KernelName(kernel) is KernelName.SLICE:
        mcmc_kernel = Slice(
            model, directions=directions, trajectory=trajectory,
            warmup_trajectory=warmup_trajectory, target_accept=target_accept, mass=mass,
            scale_moves=scale_moves, init_width=init_width, max_steps=max_steps, fast=fast,
        )  # fmt: skip
    else:
        mcmc_kernel = NUTS(model)
    draws = math.ceil(members / num_chains)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            warnings.filterwarnings("ignore", "num_chains=", UserWarning)  # sequential chains
            pyro.set_rng_seed(seed)
            mcmc = MCMC(
                mcmc_kernel,
                num_samples=draws * thin,
                warmup_steps=warmup,
                num_chains=num_chains,
                disable_progbar=not progress,
            )
            mcmc.run(data.phi_train, data.y_train)
    finally:
        torch.set_num_threads(previous_threads)
    return posterior_of(mcmc, model, data, members, thin)


def posterior_of(
    mcmc: MCMC, model: SphereModel, data: SphereData, members: int, thin: int
) -> Posterior:
    """The :class:`Posterior` of a finished run: every draw after warm-up in ``samples``
    (``posterior.nc``) and the diagnostics, every ``thin``-th draw in the ensemble."""
    import arviz as az

    latents = mcmc.get_samples(group_by_chain=True)
    samples = _with_weights(model, latents, data.dim)
    idata = az.from_pyro(mcmc, log_likelihood=False)
    convergence = diagnostics(idata.posterior, list(latents))
    _warn_if_unconverged(convergence)
    chain_info = mcmc.diagnostics()
    info = {
        "kernel": type(mcmc.kernel).__name__.lower(),
        "chains": mcmc.num_chains,
        "warmup": mcmc.warmup_steps,
        "thin": thin,
        "divergences": int(idata.sample_stats["diverging"].values.sum()),
        **{
            key: values["chain 0"]
            for key, values in chain_info.items()
            if isinstance(values, dict)
            and "chain 0" in values
            and key not in ("divergences", "log_density")
        },
        **convergence,
    }
    # R-hat's noise over 501 coordinates falls with the draws it sees, so judging convergence
    # on the thinned 1,000 alone would be needlessly noisy: the ensemble keeps every thin-th.
    w = samples["w"][:, thin - 1 :: thin].reshape(-1, data.dim)[:members]
    b = samples["b"][:, thin - 1 :: thin].reshape(-1)[:members]
    stats = {
        "lp": _log_density(mcmc, latents),
        "diverging": torch.as_tensor(idata.sample_stats["diverging"].values),
    }
    return Posterior(
        Ensemble(w, b, data.features),
        samples,
        {"mcmc": info, "convergence": convergence},
        sample_stats=stats,
    )


def _log_density(mcmc: MCMC, latents: dict[str, Tensor]) -> Tensor:
    """``-potential`` (Pyro's, over unconstrained sites) at every draw [chain, draw]: as
    :class:`~bayes_spheres.kernels.Slice` recorded it, or computed draw by draw (NUTS)."""
    chain_info = mcmc.diagnostics().get("log_density")
    if chain_info is not None:
        # on the CPU: diagnostics
        return torch.tensor([chain_info[f"chain {c}"] for c in range(mcmc.num_chains)])
    kernel, transforms = mcmc.kernel, mcmc.transforms  # set up by the run in either regime
    chains, draws = next(iter(latents.values())).shape[:2]
    flat = {
        k: (transforms[k](v) if k in transforms else v).reshape(chains * draws, *v.shape[2:])
        for k, v in latents.items()
    }
    with torch.no_grad():
        lp = [
            -kernel.potential_fn({k: v[i] for k, v in flat.items()}) for i in range(chains * draws)
        ]
    return torch.stack(lp).reshape(chains, draws)


def _with_weights(model: SphereModel, latents: dict[str, Tensor], dim: int) -> dict[str, Tensor]:
    """Latent draws [C, S, ...] plus the ``w`` [C, S, D] and ``b`` [C, S] they imply."""
    c, s = next(iter(latents.values())).shape[:2]
    flat = {k: v.detach().reshape(c * s, *v.shape[2:]) for k, v in latents.items()}
    w, b = weights_of(model, flat, dim)  # one batch dimension, as the priors are written
    out = {k: v.detach() for k, v in latents.items()}
    return {**out, "w": w.reshape(c, s, dim), "b": b.reshape(c, s)}


def diagnostics(posterior: object, names: list[str]) -> dict[str, float]:
    """Worst R-hat and smallest bulk/tail ESS over every coordinate of the sites ``names``
    (ArviZ; Vehtari et al. 2021) of an ArviZ posterior group."""
    import arviz as az

    rhat = az.rhat(posterior, var_names=names)
    bulk = az.ess(posterior, var_names=names, method="bulk")
    tail = az.ess(posterior, var_names=names, method="tail")

    def over(ds: object, fn: object) -> float:
        return float(fn(np.concatenate([np.ravel(ds[k].values) for k in names])))

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
